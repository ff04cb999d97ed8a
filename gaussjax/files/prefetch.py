"""Reading ahead: work on the host (image decoding, resizing) overlapped with the device."""

import collections
import concurrent.futures
import itertools
import os


def ordered_map(fn, items, *, ahead: int, workers: int | None = None):
    """Yields fn(item) for every item, in order, computed in background threads.

    At most `ahead` results are in flight or waiting to be consumed, so memory stays bounded
    however many items there are. PIL decodes and resizes with the GIL released, so threads run in
    parallel with each other and with the device. An exception raised by fn is raised here, at its
    item's turn.

    Args:
      fn: a function of one item, safe to call from several threads at once.
      items: any iterable (consumed lazily).
      ahead: how many items to work on ahead of the consumer (>= 1).
      workers: threads; default min(8, cpu count).
    """
    if ahead < 1:
        raise ValueError(f"ahead must be >= 1, got {ahead}")
    items = iter(items)
    pool = concurrent.futures.ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1))
    try:
        pending = collections.deque(pool.submit(fn, x) for x in itertools.islice(items, ahead))
        while pending:
            result = pending.popleft().result()
            pending.extend(pool.submit(fn, x) for x in itertools.islice(items, 1))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
