"""Device choice, seeding and safe file writes, shared by every notebook (chapter 0,
*How to run this book*)."""

from __future__ import annotations

import os
import random
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

import torch

if os.name == "nt":
    import msvcrt
else:
    import fcntl

__all__ = [
    "DEVICES",
    "atomic_write",
    "file_lock",
    "lock_path",
    "resolve_device",
    "seed_everything",
    "unwritable_reason",
]

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
# seconds a writer waits for another to finish one file before giving up
LOCK_TIMEOUT = 600.0
# lock files this thread holds, with their depth (``file_lock`` is re-entrant)
_HELD = threading.local()


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU; other names are checked, also
    against this machine's hardware (``ValueError`` naming the devices available here,
    rather than torch's error at the first ``.to``)."""
    index = (
        device[5:] if isinstance(device, str) and device.startswith("cuda:") else None
    )
    if not isinstance(device, str) or (
        device not in DEVICES and not (index and index.isascii() and index.isdigit())
    ):
        raise ValueError(f"device must be one of {DEVICES} or 'cuda:N', got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = torch.backends.mps.is_available()
    here = [
        "auto",
        "cpu",
        *(["cuda", *(f"cuda:{i}" for i in range(n_cuda))] if n_cuda else []),
    ]
    here += ["mps"] if mps else []
    if device.startswith("cuda") and not n_cuda:
        raise ValueError(
            f"device={device!r}, but CUDA is not available on this machine "
            f"(torch {torch.__version__}); allowed here: {here}"
        )
    if index is not None and int(index) >= n_cuda:
        raise ValueError(
            f"device={device!r}, but this machine has {n_cuda} CUDA device(s); "
            f"allowed here: {here}"
        )
    if device == "mps" and not mps:
        raise ValueError(
            "device='mps', but MPS (Apple GPU) is not available on this machine; "
            f"allowed here: {here}"
        )
    return torch.device(device)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python and torch (all devices); returns a CPU generator seeded the same
    way."""
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def atomic_write(
    path: str | Path,
    write: Callable[[IO], None],
    binary: bool = False,
    verify: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``path`` through ``write(file)`` into a temporary file of its own beside
    it, fsync it, check it with ``verify(temporary)`` if given, then rename it over
    ``path``, all under ``file_lock(path)``: a crash, an error or a concurrent writer
    leaves the old file (or none), never half a new one (chapters 6, 6b)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path):
        handle, tmp = _create_temporary(path)
        try:
            mode, encoding = ("wb", None) if binary else ("w", "utf-8")
            with os.fdopen(handle, mode, encoding=encoding) as file:
                write(file)
                file.flush()
                os.fsync(file.fileno())
            if verify is not None:
                verify(tmp)
            # a replaced file keeps its mode; a new one has the umask's
            if path.exists():
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
            _replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_directory(path.parent)
    return path


def unwritable_reason(path: str | Path) -> str | None:
    """Why ``atomic_write(path, ...)`` would fail (a directory, a file where a folder
    must be, no write permission), or None: checked before hours of work, not after
    (chapters 6, 6b)."""
    path = Path(path)
    if path.is_dir():
        return (
            f"{path} is a directory; pass a file path inside it, e.g. {path / 'run.pt'}"
        )
    existing = path.parent
    # up past the folders atomic_write would create
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{path} cannot be written: {existing} is a file, not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{path} cannot be written: directory {existing} is not writable"
    return None


def lock_path(path: str | Path) -> Path:
    """The hidden lock file that ``file_lock`` uses for ``path``: ``.<name>.lock``
    beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


@contextmanager
def file_lock(path: str | Path, timeout: float = LOCK_TIMEOUT) -> Iterator[Path]:
    """Hold an inter-process lock on ``path`` (``fcntl.flock``, or ``msvcrt.locking`` on
    Windows) for the block.

    Re-entrant within a thread; the lock file is removed on release. ``TimeoutError``
    after ``timeout`` seconds."""
    lock = lock_path(path)
    key = os.path.abspath(lock)
    held: dict[str, int] = _HELD.__dict__.setdefault("counts", {})
    if held.get(key):
        held[key] += 1
        try:
            yield lock
        finally:
            held[key] -= 1
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(lock, timeout)
    held[key] = 1
    try:
        yield lock
    finally:
        del held[key]
        _release(fd, lock)


def _acquire(lock: Path, timeout: float) -> int:
    """Open and lock ``lock``, retrying until ``timeout``; on POSIX, check the locked
    file is still the one there."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if _try_lock(fd):
                if os.name == "nt" or _is_current(fd, lock):
                    return fd
                # its holder removed it after we opened it: lock the new one instead
                _unlock(fd)
                delay = 0.0
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"could not lock {lock} within {timeout} s: another process holds it"
            )
        time.sleep(delay)
        delay = min(max(2 * delay, 0.001), 0.05)


def _try_lock(fd: int) -> bool:
    """Take the lock on ``fd`` without waiting; False if another holder has it."""
    if os.name == "nt":
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if os.name == "nt":
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _is_current(fd: int, lock: Path) -> bool:
    """Whether ``fd`` is still the file at ``lock`` (a releasing holder unlinks it
    before unlocking)."""
    try:
        here = os.stat(lock)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)


def _release(fd: int, lock: Path) -> None:
    """Remove the lock file and unlock (POSIX: in that order, so no waiter keeps a stale
    file locked)."""
    if os.name == "nt":
        try:
            _unlock(fd)
        finally:
            os.close(fd)
        # fails while another process has it open: that one removes it later
        with suppress(OSError):
            lock.unlink()
        return
    try:
        with suppress(OSError):
            lock.unlink()
        _unlock(fd)
    finally:
        os.close(fd)


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new file of a name no other writer uses, ``.<name>.<random>.tmp`` beside
    ``path``, open for writing."""
    flags = (
        os.O_WRONLY
        | os.O_CREAT
        | os.O_EXCL
        | getattr(os, "O_BINARY", 0)
        | getattr(os, "O_NOINHERIT", 0)
    )
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"found no unused temporary name beside {path}")


def _replace(tmp: Path, path: Path) -> None:
    """``os.replace``, retried for a few seconds on Windows, where a reader holding
    ``path`` open blocks it."""
    for attempt in range(50):
        try:
            os.replace(tmp, path)
            return
        except PermissionError:
            if os.name != "nt" or attempt == 49:
                raise
            time.sleep(0.1)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable where the platform allows opening a directory
    (POSIX)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
