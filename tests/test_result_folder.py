"""Result folders under concurrency and faults: one writing run per folder (OUTDIR/.lock, stale
locks taken over), and a full disk mid-run leaves every finished result intact."""

import errno
import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest

from gaussjax.files import folder_lock, results, safe_io
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
    with pytest.raises(OSError, match="No space left on device while writing .*summary.jsonl"):
        results.append_summary(tmp_path, {"name": "b", "status": "ok"})
    assert (tmp_path / results.SUMMARY).read_bytes() == before


def small_run(outdir, count=3):
    config = InversionConfig.for_space("w", num_steps=2, steps_per_dispatch=2)
    return pipeline.RunSpec(
        outdir=outdir,
        config=config,
        num_generated=count,
        batch_size=1,
        prior_samples=200,
        log=lambda _: None,
    )


def fail_writes_of(prefix: str, suffix: str, after: int, monkeypatch):
    """Makes safe_io's atomic writes of files PREFIX*SUFFIX hit a full disk after `after` of them."""
    real, seen = safe_io.os.fdopen, []

    def fdopen(fd, *args, **kwargs):
        target = os.readlink(f"/proc/self/fd/{fd}")
        name = pathlib.Path(target).name  # the temporary name: .NAME.npz.XXXX.tmp
        if name.startswith(f".{prefix}") and f"{suffix}." in name:
            seen.append(target)
            if len(seen) > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, *args, **kwargs)

    monkeypatch.setattr(safe_io.os, "fdopen", fdopen)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads fd paths from /proc")
def test_full_disk_mid_run_keeps_finished_results_and_resumes(tmp_path, monkeypatch):
    outdir = tmp_path / "out"
    with monkeypatch.context() as patch:
        fail_writes_of("generated", ".npz", after=1, monkeypatch=patch)
        with pytest.raises(OSError, match="No space left on device while writing .*generated0001"):
            pipeline.run(small_run(outdir))
    assert results.finished_names(outdir) == {"generated0000"}
    assert not [p for p in outdir.rglob("*") if p.name.endswith(".tmp")]
    assert not (outdir / folder_lock.LOCK_FILE).exists()  # released on the error
    first = (outdir / "generated0000.npz").read_bytes()
    summary = pipeline.run(small_run(outdir))
    assert (summary.inverted, summary.finished) == (2, 3)
    assert (outdir / "generated0000.npz").read_bytes() == first  # kept, not redone


@pytest.mark.slow
def test_run_refuses_a_folder_another_process_writes_to(tmp_path):
    outdir = tmp_path / "out"
    outdir.mkdir()
    write_lock(outdir, os.getppid())
    with pytest.raises(folder_lock.FolderLockedError, match="in use by process"):
        pipeline.run(small_run(outdir, count=1))
    assert sorted(p.name for p in outdir.iterdir()) == [folder_lock.LOCK_FILE, "prior.npz"]
