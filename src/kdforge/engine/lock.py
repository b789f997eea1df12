"""One process per run directory: an advisory lock file held while a run trains.

``<run_dir>/.kdforge.lock`` is locked with ``flock`` (the kernel drops the lock when
its process dies, however it dies) and holds the owner's pid, host and command
line, so a refused second process can say who holds it. A clean exit deletes the
file; a file left behind by a killed process is unlocked, so the next run takes
it over and says so.

On platforms without ``fcntl`` (Windows) the lock is not taken.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from kdforge.errors import KdforgeError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".kdforge.lock"


def _owner_from(data: bytes) -> dict:
    with contextlib.suppress(ValueError):
        owner = json.loads(data)
        if isinstance(owner, dict):
            return owner
    return {}


def _read_owner(path: Path) -> dict:
    try:
        return _owner_from(path.read_bytes())
    except OSError:
        return {}


def _describe(owner: dict) -> str:
    if not owner:
        return "another process"
    return f"process {owner.get('pid')} on {owner.get('host')} (`{owner.get('command', '?')}`)"


class RunLock:
    """Exclusive lock on a run directory, as a context manager.

    Args:
        run_dir: the run directory (created if missing).
        note: called with a one-line message when a stale lock is taken over.

    Raises:
        KdforgeError: on entry, when another live process holds the lock.
    """

    def __init__(self, run_dir: str | Path, note=None) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.note = note or (lambda message: print(message, file=sys.stderr))
        self._fd: int | None = None
        self._created = False
        self.took_over: dict | None = None

    def acquire(self) -> None:
        """Take the lock or raise a :class:`KdforgeError` naming its holder."""
        if fcntl is None:  # pragma: no cover
            return
        self._created = not self.run_dir.exists()
        while True:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise KdforgeError(
                    f"cannot write to run directory '{self.run_dir}': {e.strerror or e}",
                    "choose a writable output_dir (--output-dir or output_dir=...)",
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise KdforgeError(
                    f"run directory '{self.run_dir}' is in use by {_describe(_read_owner(self.path))}",
                    "wait for that run to finish (or stop it), or choose another run name / output_dir",
                ) from None
            # The holder may have deleted the file between our open and our flock: then we
            # locked an orphaned inode; start again on the current file.
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            os.close(fd)
        self._fd = fd
        # A clean release deletes the file, so a locked file that already holds an owner
        # was left by a process that died holding it.
        left = os.read(fd, 65536)
        if left:
            previous = _owner_from(left)
            self.took_over = previous
            self.note(
                f"note: took over the lock of '{self.run_dir}' left by {_describe(previous)}, "
                "which is no longer running"
            )
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(sys.argv),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(owner).encode())

    def release(self) -> None:
        """Delete the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still locked: nobody can take a half-released lock
        os.close(self._fd)  # closing drops the flock
        self._fd = None
        if self._created:  # a run that failed before writing anything leaves no empty directory
            with contextlib.suppress(OSError):
                self.run_dir.rmdir()

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
