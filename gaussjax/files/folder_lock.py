"""One writer per result folder: OUTDIR/.lock names the process that writes there.

    with locked_folder(outdir):      # FolderLockedError (one line) if another live process holds it
        ...write results...

The lock file is created complete and atomically (written under a temporary name, then hard-linked
to `.lock`, which fails when it exists). A lock whose process is gone (same host, PID not alive)
is stale and taken over: it is first renamed away, which only one contender can do. A lock held on
another host cannot be checked from here, so it is refused with the way to remove it.
"""

import contextlib
import json
import os
import pathlib
import socket
import time
import uuid

LOCK_FILE = ".lock"


class FolderLockedError(ValueError):
    """Another process writes into the folder (a ValueError: the launchers report it in one line)."""


def owner_record() -> dict:
    """This process as a lock owner: pid, host, start time and a token unique to this lock."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "token": uuid.uuid4().hex,
    }


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def read_owner(path: pathlib.Path) -> dict | None:
    """The lock's owner record, or None when it is gone or unreadable."""
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) and {"pid", "host"} <= owner.keys() else None


def _is_stale(owner: dict | None) -> bool:
    """Stale: its process is gone (checkable on this host only), or the file is not a lock record."""
    if owner is None:
        return True
    return owner["host"] == socket.gethostname() and not pid_alive(int(owner["pid"]))


def _create(path: pathlib.Path, owner: dict) -> bool:
    """Creates the lock file with `owner`, complete; False when one exists."""
    tmp = path.with_name(f"{LOCK_FILE}.{owner['token']}.tmp")
    tmp.write_text(json.dumps(owner) + "\n")
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def acquire(outdir, owner: dict) -> None:
    """Takes OUTDIR/.lock for `owner` (taking over a stale one), or raises FolderLockedError."""
    path = pathlib.Path(outdir) / LOCK_FILE
    for _ in range(3):  # a stale lock taken over by a contender between our tries
        if _create(path, owner):
            return
        held = read_owner(path)
        if held is not None and not _is_stale(held):
            raise _locked_error(path, held)
        _remove_stale(path, held, owner["token"])
    raise FolderLockedError(f"{outdir}: could not take {path}; try again")


def check_free(outdir) -> None:
    """Raises FolderLockedError when a live process holds OUTDIR/.lock; writes nothing.

    Lets a run refuse a busy folder before its costly preparation; `acquire` still decides.
    """
    path = pathlib.Path(outdir) / LOCK_FILE
    held = read_owner(path)
    if held is not None and not _is_stale(held):
        raise _locked_error(path, held)


def _locked_error(path: pathlib.Path, held: dict) -> FolderLockedError:
    """The one-line refusal naming the folder and the owner's PID and host."""
    return FolderLockedError(
        f"{path.parent} is in use by process {held['pid']} on {held['host']} (since "
        f"{held.get('started', '?')}); wait for it to finish, or remove {path} if that "
        "process is gone"
    )


def _remove_stale(path: pathlib.Path, stale: dict | None, token: str) -> None:
    """Moves the stale lock `stale` away. If a contender replaced it with a fresh lock in the
    meantime, that lock is what got moved: it is put back, and the contender keeps the folder."""
    moved = path.with_name(f"{LOCK_FILE}.stale.{token}")
    try:
        os.rename(path, moved)
    except FileNotFoundError:  # another contender moved it first
        return
    if read_owner(moved) != stale:
        with contextlib.suppress(FileExistsError):
            os.link(moved, path)
    moved.unlink()


def release(outdir, owner: dict) -> None:
    """Removes OUTDIR/.lock if it is still `owner`'s."""
    path = pathlib.Path(outdir) / LOCK_FILE
    held = read_owner(path)
    if held is not None and held.get("token") == owner["token"]:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def locked_folder(outdir):
    """Holds OUTDIR/.lock (the folder must exist) for the duration of the block."""
    owner = owner_record()
    acquire(outdir, owner)
    try:
        yield owner
    finally:
        release(outdir, owner)
