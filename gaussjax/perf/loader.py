"""How fast targets are decoded and resized, alone, sequentially and read ahead in threads."""

import pathlib
import time

import numpy as np
from PIL import Image

from gaussjax.files import images, prefetch


def write_test_jpegs(directory, count: int, size=(2048, 1536), seed: int = 0) -> list[pathlib.Path]:
    """`count` camera-sized JPEGs of smooth random colour fields (quality 90) in `directory`."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    paths = []
    for i in range(count):
        coarse = rng.randint(0, 256, (size[1] // 64, size[0] // 64, 3), np.uint8)
        photo = Image.fromarray(coarse).resize(size, Image.BICUBIC)
        paths.append(directory / f"photo{i:04d}.jpg")
        photo.save(paths[-1], quality=90)
    return paths


def images_per_second(paths, resolution: int, channels: int, workers: int | None) -> float:
    """Decode + crop + resize rate over `paths`: one at a time (workers=None), or read ahead by
    `prefetch.ordered_map` with that many threads, as the run pipeline does."""

    def load(path):
        return images.load_image(path, resolution, channels)

    start = time.perf_counter()
    if workers is None:
        for path in paths:
            load(path)
    else:
        for _ in prefetch.ordered_map(load, paths, ahead=2 * workers, workers=workers):
            pass
    return len(paths) / (time.perf_counter() - start)
