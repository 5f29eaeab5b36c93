"""Tests for the store (ssevcr._store) with real files, real processes and real file systems:
loading on demand, old versions, the open-file cache, appending and replacing, the lock folder
and lock timeouts, temp files left by killed saves, read-only directories and a full disk.

Permission tests run the saving code as an unprivileged user (``setpriv``) when the suite runs
as root, since root ignores permission bits; the full-disk test mounts a 64 KiB tmpfs inside a
private mount namespace (``unshare``), where it exists only for the child doing the save.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from conftest import ROOT

from ssevcr import _format, _store
from ssevcr._cassette import Cassette, End, Interaction, Request, Response
from ssevcr._errors import CassetteError, ConfigError
from ssevcr.mitm.recorder import _Writer

GOLDEN_V1 = ROOT / "tests" / "fixtures" / "cassettes-v1"
EXAMPLES = ROOT / "cassettes" / "examples"


def stream(n: int, *, tag: str = "") -> Interaction:
    chunks = [
        (0.3 + i * 1e-3, b'data: {"i":%d,"t":"%s"}\n\n' % (i, tag.encode())) for i in range(n)
    ]
    response = Response.from_chunks(
        200, chunks, reason="OK", headers=(("content-type", "text/event-stream"),), end=End(9.0)
    )
    return Interaction(Request("POST", f"http://x/v1/chat/completions?{tag}"), response)


def small(tag: str = "") -> Interaction:
    return Interaction(
        Request("GET", f"http://x/{tag}"), Response.from_chunks(200, [(0.01, tag.encode())])
    )


def python(code: str, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        **kw,  # type: ignore[call-overload]
    )


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ---------------------------------------------------------------------------------------------
# loading on demand


def test_a_large_response_is_written_by_reference_and_read_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    cassette = Cassette((stream(5_000), small("a")))
    _store.save(cassette, path)
    doc = msgpack.unpackb(path.read_bytes())
    assert doc["version"] == 2 and list(doc)[-1] == "data"
    big, little = (i["response"] for i in doc["interactions"])
    assert all(isinstance(big[k], list) for k in ("body", "chunk_sizes", "chunk_at"))
    assert all(isinstance(little[k], bytes) for k in ("body", "chunk_sizes", "chunk_at"))
    before = open_fds()
    loaded = _store.load(path)
    assert open_fds() == before + 1  # kept open for the response still in the file
    assert loaded == cassette  # reads it: equal in every byte and time
    assert open_fds() == before  # ... and then lets go of the file
    assert _format.dumps(loaded) == path.read_bytes()


def test_a_cassette_without_large_responses_keeps_no_file_open(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    _store.save(Cassette((small("a"), small("b"))), path)
    before = open_fds()
    loaded = _store.load(path)
    assert open_fds() == before and len(loaded) == 2
    dropped = _store.load(path)
    assert dropped.interactions[0].request.url == "http://x/a"
    del dropped
    assert open_fds() == before


MEMORY = """
import resource, sys, time
from ssevcr import _store

def rss():  # MiB, now
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20

base = rss()
c = _store.load(sys.argv[1])
loaded = rss()
body = c.interactions[0].response.body
used = rss()
print(f"{loaded - base:.1f} {used - base:.1f} {len(body) / 2**20:.1f}")
"""


def test_loading_a_large_cassette_costs_memory_only_when_its_body_is_used(tmp_path: Path) -> None:
    path = tmp_path / "big.msgpack"
    _store.save(Cassette((stream(400_000),)), path)
    size = path.stat().st_size / 2**20
    out = python(MEMORY, str(path))
    assert out.returncode == 0, out.stderr
    loaded, used, body = map(float, out.stdout.split())
    assert size > 10 and body > 9
    assert loaded < 3  # the document in front, not the body
    assert body * 0.8 < used < size * 1.6  # about the file, once (no second copy)


def test_damaged_columns_left_in_the_file_fail_on_first_use_naming_the_field(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.msgpack"
    _store.save(Cassette((small("a"), stream(3_000))), path)
    raw = bytearray(path.read_bytes())
    doc = msgpack.unpackb(bytes(raw))
    start = len(raw) - len(doc["data"])
    offset, _size = doc["interactions"][1]["response"]["chunk_at"]
    raw[start + offset + 8 * 17 : start + offset + 8 * 18] = b"\x00" * 6 + b"\xf8\x7f"  # NaN
    path.write_bytes(bytes(raw))

    loaded = _store.load(path)  # the document in front is fine
    assert loaded.interactions[0].response.body == b"a"
    for _ in range(2):  # and stays refused
        with pytest.raises(CassetteError) as info:
            loaded.interactions[1].response.chunk_at  # noqa: B018
        assert info.value.path == str(path)
        assert info.value.where == "interactions[1].response.chunk_at[17]"
        assert "non-decreasing" in info.value.problem
    with pytest.raises(CassetteError) as info:  # check=True refuses it at once
        _store.load(path, check=True)
    assert info.value.where == "interactions[1].response.chunk_at[17]"
    with pytest.raises(CassetteError):  # and nothing is appended to it
        _store.append(path, [small("b")])
    assert path.read_bytes() == bytes(raw)


def test_a_file_cut_short_after_loading_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    _store.save(Cassette((stream(3_000),)), path)
    loaded = _store.load(path)
    with open(path, "r+b") as f:  # in place, as cp or an editor might
        f.truncate(100)
    with pytest.raises(CassetteError) as info:
        loaded.interactions[0].response.body  # noqa: B018
    assert "cut short" in info.value.problem and info.value.path == str(path)


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (lambda r, n: r.update(body=[0, n + 1]), "body"),
        (lambda r, n: r.update(body=[n, 1]), "body"),
        (lambda r, n: r.update(body=[-1, 1]), "body"),
        (lambda r, n: r.update(body=[0, True]), "body"),
        (lambda r, n: r.update(body=[0]), "body"),
        (lambda r, n: r.update(chunk_sizes=[0, 3]), "chunk_sizes"),
        (lambda r, n: r.update(chunk_at=[0, 16]), "chunk_at"),
    ],
)
def test_references_are_checked_when_loading(edit: object, where: str, tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    _store.save(Cassette((stream(3_000),)), path)
    doc = msgpack.unpackb(path.read_bytes())
    edit(doc["interactions"][0]["response"], len(doc["data"]))  # type: ignore[operator]
    path.write_bytes(msgpack.packb(doc))
    with pytest.raises(CassetteError) as info:
        _store.load(path)
    assert info.value.where == f"interactions[0].response.{where}"


def test_the_data_section_anywhere_in_the_document_and_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    cassette = Cassette((stream(3_000),), meta={"k": "v"})
    _store.save(cassette, path)
    doc = msgpack.unpackb(path.read_bytes())
    moved = {"data": doc.pop("data"), **doc}  # not last: read past, still loads
    path.write_bytes(msgpack.packb(moved))
    assert _store.load(path) == cassette
    path.write_bytes(msgpack.packb({**doc, "data": moved["data"]}) + b"\x00")
    with pytest.raises(CassetteError):
        _store.load(path)
    path.write_bytes(msgpack.packb({**doc, "data": moved["data"]})[:-1])
    with pytest.raises(CassetteError):
        _store.load(path)


def test_things_that_are_not_regular_files_are_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "c.msgpack"
    os.mkfifo(fifo)
    for read in (_store.load, _store.read_any, _store.read_bytes, _store.open_cached):
        with pytest.raises(CassetteError) as info:
            read(fifo)  # type: ignore[operator]
        assert "not a regular file" in info.value.problem
    with pytest.raises(CassetteError) as info:
        _store.load(tmp_path)
    assert "directory" in info.value.problem


# ---------------------------------------------------------------------------------------------
# version 1 (golden files written by 0.1.0)


@pytest.mark.parametrize("name", ["openai-chat-text", "groq-error-midstream", "long-stream"])
def test_version_1_cassettes_load_and_save_as_version_2(name: str, tmp_path: Path) -> None:
    old = GOLDEN_V1 / f"{name}.msgpack"
    assert msgpack.unpackb(old.read_bytes())["version"] == 1
    cassette = _store.load(old)
    again = tmp_path / "again.msgpack"
    _store.save(cassette, again)
    assert msgpack.unpackb(again.read_bytes())["version"] == 2
    assert _store.load(again) == cassette
    if (EXAMPLES / f"{name}.msgpack").exists():  # the example, rewritten as version 2
        assert (EXAMPLES / f"{name}.msgpack").read_bytes() == again.read_bytes()


def test_version_1_long_stream_is_what_0_1_0_recorded() -> None:
    cassette = _store.load(GOLDEN_V1 / "long-stream.msgpack")
    stream_, answer = cassette.interactions
    chunks = list(stream_.response.chunks)
    assert len(chunks) == 1201 and chunks[-1].data == b"data: [DONE]\n\n"
    assert chunks[7].data == b'data: {"choices":[{"delta":{"content":" token7"}}]}\n\n'
    assert chunks[7].at == 0.3 + 7 * 0.0125
    assert answer.response.body == b'{"data":[]}' and cassette.meta == {"ssevcr": "0.1.0"}


def test_a_version_1_json_twin_imports() -> None:
    twin = GOLDEN_V1 / "openai-chat-text.json"
    assert json.loads(twin.read_text())["version"] == 1
    assert _store.read_any(twin) == _store.load(GOLDEN_V1 / "openai-chat-text.msgpack")


# ---------------------------------------------------------------------------------------------
# the open-file cache


def test_a_file_opened_again_with_the_same_bytes_is_the_same_cassette(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    _store.save(Cassette((small("a"),)), path)
    first = _store.open_cached(path)
    first.derived["schedules"] = "built once"
    again = _store.open_cached(path)
    assert again is first and again.derived == {"schedules": "built once"}
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"http://x/a", b"http://x/b"))  # same size, in place
    changed = _store.open_cached(path)
    assert changed is not first and changed.derived == {}
    assert changed.cassette.interactions[0].request.url == "http://x/b"
    assert _store._opened_bytes == sum(len(o.data) for o in _store._opened.values())


def test_the_open_file_cache_is_bounded_by_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [tmp_path / f"c{i}.msgpack" for i in range(6)]
    for p in paths:
        _store.save(Cassette((stream(1_000, tag=p.stem),)), p)
    size = paths[0].stat().st_size
    monkeypatch.setattr(_store, "CACHE_TOTAL", 3 * size)  # room for three of them
    opened = [_store.open_cached(p) for p in paths]
    for n in (5, 4, 3):  # the three opened last are kept
        assert _store.open_cached(paths[n]) is opened[n]
    assert _store.open_cached(paths[0]) is not opened[0]  # pushed out by the later ones
    kept = sum(len(o.data) for o in _store._opened.values())
    assert _store._opened_bytes == kept <= 3 * size  # the running total is the sum
    monkeypatch.setattr(_store, "CACHE_FILE", size - 1)  # too large to keep at all
    a, b = _store.open_cached(paths[1]), _store.open_cached(paths[1])
    assert a is not b and a.cassette == b.cassette


# ---------------------------------------------------------------------------------------------
# appending and replacing


def test_append_replace_and_overwrite_over_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    _store.append(path, [small("a")])
    _store.append(path, [small("b")])
    assert [i.request.url for i in _store.load(path).interactions] == ["http://x/a", "http://x/b"]
    _store.append(path, [small("c")], replace=True)
    assert [i.request.url for i in _store.load(path).interactions] == ["http://x/c"]

    path.write_bytes(b"\x93damaged")
    with pytest.raises(CassetteError) as info:
        _store.append(path, [small("d")])
    assert "not saved" in info.value.problem and "--overwrite" in info.value.problem
    assert path.read_bytes() == b"\x93damaged"
    # what the message tells the user to do works: replacing overwrites a damaged file
    _store.append(path, [small("d")], replace=True)
    assert [i.request.url for i in _store.load(path).interactions] == ["http://x/d"]


def test_record_mode_all_replaces_once_per_run_and_refuses_a_damaged_cassette(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.msgpack"
    _store.save(Cassette((small("old"),), meta={"kept": "yes"}), path)
    _store.begin_run(os.urandom(8).hex())
    _store.append(path, [small("a")], replace="once")
    _store.append(path, [small("b")], replace="once")
    saved = _store.load(path)
    assert [i.request.url for i in saved.interactions] == ["http://x/a", "http://x/b"]
    assert saved.meta == {"kept": "yes"}

    _store.begin_run(os.urandom(8).hex())
    path.write_bytes(b"\xc1")
    with pytest.raises(CassetteError) as info:
        _store.append(path, [small("c")], replace="once")
    assert info.value.path == str(path) and "record mode 'all'" in info.value.problem
    assert path.read_bytes() == b"\xc1"
    path.unlink()  # what it says to do
    _store.append(path, [small("c")], replace="once")
    assert len(_store.load(path)) == 1


def _claim_and_append(path: str, run: str, claims: str, n: int) -> None:
    _store.begin_run(run, claims)
    _store.append(path, [small(f"worker{n}")], replace="once", fsync=False)


def test_record_mode_all_across_processes_replaces_once(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    _store.save(Cassette((small("old"),)), path)
    claims = tmp_path / "claims"
    claims.mkdir(mode=0o700)
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_claim_and_append, args=(str(path), "run1", str(claims), n))
        for n in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    urls = sorted(i.request.url for i in _store.load(path).interactions)
    assert urls == [f"http://x/worker{n}" for n in range(4)]  # the old one replaced, none lost


def test_an_appender_sees_what_others_saved_since_its_last_save(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    ours = _store.Appender(path)
    ours.append([small("1")])
    _store.append(path, [small("other")])  # another writer, between two of ours
    ours.append([small("2")])
    ours.append([small("3")])
    urls = [i.request.url for i in _store.load(path).interactions]
    assert urls == ["http://x/1", "http://x/other", "http://x/2", "http://x/3"]


def test_the_recorders_writer_overwrites_a_damaged_cassette_when_told(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    path.write_bytes(b"\x00\x01damaged")
    reports: list[str | None] = []
    writer = _Writer(str(path), overwrite=True, on_saved=lambda _i, error: reports.append(error))
    writer.submit(lambda: small("a"))
    writer.close()
    writer = _Writer(str(path), overwrite=False, on_saved=lambda _i, error: reports.append(error))
    writer.submit(lambda: small("b"))
    writer.close()
    assert reports == [None, None]
    assert [i.request.url for i in _store.load(path).interactions] == ["http://x/a", "http://x/b"]
    path.write_bytes(b"\x00\x01damaged")  # appending to a damaged one: reported, not lost silently
    writer = _Writer(str(path), overwrite=False, on_saved=lambda _i, error: reports.append(error))
    writer.submit(lambda: small("c"))
    writer.close()
    assert reports[-1] is not None and str(path) in reports[-1] and "not saved" in reports[-1]


# ---------------------------------------------------------------------------------------------
# the lock folder


@pytest.fixture
def temp_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temp directory of our own in place of /tmp (tempfile.gettempdir() answers it)."""
    base = tmp_path / "tmp"
    base.mkdir()
    base.chmod(0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    yield base


def folder_of(base: Path) -> Path:
    return base / f"ssevcr-locks-{os.getuid()}"


def test_the_lock_folder_is_made_private(temp_base: Path, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        _store.update(tmp_path / "c.msgpack", lambda c: c.append(small("a")))
    finally:
        os.umask(old)
    folder = folder_of(temp_base)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    (lock,) = [p for p in folder.iterdir() if p.suffix == ".lock"]
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    folder.chmod(0o755)  # ours, opened up by someone: closed again
    _store.update(tmp_path / "c.msgpack", lambda c: c)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_symlinked_lock_folder_is_refused(temp_base: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "attacker"
    elsewhere.mkdir()
    folder_of(temp_base).symlink_to(elsewhere)
    path = tmp_path / "c.msgpack"
    with pytest.raises(CassetteError) as info:
        _store.update(path, lambda c: c.append(small("a")))
    assert "symlink" in info.value.problem and "not saved" in info.value.problem
    assert list(elsewhere.iterdir()) == [] and not path.exists()


def test_a_lock_folder_of_another_user_is_refused(temp_base: Path, tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("making a folder that belongs to another user needs root")
    folder = folder_of(temp_base)
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    with pytest.raises(CassetteError) as info:
        _store.update(tmp_path / "c.msgpack", lambda c: c.append(small("a")))
    assert "belongs to uid 65534" in info.value.problem


def test_a_symlinked_lock_file_is_refused(temp_base: Path, tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    _store.update(path, lambda c: c.append(small("a")))  # makes the folder
    lock = Path(_store.lock_path(path))
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    lock.unlink()
    lock.symlink_to(victim)
    with pytest.raises(CassetteError) as info:
        _store.update(path, lambda c: c.append(small("b")))
    assert "cannot be locked" in info.value.problem
    assert victim.read_bytes() == b"precious" and len(_store.load(path)) == 1


HOLD = """
import sys, time
from ssevcr import _store
with _store.locked(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """A cassette whose lock another process holds."""
    path = tmp_path / "c.msgpack"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield path, holder
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_wait_times_out_naming_the_holder(
    held: tuple[Path, subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, holder = held
    started = time.monotonic()
    with pytest.raises(CassetteError) as info, _store.locked(path, timeout=0.5):
        pass
    assert 0.4 < time.monotonic() - started < 10
    assert f"locked by pid {holder.pid} for 0.5 s" in str(info.value)
    assert str(path) in str(info.value)
    monkeypatch.setenv("SSEVCR_LOCK_TIMEOUT", "0.2")  # the option, through a save
    with pytest.raises(CassetteError) as info:
        _store.append(path, [small("a")])
    assert f"locked by pid {holder.pid} for 0.2 s" in str(info.value)
    assert not path.exists()
    holder.kill()
    holder.wait()
    _store.append(path, [small("a")])  # the lock goes with its holder
    assert len(_store.load(path)) == 1


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_a_bad_lock_timeout_is_a_config_error(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSEVCR_LOCK_TIMEOUT", value)
    with pytest.raises(ConfigError, match="SSEVCR_LOCK_TIMEOUT"):
        _store.append(tmp_path / "c.msgpack", [small("a")])


# ---------------------------------------------------------------------------------------------
# temp files of killed saves

SAVER = """
import sys
from ssevcr import _store
from ssevcr._cassette import Cassette
cassette = _store.load(sys.argv[1], check=True)
print("ready", flush=True)
while True:
    _store.save(cassette, sys.argv[2])
"""


def temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".ssevcr-"))


def test_temp_files_of_killed_saves_are_swept_by_the_next_save(tmp_path: Path) -> None:
    source = tmp_path / "source.msgpack"
    _store.save(Cassette((stream(150_000),)), source)  # ~6 MB: a save takes a while
    folder = tmp_path / "cassettes"
    folder.mkdir()
    target = folder / "c.msgpack"
    kills_that_left_one = 0
    for _ in range(6):
        saver = subprocess.Popen(
            [sys.executable, "-c", SAVER, str(source), str(target)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert saver.stdout is not None and saver.stdout.readline() == "ready\n"
        own = f".ssevcr-{saver.pid}-"
        deadline = time.monotonic() + 30
        while not any(t.startswith(own) for t in temps(folder)) and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(saver.pid, signal.SIGKILL)  # mid-save: its temp file is there
        saver.wait()
        left = temps(folder)
        kills_that_left_one += any(t.startswith(own) for t in left)
        assert len(left) <= 1  # the previous ones were swept by this process's first save
    assert kills_that_left_one >= 3  # the kills did land mid-save
    if target.exists():
        _store.load(target, check=True)  # the cassette itself is always whole
    _store.save(Cassette((small("a"),)), target)
    assert temps(folder) == [] and _store.load(target) == Cassette((small("a"),))


def test_only_stale_temp_files_are_swept(tmp_path: Path) -> None:
    mine = _store._create_temp(str(tmp_path))  # a save in progress in this process
    os.close(mine[0])
    other_host = tmp_path / f".ssevcr-1-{'0' * 8}-{'1' * 8}.tmp"  # pid 1 of another namespace
    old_style = tmp_path / ".ssevcr-0123456789ab.tmp"  # 0.1.0's names
    stale = tmp_path / f".ssevcr-1-{'f' * 8}-{'2' * 8}.tmp"
    unrelated = tmp_path / ".ssevcr-notes.tmp"
    for p in (other_host, old_style, stale, unrelated):
        p.write_bytes(b"x")
    an_hour_ago = time.time() - 3700
    os.utime(stale, (an_hour_ago, an_hour_ago))
    _store.save(Cassette(), tmp_path / "c.msgpack")
    assert temps(tmp_path) == sorted(
        [Path(mine[1]).name, other_host.name, old_style.name, unrelated.name]
    )
    os.utime(old_style, (an_hour_ago, an_hour_ago))
    _store.save(Cassette(), tmp_path / "c.msgpack")
    assert old_style.name not in temps(tmp_path) and unrelated.exists()


def test_the_documented_gitignore_line_keeps_temp_files_out_of_git(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    line = next(
        line.strip() for line in readme.splitlines() if line.strip().startswith(".ssevcr-*.tmp")
    )
    repo = tmp_path / "repo"
    (repo / "cassettes").mkdir(parents=True)
    (repo / ".gitignore").write_text(line + "\n")
    _store.save(Cassette((small("a"),)), repo / "cassettes" / "c.msgpack")
    (repo / "cassettes" / f".ssevcr-{os.getpid()}-{'0' * 8}-{'1' * 8}.tmp").write_bytes(b"x")
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path)}

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True
        )
        return out.stdout

    git("init", "-q")
    git("add", ".")
    assert sorted(git("diff", "--cached", "--name-only").split()) == [
        ".gitignore",
        "cassettes/c.msgpack",
    ]


# ---------------------------------------------------------------------------------------------
# read-only directories and a full disk

SAVE = """
import sys
from ssevcr import _store
from ssevcr._cassette import Cassette, Interaction, Request, Response
from ssevcr._errors import CassetteError
big = Response.from_chunks(200, [(0.0, b"x" * int(sys.argv[2]))])
try:
    _store.append(sys.argv[1], [Interaction(Request("GET", "http://x/"), big)])
except CassetteError as e:
    print(e)
    sys.exit(3)
"""


def as_nobody() -> list[str]:
    """Run a command as an unprivileged user when we are root (root ignores permissions)."""
    if os.getuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run(
        [*command, sys.executable, "-c", "pass"], capture_output=True, text=True, timeout=60
    )
    if probe.returncode != 0:  # e.g. a pyenv Python under /root: its libpython is not readable
        pytest.skip(f"this Python cannot run as nobody: {probe.stderr.strip()[:200]}")
    return command


def test_saving_into_a_read_only_directory_is_a_clear_error() -> None:
    base = Path(tempfile.mkdtemp(prefix="ssevcr-ro-"))
    try:
        base.chmod(0o755)
        folder = base / "cassettes"
        folder.mkdir()
        before = folder / "old.msgpack"
        _store.save(Cassette((small("old"),)), before)
        if os.getuid() == 0:
            os.chown(folder, 65534, 65534)
        folder.chmod(0o555)
        for target in (folder / "new.msgpack", folder / "sub" / "new.msgpack", before):
            out = subprocess.run(
                [*as_nobody(), sys.executable, "-c", SAVE, str(target), "100"],
                capture_output=True,
                text=True,
                timeout=60,
                cwd=ROOT,
            )
            assert out.returncode == 3, out.stderr
            assert str(target) in out.stdout and "Permission denied" in out.stdout
            assert "not saved" in out.stdout
        assert sorted(p.name for p in folder.iterdir()) == ["old.msgpack"]
        assert _store.load(before) == Cassette((small("old"),))
    finally:
        base.chmod(0o755)
        (base / "cassettes").chmod(0o755)
        shutil.rmtree(base)


COUNT = "import sys; from ssevcr import _store; print(len(_store.load(sys.argv[1])))"


def test_saving_onto_a_full_disk_is_a_clear_error_and_keeps_the_old_file(tmp_path: Path) -> None:
    if (
        shutil.which("unshare") is None
        or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode
    ):
        pytest.skip("needs unshare with user and mount namespaces for a private tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = tmp_path / "save.py"
    script.write_text(SAVE)
    shell = (
        'mount -t tmpfs -o size=64k tmpfs "$1" && '
        f'"{sys.executable}" "$2" "$1/c.msgpack" 1000 && '  # fits: the old cassette
        f'"{sys.executable}" "$2" "$1/c.msgpack" 200000; code=$?; '  # does not fit
        'ls -a "$1"; '
        f'"{sys.executable}" -c "{COUNT}" "$1/c.msgpack"; '
        "exit $code"
    )
    out = subprocess.run(
        ["unshare", "-rm", "sh", "-c", shell, "sh", str(disk), str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert out.returncode == 3, out.stderr
    lines = out.stdout.splitlines()
    assert "No space left on device" in lines[0] and "not saved" in lines[0]
    assert sorted(lines[1:-1]) == [".", "..", "c.msgpack"]  # no temp file left behind
    assert lines[-1] == "1"  # the cassette as it was
