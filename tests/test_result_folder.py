"""Result folders under concurrency and faults: one writing run per folder (OUTDIR/.lock, stale
locks taken over), and a full disk mid-run leaves every finished result intact."""

import errno
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY, tiny_module

from gaussjax.files import checkpoints, folder_lock, results, safe_io
from gaussjax.inversion import pipeline
from gaussjax.inversion.config import InversionConfig


def write_lock(outdir: pathlib.Path, pid: int, host: str | None = None) -> None:
    owner = {"pid": pid, "host": host or socket.gethostname(), "started": "then", "token": "x"}
    (outdir / folder_lock.LOCK_FILE).write_text(json.dumps(owner))


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_lock_is_exclusive_and_released(tmp_path):
    with folder_lock.locked_folder(tmp_path) as owner:
        held = folder_lock.read_owner(tmp_path / folder_lock.LOCK_FILE)
        assert held == owner and held["pid"] == os.getpid()
        with pytest.raises(folder_lock.FolderLockedError, match=f"process {os.getpid()} on"):
            folder_lock.acquire(tmp_path, folder_lock.owner_record())
    assert sorted(os.listdir(tmp_path)) == []  # released; no temporary files left


def test_lock_is_released_when_the_work_fails(tmp_path):
    with pytest.raises(RuntimeError), folder_lock.locked_folder(tmp_path):
        raise RuntimeError("boom")
    assert not (tmp_path / folder_lock.LOCK_FILE).exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    write_lock(tmp_path, dead_pid())
    with folder_lock.locked_folder(tmp_path) as owner:
        assert folder_lock.read_owner(tmp_path / folder_lock.LOCK_FILE) == owner
    assert sorted(os.listdir(tmp_path)) == []


def test_torn_lock_file_counts_as_stale(tmp_path):
    (tmp_path / folder_lock.LOCK_FILE).write_text('{"pid": 12')
    with folder_lock.locked_folder(tmp_path):
        pass


def test_lock_of_a_live_process_or_another_host_is_refused(tmp_path):
    write_lock(tmp_path, os.getppid())
    with pytest.raises(folder_lock.FolderLockedError, match=f"process {os.getppid()}"):
        folder_lock.acquire(tmp_path, folder_lock.owner_record())
    write_lock(tmp_path, dead_pid(), host="elsewhere")  # cannot be checked from here
    with pytest.raises(folder_lock.FolderLockedError, match="on elsewhere.*remove"):
        folder_lock.acquire(tmp_path, folder_lock.owner_record())
    assert json.loads((tmp_path / folder_lock.LOCK_FILE).read_text())["host"] == "elsewhere"


def test_check_free_refuses_a_live_owner_only_and_writes_nothing(tmp_path):
    folder_lock.check_free(tmp_path / "not_yet_created")
    write_lock(tmp_path, dead_pid())
    folder_lock.check_free(tmp_path)  # stale: `acquire` will take it over
    write_lock(tmp_path, os.getppid())
    with pytest.raises(folder_lock.FolderLockedError, match=f"{tmp_path} is in use by process"):
        folder_lock.check_free(tmp_path)
    assert os.listdir(tmp_path) == [folder_lock.LOCK_FILE]


def test_release_leaves_a_lock_that_is_no_longer_ours(tmp_path):
    owner = folder_lock.owner_record()
    folder_lock.acquire(tmp_path, owner)
    write_lock(tmp_path, os.getppid())  # e.g. removed by hand and taken by another run
    folder_lock.release(tmp_path, owner)
    assert folder_lock.read_owner(tmp_path / folder_lock.LOCK_FILE)["pid"] == os.getppid()


def test_summary_append_on_a_full_disk_takes_back_the_torn_line(tmp_path, monkeypatch):
    results.append_summary(tmp_path, {"name": "a", "status": "ok"})
    before = (tmp_path / results.SUMMARY).read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(results.os, "fsync", full)
    with pytest.raises(OSError, match="no space left on device while writing .*summary.jsonl"):
        results.append_summary(tmp_path, {"name": "b", "status": "ok"})
    assert (tmp_path / results.SUMMARY).read_bytes() == before


def test_write_error_is_one_line_naming_the_file(tmp_path):
    error = safe_io.write_error(
        tmp_path / "a.npz", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    )
    assert error.errno == errno.ENOSPC
    line = f"error: no space left on device while writing {tmp_path / 'a.npz'}"
    assert f"error: {error}" == line
    missing = FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "x.npz")
    assert f"error: {missing}" == "error: [Errno 2] No such file or directory: 'x.npz'"


def test_run_refuses_a_folder_another_process_writes_to_before_writing_anything(tmp_path):
    outdir = tmp_path / "out"
    outdir.mkdir()
    write_lock(outdir, os.getppid())
    spec = pipeline.RunSpec(outdir=outdir, config=InversionConfig.for_space("w"), log=print)
    with pytest.raises(folder_lock.FolderLockedError, match=f"process {os.getppid()} on"):
        pipeline.run(spec)  # the built-in generator would cache a fitted prior in outdir
    assert os.listdir(outdir) == [folder_lock.LOCK_FILE]


class FullDiskFile:
    """A file whose write stores half of the data, then fails as on a full disk."""

    def __init__(self, file):
        self.file = file

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()

    def write(self, data):
        self.file.write(data[: len(data) // 2])
        self.file.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def fill_disk_when_writing(path: pathlib.Path, monkeypatch) -> None:
    """Makes safe_io's atomic write of `path` fail half-way (its temporary file partly written),
    as when the disk fills up."""
    real_mkstemp, real_fdopen, destinations = safe_io.tempfile.mkstemp, safe_io.os.fdopen, {}

    def mkstemp(*args, **kwargs):
        fd, tmp = real_mkstemp(*args, **kwargs)
        destinations[fd] = pathlib.Path(tmp).parent / kwargs.get("prefix", "")[1:-1]
        return fd, tmp

    def fdopen(fd, *args, **kwargs):
        file = real_fdopen(fd, *args, **kwargs)
        return FullDiskFile(file) if destinations.pop(fd, None) == path else file

    monkeypatch.setattr(safe_io.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(safe_io.os, "fdopen", fdopen)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """(generator dir, prior.npz) of the tiny generator: no prior fit, a third of the compile time."""
    root = tmp_path_factory.mktemp("tiny")
    checkpoints.save_generator(root / "gen", tiny_module(), log=lambda _: None)
    np.savez(root / "prior.npz", mean=np.zeros(TINY.w_dim), cov=np.eye(TINY.w_dim))
    return root / "gen", root / "prior.npz"


def tiny_run(outdir, tiny_model):
    generator, prior = tiny_model
    return pipeline.RunSpec(
        outdir=outdir,
        config=InversionConfig.for_space("w", num_steps=2, steps_per_dispatch=2),
        generator=str(generator),
        prior=str(prior),
        num_generated=3,
        batch_size=1,
        log=lambda _: None,
    )


def keep_only_first_result(outdir: pathlib.Path) -> None:
    """Turns a finished folder into one a run left after its first image."""
    lines = (outdir / results.SUMMARY).read_text().splitlines(keepends=True)
    kept = [line for line in lines if json.loads(line)["name"] == "generated0000"]
    (outdir / results.SUMMARY).write_text("".join(kept))
    for name in ("generated0001", "generated0002"):
        for path in (outdir / f"{name}.npz", outdir / f"{name}.png"):
            path.unlink()


def snapshot(outdir: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(outdir)): p.read_bytes() for p in outdir.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_full_disk_while_resuming_keeps_finished_results_and_the_rerun_completes(
    tmp_path, monkeypatch, tiny_model
):
    reference = tmp_path / "ref"
    pipeline.run(tiny_run(reference, tiny_model))
    outdir = tmp_path / "half"
    shutil.copytree(reference, outdir)
    keep_only_first_result(outdir)
    before = snapshot(outdir)

    with monkeypatch.context() as patch:
        fill_disk_when_writing(outdir / "generated0002.png", patch)  # its npz is written by then
        with pytest.raises(OSError) as failure:
            pipeline.run(tiny_run(outdir, tiny_model))
    line = f"error: no space left on device while writing {outdir / 'generated0002.png'}"
    assert f"error: {failure.value}" == line
    after = snapshot(outdir)
    finished = ("generated0000.npz", "generated0000.png", "targets/generated0000.png")
    assert {name: after[name] for name in finished} == {name: before[name] for name in finished}
    assert after[results.SUMMARY].startswith(before[results.SUMMARY])
    assert results.finished_names(outdir) == {"generated0000", "generated0001"}
    assert not [name for name in after if name.endswith(".tmp")]
    assert folder_lock.LOCK_FILE not in after  # released on the error

    summary = pipeline.run(tiny_run(outdir, tiny_model))
    assert (summary.inverted, summary.finished) == (1, 3)
    assert snapshot(outdir)["generated0000.npz"] == before["generated0000.npz"]  # kept, not redone
    for i in range(3):
        assert (outdir / f"generated{i:04d}.npz").read_bytes() == (
            reference / f"generated{i:04d}.npz"
        ).read_bytes()
