"""Files: generator checkpoints, images, inversion results, and the safe read/write helpers."""
