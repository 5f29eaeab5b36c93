"""Cassette files on disk: the one place that opens, reads, locks, writes and replaces them.
Every caller (use_cassette, the recorder addon, the player, the CLI) goes through it; the format
itself (bytes <-> Cassette) is ``_format``'s.

Reading
    ``load(path)`` (msgpack), ``read_any(path)`` (msgpack or the JSON twin, by content),
    ``read_named(path)`` (the same with its name, for players), ``read_bytes(path)``,
    ``present(path)``. A cassette is read on demand: the small document in
    front, and a large response's body and chunk tables only when first used (an open file
    descriptor is kept until then; ``check=True`` reads and checks everything now).
    ``open_cached(path)``: the same, kept while the file holds the same bytes (see below).
Writing
    ``save(cassette, path)``, ``write_atomic(path, data)``: a temp file in the same directory,
    fsync'ed and renamed over the target, so readers see the old cassette or the new one, never
    a part. ``update(path, change)``, ``append(path, interactions, replace=...)`` and
    ``Appender(path)`` do it under the cassette's lock. Every failure is a CassetteError that
    names the file (read-only directory, disk full, a damaged cassette not to append to).
Locks
    ``locked(path)``: an exclusive lock per cassette (``filelock``), in a per-user folder of the
    temp directory (mode 0700, refused when it is a symlink or someone else's), so no ``.lock``
    file lands among the cassettes. A wait longer than ``SSEVCR_LOCK_TIMEOUT`` seconds (default
    30) fails naming the process that holds it.
Runs
    ``begin_run(run_id, claims)``: record mode ``all`` replaces a cassette once per run (pytest
    session, across xdist workers through a claims folder) and appends after that.

Temp files are named ``.ssevcr-PID-HOST-RANDOM.tmp``; one left by a killed process is removed
by the next save into its directory (its process is gone, or it is over an hour old).
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import os
import re
import stat
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from . import _format
from ._cassette import Cassette, Interaction
from ._errors import CassetteError, ConfigError

TYPE_CHECKING = False  # loading a cassette does not import typing (nor threading)
if TYPE_CHECKING:
    from typing import Any, Literal

    Replace = Literal[False, True, "once"]

__all__ = [
    "LOCK_TIMEOUT",
    "Appender",
    "Opened",
    "append",
    "begin_run",
    "load",
    "lock_path",
    "locked",
    "open_cached",
    "present",
    "profile_times",
    "read_any",
    "read_bytes",
    "read_named",
    "read_regular",
    "save",
    "too_large",
    "update",
    "write_atomic",
]

# ---------------------------------------------------------------------------------------------
# reading


class _File:
    """A cassette file read on demand (what ``_format`` slices): the descriptor stays open while
    a response still needs bytes from it, and is closed when nothing refers to it any more."""

    __slots__ = ("__weakref__", "fd", "path", "size")

    def __init__(self, path: str) -> None:
        try:
            fd = _open_read(path)  # a FIFO is refused below, not waited on
        except FileNotFoundError:
            raise CassetteError(path, "no such file") from None
        except IsADirectoryError:
            raise CassetteError(path, "is a directory, not a cassette file") from None
        except OSError as e:
            raise CassetteError(path, f"cannot be read: {e.strerror or e}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise CassetteError(path, f"is {what}, not a cassette file")
        self.fd, self.path, self.size = fd, path, st.st_size
        weakref.finalize(self, os.close, fd)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: slice, /) -> bytes:
        start, stop, _ = index.indices(self.size)
        pieces = []
        while start < stop:
            try:
                piece = os.pread(self.fd, min(stop - start, 1 << 30), start)
            except OSError as e:
                raise CassetteError(self.path, f"cannot be read: {e.strerror or e}") from None
            if not piece:
                break  # cut short since it was opened: the format says so
            pieces.append(piece)
            start += len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def load(path: str | os.PathLike[str], *, check: bool = False) -> Cassette:
    """The msgpack cassette at ``path``. ``check``: read and check the bodies and chunk tables
    of large responses now (a damaged one is refused here, not where it is first used)."""
    p = os.fspath(path)
    cassette = _format.loads(_File(p), path=p)
    return _checked(cassette) if check else cassette


def profile_times(path: str) -> list[float]:
    """The event times a ``profile:CASSETTE`` timing is fitted to: those of the first streamed
    interaction of the cassette (msgpack or JSON) at ``path``."""
    from ._stats import event_times

    try:
        times = event_times(read_any(path).interactions)
    except CassetteError as e:
        raise ConfigError(f"timing profile:{path}: {e}") from None
    except OSError as e:
        raise ConfigError(f"timing profile:{path}: cannot read it: {e.strerror or e}") from None
    if not times:
        raise ConfigError(f"{path}: no streamed events to fit a timing profile to")
    return times


def read_any(path: str | os.PathLike[str], *, check: bool = False) -> Cassette:
    """Load a cassette from msgpack or its JSON twin (by content, not by name)."""
    p = os.fspath(path)
    cassette = _format.loads_any(_File(p), path=p)
    return _checked(cassette) if check else cassette


def read_named(path: str | os.PathLike[str]) -> tuple[str, Cassette]:
    """``(path, cassette)``: :func:`read_any`, with the name a player reports the cassette by."""
    p = os.fspath(path)
    return p, read_any(p)


def _checked(cassette: Cassette) -> Cassette:
    for interaction in cassette.interactions:
        interaction.response.body  # noqa: B018 - reads and checks what is still in the file
    return cassette


def read_bytes(path: str | os.PathLike[str], *, limit: int | None = None, hint: str = "") -> bytes:
    """A cassette file's bytes, with the loader's errors. ``limit``: a file larger than that
    many bytes is refused before any is read (what it holds beyond its size when opened is
    never read), with ``hint`` (how to read more) at the end of the error."""
    f = _File(os.fspath(path))
    if limit is not None and f.size > limit:
        raise CassetteError(f.path, too_large(limit, hint))
    return f[0 : f.size]


def too_large(limit: int, hint: str = "") -> str:
    """What a file or stdin larger than ``limit`` bytes is told."""
    from ._content import format_size

    return f"larger than {format_size(limit)} ({limit} bytes), not read{hint}"


def read_regular(path: str | os.PathLike[str], *, limit: int) -> bytes:
    """The bytes of the regular file at ``path`` (a configuration, a request body): a FIFO, a
    device or a directory is refused without blocking on the open, and so is a file larger than
    ``limit`` bytes. Raises ``OSError`` (its ``strerror`` says what is wrong)."""
    fd = _open_read(os.fspath(path))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes")
        pieces, size = [], 0
        while piece := os.read(fd, min(1 << 20, limit + 1 - size)):
            pieces.append(piece)
            size += len(piece)
            if size > limit:  # grew since the fstat
                raise OSError(errno.EFBIG, f"larger than {limit} bytes")
        return b"".join(pieces)
    finally:
        os.close(fd)


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


# ---------------------------------------------------------------------------------------------
# the open-file cache: use_cassette and the pytest marker open their cassette at every entry (every
# test). A file holding the same bytes as when it was last opened is not decoded again, and what
# callers derived from it (fault-free schedules) is kept with it. The bytes are compared, never
# trusted from a timestamp. Bounded by the bytes of the files kept (what is derived from a file
# is about twice its size): larger files are loaded each time, on demand.

CACHE_FILE = 4 << 20
"""Files up to this size are kept."""
CACHE_TOTAL = 8 << 20
"""And this much in all (the files opened most recently: tests sharing a cassette run in a row)."""


@dataclass(slots=True, eq=False)
class Opened:
    """A cassette as opened, with what callers keep with it while the file does not change
    (``use_cassette`` keeps its schedules by timing in ``derived``)."""

    cassette: Cassette
    derived: dict[Any, Any] = field(default_factory=dict)
    data: bytes = field(default=b"", repr=False)


_opened: dict[str, Opened] = {}  # by absolute path, least recently opened first
_opened_bytes = 0  # the sum of len(data) over _opened
_opened_lock = _thread.allocate_lock()


def open_cached(path: str | os.PathLike[str]) -> Opened:
    """The cassette at ``path`` (msgpack or JSON twin), the same :class:`Opened` as last time when
    the file holds the same bytes."""
    p = os.fspath(path)
    f = _File(p)
    if f.size > CACHE_FILE:
        return Opened(_format.loads_any(f, path=p))
    data = f[0 : f.size]
    key = os.path.abspath(p)
    global _opened_bytes
    with _opened_lock:
        kept = _opened.pop(key, None)
        if kept is not None and kept.data == data:
            _opened[key] = kept  # now the most recent
            return kept
        if kept is not None:
            _opened_bytes -= len(kept.data)
    opened = Opened(_format.loads_any(data, path=p), data=data)
    with _opened_lock:
        replaced = _opened.pop(key, None)  # another thread's, opened meanwhile
        if replaced is not None:
            _opened_bytes -= len(replaced.data)
        _opened_bytes += len(data)
        _opened[key] = opened
        while _opened_bytes > CACHE_TOTAL:
            _opened_bytes -= len(_opened.pop(next(iter(_opened))).data)
    return opened


# ---------------------------------------------------------------------------------------------
# writing

_TEMP = re.compile(r"\.ssevcr-(?:(\d+)-([0-9a-f]{8})-)?[0-9a-f]{8,12}\.tmp")
_STALE_AGE = 3600.0  # seconds: a temp file this old is stale whoever wrote it
_host_mark = ""


def _host() -> str:
    """Names this host and PID namespace in temp file names, so that only processes that can
    see each other judge a writer gone by its PID."""
    global _host_mark
    if not _host_mark:
        import hashlib

        try:
            ns = os.stat("/proc/self/ns/pid").st_ino
        except OSError:
            ns = 0
        node = os.uname().nodename if hasattr(os, "uname") else ""
        _host_mark = hashlib.sha256(f"{node}:{ns}".encode()).hexdigest()[:8]
    return _host_mark


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's
        return True
    return True


def _sweep(directory: str) -> None:
    """Remove temp files left by saves that were killed (SIGKILL, power loss)."""
    import time

    now = time.time()
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            m = _TEMP.fullmatch(entry.name)
            if m is None:
                continue
            with contextlib.suppress(OSError):
                pid, host = m.group(1), m.group(2)
                gone = pid is not None and host == _host() and not _alive(int(pid))
                if gone or now - entry.stat(follow_symlinks=False).st_mtime > _STALE_AGE:
                    os.unlink(entry.path)


def _create_temp(directory: str) -> tuple[int, str]:
    """A new file beside the target. Unlike ``tempfile.mkstemp`` (always 0600) it gets the mode
    a plain ``open()`` would give, so other users and CI containers can read the cassette."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_BINARY", 0)
    while True:
        name = f".ssevcr-{os.getpid()}-{_host()}-{os.urandom(4).hex()}.tmp"
        tmp = os.path.join(directory, name)
        try:
            return os.open(tmp, flags, 0o666), tmp  # the umask applies
        except FileExistsError:  # pragma: no cover - 32 random bits
            continue


def _not_a_folder(path: str) -> NotADirectoryError | None:
    """The error naming the folder on the way to ``path`` that is something else (a file, a
    dangling symlink), as written in ``path``: ``'afile' is not a folder``; None when none is."""
    folder = os.path.dirname(path)
    while folder:
        if os.path.lexists(folder):  # False also below a file ('afile/sub': ENOTDIR)
            if os.path.isdir(folder):
                return None
            return NotADirectoryError(errno.ENOTDIR, f"{folder!r} is not a folder")
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return None


def _make_folder(path: str) -> None:
    """Make the folder that ``path`` goes in. A file where a folder should be is one
    NotADirectoryError whose ``strerror`` names it (``'afile' is not a folder``), not EEXIST."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        error = _not_a_folder(path)
        if error is None:
            raise
        raise error from None


def _open_read(path: str) -> int:
    """A descriptor to read ``path``; O_NONBLOCK: a FIFO must not hang the open (the callers
    refuse what is not a regular file). A file on the way is named (``'afile' is not a
    folder``)."""
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | os.O_CLOEXEC)
    except NotADirectoryError:
        error = _not_a_folder(path)
        if error is None:
            raise
        raise error from None


def write_atomic(path: str, data: bytes | Iterable[bytes], *, fsync: bool = True) -> None:
    """Write a file so that readers see the old content or the new, never a part (temp file in
    the same directory, then rename); a replaced file keeps its mode. Raises OSError."""
    directory = os.path.dirname(os.path.abspath(path))
    _make_folder(path)
    _sweep(directory)
    fd, tmp = _create_temp(directory)
    try:
        with contextlib.suppress(OSError):  # replacing a file keeps its mode
            os.fchmod(fd, stat.S_IMODE(os.stat(path).st_mode))
        with os.fdopen(fd, "wb") as f:
            for piece in [data] if isinstance(data, bytes) else data:
                f.write(piece)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:  # the rename itself, durable
        with contextlib.suppress(OSError):
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def save(cassette: Cassette, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
    """Write atomically: the file on disk is always a whole cassette, the old one or the new
    one. Raises CassetteError (read-only directory, disk full, ...): nothing was saved."""
    p = os.fspath(path)
    try:
        pieces = _format.dump_pieces(cassette)
    except CassetteError as e:  # too large; or a part left in the file it came from is damaged
        raise CassetteError(
            e.path if e.path != "<memory>" else p, f"{e.problem}; {p!r} not saved", where=e.where
        ) from None
    try:
        write_atomic(p, pieces, fsync=fsync)
    except OSError as e:
        raise CassetteError(p, f"cannot be written, not saved: {e.strerror or e}") from None


def update(
    path: str | os.PathLike[str], change: Callable[[Cassette], Cassette], *, fsync: bool = True
) -> Cassette:
    """Load (or start empty), change and save a cassette under its lock. A cassette that does
    not load is not replaced: the CassetteError says why."""
    p = os.fspath(path)
    with locked(p):
        new = change(load(p, check=True) if present(p) else Cassette())
        save(new, p, fsync=fsync)
        return new


class Appender:
    """Appends to one cassette again and again (what the recorder addon does for each batch of
    exchanges): each time under the lock, loading what is on disk, except that the file this
    appender saved last is not read again while it is still the one there. A recorded
    reconnection appended is linked to the stream it continues (``Interaction.resumes``)."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = os.fspath(path)
        self.fsync = fsync
        self._last: tuple[Cassette, tuple[int, ...]] | None = None

    def append(self, interactions: Sequence[Interaction], *, replace: Replace = False) -> Cassette:
        """Save the cassette with ``interactions`` added. ``replace``: False appends to what is
        there (a damaged cassette is refused); True replaces its interactions (a damaged file
        is overwritten); ``"once"`` replaces on the first save of the cassette in this run
        (see :func:`begin_run`), appends after that (record mode ``all``). Returns what it
        saved; raises CassetteError when nothing was saved."""
        p = self.path
        with locked(p):
            if replace is True:
                try:
                    base = Cassette(meta=self._current().meta)
                except CassetteError:
                    base = Cassette()  # --overwrite: what is there is not wanted, readable or not
            else:
                try:
                    current = self._current()
                except CassetteError as e:
                    raise _not_appended(e, replace) from None
                first = replace == "once" and _first_rewrite(p)
                base = Cassette(meta=current.meta) if first else current
            new = Cassette(
                interactions=(*base.interactions, *_linked(base.interactions, interactions)),
                meta=base.meta,
            )
            try:
                save(new, p, fsync=self.fsync)
            except CassetteError:
                self._last = None
                raise
            identity = _identity(p)
            self._last = (new, identity) if identity else None
            return new

    def _current(self) -> Cassette:
        if self._last is not None and self._last[1] == _identity(self.path):
            return self._last[0]
        self._last = None
        return load(self.path, check=True) if present(self.path) else Cassette()


def _linked(earlier: Sequence[Interaction], new: Sequence[Interaction]) -> Sequence[Interaction]:
    """``new`` with each recorded reconnection (a request with ``Last-Event-ID``) linked to the
    stream it continues, in what is on disk or in the same batch (``_resume.linked``)."""
    if not any(i.request.header("last-event-id") for i in new):
        return new
    from . import _resume

    return _resume.linked(earlier, new)


def _not_appended(error: CassetteError, replace: Replace) -> CassetteError:
    hint = (
        "record mode 'all' does not replace a cassette that does not load: remove it to "
        "record it again"
        if replace == "once"
        else "repair it, or replace it (ssevcr record --overwrite)"
    )
    return CassetteError(
        error.path,
        f"{error.problem}; the new interactions were not saved ({hint})",
        where=error.where,
        line=error.line,
    )


def append(
    path: str | os.PathLike[str],
    interactions: Sequence[Interaction],
    *,
    replace: Replace = False,
    fsync: bool = True,
) -> Cassette:
    """Add ``interactions`` to the cassette at ``path`` under its lock (see
    :meth:`Appender.append` for ``replace``)."""
    return Appender(path, fsync=fsync).append(interactions, replace=replace)


def _identity(path: str) -> tuple[int, ...]:
    """Which file is at ``path`` (an atomic save by anyone puts a new inode there)."""
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


# ---------------------------------------------------------------------------------------------
# locks

LOCK_TIMEOUT = 30.0
"""Seconds to wait for a cassette's lock (``SSEVCR_LOCK_TIMEOUT`` overrides)."""


def _lock_timeout() -> float:
    raw = os.environ.get("SSEVCR_LOCK_TIMEOUT")
    if not raw:
        return LOCK_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise ConfigError(f"SSEVCR_LOCK_TIMEOUT: expected seconds >= 0, got {raw!r}")
    return value


def _lock_folder(path: str) -> str:
    """The per-user lock folder in the temp directory, created 0700; refused when it is a
    symlink, not a directory, or someone else's (anyone can create names in /tmp)."""
    import tempfile

    uid = os.getuid() if hasattr(os, "getuid") else None
    base = os.path.realpath(tempfile.gettempdir())
    folder = os.path.join(base, f"ssevcr-locks-{uid if uid is not None else 0}")

    def refuse(why: str) -> CassetteError:
        return CassetteError(path, f"cannot be locked, not saved: the lock folder {folder} {why}")

    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)
        st = os.lstat(folder)
    except OSError as e:
        raise refuse(f"cannot be made: {e.strerror or e}") from None
    if stat.S_ISLNK(st.st_mode):
        raise refuse("is a symlink (refused: another user may have planted it)")
    if not stat.S_ISDIR(st.st_mode):
        raise refuse("is not a directory")
    if uid is not None and st.st_uid != uid:
        raise refuse(f"belongs to uid {st.st_uid}, not to you (uid {uid}): refused")
    if stat.S_IMODE(st.st_mode) & 0o077:
        try:
            os.chmod(folder, 0o700)  # ours, but opened up: close it again
        except OSError as e:
            raise refuse(f"is open to others and cannot be closed: {e.strerror or e}") from None
    return folder


def lock_path(path: str | os.PathLike[str]) -> str:
    """Where the lock of a cassette lives: the per-user lock folder, named by the cassette's
    real path, so no ``.lock`` file ever lands beside a cassette in the repository."""
    import hashlib

    p = os.fspath(path)
    real = os.path.realpath(os.path.abspath(p))
    name = hashlib.sha256(os.fsencode(real)).hexdigest()[:40]
    return os.path.join(_lock_folder(p), name + ".lock")


@contextlib.contextmanager
def locked(path: str | os.PathLike[str], *, timeout: float | None = None) -> Iterator[None]:
    """Hold the exclusive lock of a cassette so that several writers, in any process on this
    machine, never lose each other's interactions. ``timeout``: seconds to wait (default
    ``SSEVCR_LOCK_TIMEOUT`` or 30); then CassetteError naming the holder's PID."""
    p = os.fspath(path)
    try:
        import filelock
    except ImportError:  # pragma: no cover - a dependency
        raise CassetteError(
            p, "cannot be locked, not saved: the filelock package is missing (pip install filelock)"
        ) from None
    wait = _lock_timeout() if timeout is None else timeout
    try:
        _make_folder(p)
    except OSError as e:
        raise CassetteError(p, f"cannot be written, not saved: {e.strerror or e}") from None
    lock_file = lock_path(p)
    lock = filelock.FileLock(lock_file, timeout=wait, mode=0o600)
    try:
        lock.acquire()
    except filelock.Timeout:
        holder = _holder(lock_file)
        raise CassetteError(
            p,
            f"locked by {holder} for {wait:g} s, not saved (another ssevcr is writing it; "
            "SSEVCR_LOCK_TIMEOUT=SECONDS waits longer)",
        ) from None
    except OSError as e:  # a symlink where the lock file should be (O_NOFOLLOW), ...
        raise CassetteError(
            p, f"cannot be locked, not saved: {lock_file}: {e.strerror or e}"
        ) from None
    try:
        _note_holder(lock_file)
        yield
    finally:
        lock.release()


def _note_holder(lock_file: str) -> None:
    """Write our PID beside the lock, for the message of a process that times out waiting."""
    with contextlib.suppress(OSError):
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(lock_file + ".pid", flags, 0o600)
        try:
            os.write(fd, f"{os.getpid()}\n".encode())
        finally:
            os.close(fd)


def _holder(lock_file: str) -> str:
    try:
        with open(lock_file + ".pid", "rb") as f:
            return f"pid {int(f.read(32))}"
    except (OSError, ValueError):
        return "another process"


# ---------------------------------------------------------------------------------------------
# record mode ``all`` replaces a cassette once per run

_rewritten: set[str] = set()
_run: tuple[str, str | None] = ("", None)  # (run id, folder shared by the processes of the run)


def begin_run(run_id: str, claims: str | None = None) -> None:
    """Start counting ``all`` rewrites for a new run (a pytest session). ``claims``: a folder
    shared by several processes (pytest-xdist workers) of the same run, so that the first of
    them to save a cassette replaces it and the others append. Same id again: no change."""
    global _run
    if _run[0] != run_id:
        _run = (run_id, claims)
        _rewritten.clear()


def _first_rewrite(path: str) -> bool:
    """True once per run and cassette (called under the cassette's lock)."""
    key = os.path.realpath(os.path.abspath(path))
    claims = _run[1]
    if claims is None:
        if key in _rewritten:
            return False
        _rewritten.add(key)
        return True
    import hashlib

    claim = os.path.join(claims, hashlib.sha256(os.fsencode(key)).hexdigest()[:40])
    try:
        os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    except OSError as e:
        raise CassetteError(
            path, f"not saved: the run's claims folder: {e.strerror or e}"
        ) from None
    return True
