"""Crash-safe result files of an inversion run: per-image npz + PNG, and `summary.jsonl`.

An image is finished exactly when `summary.jsonl` holds a line for it with status "ok" and its
files exist. Files are written atomically (temporary name + rename) BEFORE the summary line is
appended, so a run killed at any moment never leaves a result that looks complete but is not; a
torn last summary line is ignored on reading and terminated before the next append.
"""

import io as _io
import json
import math
import os
import pathlib

import numpy as np

from gaussjax import images
from gaussjax.io import write_bytes_atomic

SUMMARY = "summary.jsonl"


def read_summary(outdir) -> list[dict]:
    """All complete JSON lines of `summary.jsonl` (a torn last line is skipped)."""
    path = pathlib.Path(outdir) / SUMMARY
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def finished_names(outdir) -> set[str]:
    """Names whose result is complete (status ok and both files present)."""
    outdir = pathlib.Path(outdir)
    return {r["name"] for r in read_summary(outdir)
            if r.get("status") == "ok" and (outdir / f"{r['name']}.npz").exists()
            and (outdir / f"{r['name']}.png").exists()}


def append_summary(outdir, record: dict) -> None:
    """Appends one JSON line durably (fsync), first terminating a torn line left by a crash."""
    path = pathlib.Path(outdir) / SUMMARY
    line = json.dumps(_finite_or_none(record), sort_keys=True) + "\n"
    with open(path, "a+b") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write(line.encode())
        f.flush()
        os.fsync(f.fileno())


def _finite_or_none(value):
    """JSON has no NaN/inf: report them as null (the status field says why)."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def save_result(outdir, name: str, arrays: dict[str, np.ndarray], image: np.ndarray) -> None:
    """Writes NAME.npz (`arrays`, e.g. w [1, num_ws, w_dim]) and NAME.png (image in [-1, 1] [H, W, C])."""
    outdir = pathlib.Path(outdir)
    buf = _io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes_atomic(outdir / f"{name}.npz", buf.getvalue())
    images.save_png(outdir / f"{name}.png", images.to_uint8(image[None])[0])
