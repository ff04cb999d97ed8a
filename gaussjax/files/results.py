"""Crash-safe result files of an inversion run: per-image npz + PNG, and `summary.jsonl`.

An image is finished exactly when `summary.jsonl` holds a line for it with status "ok" and its
files exist. Files are written atomically (temporary name + rename) BEFORE the summary line is
appended, so a run killed at any moment never leaves a result that looks complete but is not; a
torn last summary line is ignored on reading and terminated before the next append.

NAME.npz holds `w` [1, num_ws, w_dim] (the official projector's projected_w.npz layout) and, when
the noise maps were optimised, `noise_00`, `noise_01`, ... [res, res]; `read_latents` reads both.
"""

import collections
import contextlib
import dataclasses
import io as _io
import json
import math
import os
import pathlib

import numpy as np

from gaussjax.files import images
from gaussjax.files.safe_io import read_npz, write_bytes_atomic, write_error

SUMMARY = "summary.jsonl"
TRACE = "trace.jsonl"  # per image: the loss after every dispatch, {"name", "steps", "loss"}


def append_trace(outdir, name: str, steps, losses) -> None:
    """Appends the loss trace of one image (steps [K] ints, losses [K] floats) to trace.jsonl."""
    record = {"name": name, "steps": [int(s) for s in steps], "loss": [float(v) for v in losses]}
    append_summary(outdir, record, TRACE)


def read_traces(outdir) -> dict[str, tuple[list[int], list]]:
    """{name: (steps, losses)} from trace.jsonl; an image traced twice (a batch rerun after a
    crash between its trace and summary lines) keeps its last trace. NaN losses read as None."""
    return {r["name"]: (r["steps"], r["loss"]) for r in _read_jsonl(pathlib.Path(outdir) / TRACE)}


def read_summary(outdir) -> list[dict]:
    """All complete JSON lines of `summary.jsonl` (a torn last line is skipped)."""
    return _read_jsonl(pathlib.Path(outdir) / SUMMARY)


def _read_jsonl(path: pathlib.Path) -> list[dict]:
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
    return {
        r["name"]
        for r in read_summary(outdir)
        if r.get("status") == "ok"
        and (outdir / f"{r['name']}.npz").exists()
        and (outdir / f"{r['name']}.png").exists()
    }


def append_summary(outdir, record: dict, filename: str = SUMMARY) -> None:
    """Appends one JSON line durably (fsync), first terminating a torn line left by a crash."""
    path = pathlib.Path(outdir) / filename
    line = json.dumps(_finite_or_none(record), sort_keys=True) + "\n"
    # Unbuffered: a failed write raises here, not again when the file is closed.
    with open(path, "a+b", buffering=0) as f:
        size = f.seek(0, os.SEEK_END)
        if size > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = "\n" + line  # terminates a line torn by a crash
        try:
            data = line.encode()
            while data:
                data = data[f.write(data) :]
            os.fsync(f.fileno())
        except OSError as e:  # a full disk: take back what part of the line got written
            with contextlib.suppress(OSError):
                f.truncate(size)
            raise write_error(path, e) from e


def _finite_or_none(value):
    """JSON has no NaN/inf: report them as null (the status field says why)."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def last_records(outdir, names) -> dict[str, dict]:
    """The latest summary record of each of `names` that has one (a rerun adds newer lines)."""
    wanted = set(names)
    return {r["name"]: r for r in read_summary(outdir) if r.get("name") in wanted}


def run_report(outdir, names) -> list[str]:
    """The end-of-run summary of the images `names`: how many are finished, failed (nan) or
    unreadable, and the mean and worst PSNR (and LPIPS when it was used)."""
    records = last_records(outdir, names)
    ok = [r for r in records.values() if r.get("status") == "ok" and r.get("psnr") is not None]
    counts = collections.Counter(r.get("status") for r in records.values())
    lines = [
        f"{len(ok)} of {len(names)} images finished"
        + "".join(f", {n} {status}" for status, n in sorted(counts.items()) if status != "ok")
    ]
    for key, unit, worst in (("psnr", " dB", min), ("lpips", "", max)):
        values = [r for r in ok if r.get(key) is not None]
        if values:
            bad = worst(values, key=lambda r: r[key])
            mean = sum(r[key] for r in values) / len(values)
            lines.append(
                f"{key.upper():5s} mean {mean:.4g}{unit}, worst {bad[key]:.4g}{unit} ({bad['name']})"
            )
    return lines


def save_result(outdir, name: str, arrays: dict[str, np.ndarray], image: np.ndarray) -> None:
    """Writes NAME.npz (`arrays`, e.g. w [1, num_ws, w_dim]) and NAME.png (image in [-1, 1] [H, W, C])."""
    outdir = pathlib.Path(outdir)
    buf = _io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes_atomic(outdir / f"{name}.npz", buf.getvalue())
    images.save_png(outdir / f"{name}.png", images.to_uint8(image[None])[0])


@dataclasses.dataclass(frozen=True)
class ImageResult:
    """One image's result, ready to write.

    Attributes:
      name: NAME of NAME.npz / NAME.png.
      record: its summary line without `status` (JSON-able: file, settings, loss terms, times);
        must hold a finite `loss` for the result to be saved.
      arrays: the content of NAME.npz (`result_arrays`).
      image: [H, W, C] float32 in [-1, 1], the reconstruction (NAME.png).
      trace: optional (steps [K], losses [K]) for trace.jsonl.
    """

    name: str
    record: dict
    arrays: dict[str, np.ndarray]
    image: np.ndarray
    trace: tuple | None = None

    @property
    def finite(self) -> bool:
        return bool(np.all(np.isfinite(self.arrays["w"])) and np.isfinite(self.record["loss"]))


def save_image_results(outdir, items: list[ImageResult]) -> int:
    """Writes each image's files, then its summary line; a non-finite result is reported in the
    summary (status "nan"), never saved. Returns the number of images saved."""
    saved = 0
    for item in items:
        if item.trace is not None:
            append_trace(outdir, item.name, *item.trace)
        record = {"name": item.name, **item.record}
        if not item.finite:
            print(f"{item.name}: non-finite loss or latent; not saved", flush=True)
            append_summary(outdir, {**record, "status": "nan"})
            continue
        save_result(outdir, item.name, item.arrays, item.image)
        append_summary(outdir, {**record, "status": "ok"})
        saved += 1
    return saved


def result_arrays(ws, noise, space_record: dict, latents: dict) -> dict[str, np.ndarray]:
    """The arrays of NAME.npz: `w` [1, num_ws, w_dim], `noise_NN`, the space's name and options
    (`space`, a JSON string) and its native variables as `latent_<name>` [1, ...]."""
    arrays = {
        "w": np.asarray(ws, np.float32)[None],
        "space": np.asarray(json.dumps(space_record, sort_keys=True)),
    }
    arrays.update({f"noise_{j:02d}": np.asarray(n, np.float32) for j, n in enumerate(noise)})
    arrays.update({f"latent_{k}": np.asarray(v, np.float32)[None] for k, v in latents.items()})
    return arrays


def read_latents(path, cfg):
    """Loads `w` [N, num_ws, w_dim] (and optimised noise maps `noise_00`, ... if present) from an npz.

    Returns:
      (w float32 [N, num_ws, w_dim], list of [res, res] noise maps or None).
    Raises:
      ValueError: unreadable file, no `w`, or shapes that do not fit the generator.
    """
    arrays = read_npz(path)
    if "w" not in arrays:
        raise ValueError(f"{path} has no key 'w' (keys: {sorted(arrays)})")
    w = arrays["w"].astype(np.float32)
    if w.ndim != 3 or w.shape[1:] != (cfg.num_ws, cfg.w_dim):
        raise ValueError(
            f"{path}: w has shape {w.shape}, the generator needs [N, {cfg.num_ws}, {cfg.w_dim}]"
        )
    return w, _noise_maps(path, arrays, cfg)


def _noise_maps(path, arrays, cfg):
    if "noise_00" not in arrays:
        return None
    noise = [arrays.get(f"noise_{j:02d}") for j in range(len(cfg.noise_resolutions))]
    if any(n is None or n.shape != (r, r) for n, r in zip(noise, cfg.noise_resolutions)):
        raise ValueError(
            f"{path}: noise maps do not match the generator's {len(cfg.noise_resolutions)} layers"
        )
    return noise


def read_native_latents(path) -> tuple[dict | None, dict]:
    """The space record and native variables of a gaussjax result (`result_arrays`).

    Returns:
      (space record dict, or None for a file with `w` only such as the official projected_w.npz;
       {name: array without the batch axis}).
    Raises:
      ValueError: unreadable file or a corrupt space record.
    """
    arrays = read_npz(path)
    if "space" not in arrays:
        return None, {}
    try:
        record = json.loads(str(arrays["space"]))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: corrupt space record ({e})") from e
    latents = {k[len("latent_") :]: v[0] for k, v in arrays.items() if k.startswith("latent_")}
    return record, latents
