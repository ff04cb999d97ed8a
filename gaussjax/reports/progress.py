"""A progress line that logs well to files: one line per unit of work, with elapsed time."""

import time
from collections.abc import Callable


class Progress:
    """progress = Progress(total=8, label="inversions"); progress.tick("wplus λ=1e-6")."""

    def __init__(self, total: int, label: str, log: Callable[[str], None] = print):
        self.total, self.label, self.log = total, label, log
        self.done = 0
        self.start = time.perf_counter()

    def tick(self, what: str) -> None:
        self.done += 1
        bar = "#" * round(20 * self.done / max(self.total, 1))
        elapsed = time.perf_counter() - self.start
        self.log(f"[{bar:<20}] {self.done}/{self.total} {self.label}  {what}  ({elapsed:.0f}s)")
