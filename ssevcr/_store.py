"""Cassette files on disk: atomic writes, locks, reading with the loader's errors.

The one place that opens, maps, locks and replaces cassette files; the format itself (bytes <->
Cassette) is ``_format``'s. A write goes to a temp file in the same directory and is renamed over
the target, so readers see the old cassette or the new one, never a part.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from ._cassette import Cassette
from ._errors import CassetteError
from ._format import dumps, loads, loads_any

__all__ = [
    "load",
    "lock_path",
    "locked",
    "present",
    "read_any",
    "read_bytes",
    "save",
    "update",
    "write_atomic",
]


def load(path: str | os.PathLike[str]) -> Cassette:
    p = os.fspath(path)
    try:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise CassetteError(p, "the file is empty")
            # map the file instead of reading it into a fresh buffer: the body is copied once,
            # by msgpack, instead of twice (a large cassette loads about twice as fast)
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                return loads(mapped, path=p)  # type: ignore[arg-type]
    except FileNotFoundError:
        raise CassetteError(p, "no such file") from None
    except IsADirectoryError:
        raise CassetteError(p, "is a directory, not a cassette file") from None
    except OSError as e:
        raise CassetteError(p, f"cannot be read: {e.strerror or e}") from None


def _create_temp(directory: str) -> tuple[int, str]:
    """A new file beside the target. Unlike ``tempfile.mkstemp`` (always 0600) it gets the mode
    a plain ``open()`` would give, so other users and CI containers can read the cassette."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".ssevcr-{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp  # the umask applies
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


def write_atomic(path: str, data: bytes, *, fsync: bool = True) -> None:
    """Write a file so that readers see the old content or the new, never a part (temp file in
    the same directory, then rename); a replaced file keeps its mode."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = _create_temp(directory)
    try:
        with contextlib.suppress(OSError):  # replacing a file keeps its mode
            os.fchmod(fd, stat.S_IMODE(os.stat(path).st_mode))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save(cassette: Cassette, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
    """Write atomically (temp file in the same directory, then rename): the file on disk is
    always a whole cassette, the old one or the new one."""
    p = os.fspath(path)
    try:
        write_atomic(p, dumps(cassette), fsync=fsync)
    except OSError as e:
        raise CassetteError(p, f"cannot be written: {e.strerror or e}") from None


def lock_path(path: str | os.PathLike[str]) -> str:
    """Where the lock of a cassette lives: a per-user folder in the temp directory, named by the
    cassette's real path, so no ``.lock`` file ever lands beside a cassette in the repository."""
    import hashlib
    import tempfile

    real = os.path.realpath(os.path.abspath(os.fspath(path)))
    uid = os.getuid() if hasattr(os, "getuid") else 0
    folder = os.path.join(tempfile.gettempdir(), f"ssevcr-locks-{uid}")
    return os.path.join(folder, hashlib.sha256(os.fsencode(real)).hexdigest()[:40] + ".lock")


@contextlib.contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on a cassette (see :func:`lock_path`) so that several recorders,
    in any process on this machine, appending to one cassette never lose each other's
    interactions."""
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    lock_file = lock_path(path)
    os.makedirs(os.path.dirname(lock_file), mode=0o700, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    with open(lock_file, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def update(
    path: str | os.PathLike[str], change: Callable[[Cassette], Cassette], *, fsync: bool = True
) -> Cassette:
    """Load (or start empty), change and save a cassette under its lock."""
    p = os.fspath(path)
    with locked(p):
        current = load(p) if os.path.exists(p) else Cassette()
        new = change(current)
        save(new, p, fsync=fsync)
        return new


def present(path: str | os.PathLike[str]) -> bool:
    """Whether anything is at ``path``, also something that cannot be read (a symlink loop, a
    file where a directory should be): loading it then says what is wrong, instead of a
    recorder or a replay treating it as absent."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return True


def read_any(path: str | os.PathLike[str]) -> Cassette:
    """Load a cassette from msgpack or its JSON twin (by content, not by name)."""
    p = os.fspath(path)
    return loads_any(read_bytes(p), path=p)


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """A cassette file's bytes, with the loader's errors."""
    p = os.fspath(path)
    try:
        return Path(p).read_bytes()
    except FileNotFoundError:
        raise CassetteError(p, "no such file") from None
    except OSError as e:
        raise CassetteError(p, f"cannot be read: {e.strerror or e}") from None
