"""Decompression bombs never inflate.

A real gzip bomb — a valid 2 MB gzip stream that inflates to 2 GiB — is recorded as a cassette
and given to every consumer that decodes bodies, each in its own process under a 1 GiB
address-space limit (``RLIMIT_AS``): ``show`` (table, ``--events``, ``--json``, ``--diff-text``,
which git's textconv runs on every ``git diff``, ``--html``), ``audit`` and ``audit --fix``,
``export``, replay with an event fault, the recorder's summary and its redaction. Each must end
with a clean message and its exit code, saying the body was "not decoded: larger than ...", and
keep working on the raw bytes. ``--max-decoded`` / ``SSEVCR_MAX_DECODED`` move the limit.
Recording the bomb through the real mitmdump keeps mitmdump's memory far below the bomb's size.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_record import MITMDUMP, RecordCLI
from upstream import Script, Upstream

from ssevcr import _store
from ssevcr._cassette import Cassette, End, Interaction, Request, Response

MIB = 1 << 20
INFLATED = 2048 * MIB  # 2 GiB
LIMIT_AS = 1 << 30  # the address space each consumer runs in


def gzip_bomb() -> bytes:
    """A valid gzip member of 2 GiB of zeros in about 2 MB: 1 MiB blocks, each full-flushed so
    every block after the first compresses to the same bytes (written once, repeated), then an
    empty final block and the real CRC-32 and size."""
    zeros = bytes(MIB)
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = c.compress(b"data: " + zeros[6:]) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(b"data: " + zeros[6:])
    for _ in range(INFLATED // MIB - 1):
        crc = zlib.crc32(zeros, crc)
    count = INFLATED // MIB - 1
    return first + block * count + b"\x03\x00" + struct.pack("<II", crc, INFLATED & 0xFFFFFFFF)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    body = gzip_bomb()
    assert len(body) < 3 * MIB
    d = zlib.decompressobj(31)  # it is real: the first 256 MiB inflate, more is waiting
    assert len(d.decompress(body, 256 * MIB)) == 256 * MIB and d.unconsumed_tail
    return body


@pytest.fixture(scope="module")
def cassette(bomb: bytes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bomb as a recorded SSE response (64 KiB chunks), after a normal interaction."""
    pieces = [
        (0.1 + i / 1000, bomb[at : at + 65536]) for i, at in enumerate(range(0, len(bomb), 65536))
    ]
    bombed = Response.from_chunks(
        200,
        pieces,
        reason="OK",
        headers=(("content-type", "text/event-stream"), ("content-encoding", "gzip")),
        headers_at=0.05,
        end=End(pieces[-1][0] + 0.01),
    )
    plain = Response.from_chunks(
        200,
        [(0.1, b"data: a\n\n"), (0.2, b"data: b\n\n")],
        headers=(("content-type", "text/event-stream"),),
    )
    path = tmp_path_factory.mktemp("bomb") / "bomb.msgpack"
    _store.save(
        Cassette(
            (
                Interaction(Request("GET", "http://h/plain"), plain),
                Interaction(
                    Request(
                        "POST", "http://h/v1/bomb", (("x-api-key", "Zx8Kq2Lm9Np4Rs7Tv1Wy3Qa6"),)
                    ),
                    bombed,
                ),
            )
        ),
        path,
    )
    return path


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS, LIMIT_AS))


def run_limited(
    *args: str, env: dict[str, str] | None = None, code: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``ssevcr ARGS`` (or ``python -c CODE``) in a process under the 1 GiB address-space limit."""
    argv = [sys.executable, "-c", code or "from ssevcr.cli import main; main()", *args]
    full_env = {k: v for k, v in os.environ.items() if k != "SSEVCR_MAX_DECODED"}
    full_env.update(env or {})
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        preexec_fn=_limited,
        env=full_env,
        timeout=300,
        check=False,
    )


NOT_DECODED = "not decoded: larger than 64 MiB when decoded"


def clean(result: subprocess.CompletedProcess[str]) -> str:
    out = result.stdout + result.stderr
    assert "Traceback" not in out and "MemoryError" not in out, out[-3000:]
    return out


def test_the_limit_is_real(bomb: bytes) -> None:
    """The same limit stops a process that does inflate the bomb (so passing below means
    something)."""
    code = "import sys, zlib; print(len(zlib.decompress(sys.stdin.buffer.read(), 31)))"
    r = subprocess.run(
        [sys.executable, "-c", code],
        input=bomb,
        capture_output=True,
        preexec_fn=_limited,
        timeout=300,
        check=False,
    )
    assert r.returncode != 0 and b"MemoryError" in r.stderr


def test_show_diff_text_under_1_gib(cassette: Path) -> None:
    r = run_limited("show", "--diff-text", str(cassette))
    out = clean(r)
    assert r.returncode == 0
    assert f"note: the body is gzip-encoded and was {NOT_DECODED}; shown as recorded" in out
    assert "event 2 at 0.200000s message: b" in out  # the other interaction as usual
    assert "response body text: " in out and "not UTF-8, base64" in out  # the raw bytes
    assert "Zx8Kq2Lm9Np4Rs7Tv1Wy3Qa6" not in out


@pytest.mark.parametrize("mode", [[], ["--events"], ["--json"]], ids=["table", "events", "json"])
def test_show_under_1_gib(cassette: Path, mode: list[str]) -> None:
    r = run_limited("show", str(cassette), *mode, env={"COLUMNS": "200"})
    out = clean(r)
    assert r.returncode == 0 and NOT_DECODED in out
    if mode == ["--json"]:
        doc = json.loads(r.stdout)["interactions"][1]
        assert doc["decoded"] is False and doc["bytes"] == doc["body_bytes"] > 2 * MIB
        assert NOT_DECODED in doc["decode_problem"]


def test_show_html_with_an_event_fault_reports_it_skipped(cassette: Path, tmp_path: Path) -> None:
    page = tmp_path / "t.html"
    r = run_limited("show", str(cassette), "--html", str(page), "--fault", "corrupt:event=1,on=2")
    clean(r)
    assert r.returncode == 0
    text = page.read_text("utf-8")
    assert (
        "fault skipped: corrupt:event=1,on=2: the body is gzip-encoded and was "
        "not decoded: larger than 64 MiB" in text
    )


def test_audit_under_1_gib(cassette: Path) -> None:
    r = run_limited("audit", str(cassette))
    out = clean(r)
    assert r.returncode == 1
    assert f"interaction 2: response body (gzip) not searched: {NOT_DECODED}" in out
    assert "request header 'x-api-key'" in out  # the rest was searched
    assert "could not be searched" in out


def test_audit_fix_under_1_gib(cassette: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bomb.msgpack"
    copy.write_bytes(cassette.read_bytes())
    r = run_limited("audit", "--fix", str(copy))
    out = clean(r)
    assert r.returncode == 1 and "redacted 1 finding(s)" in out and NOT_DECODED in out
    fixed = _store.load(copy)
    assert fixed.interactions[1].request.header("x-api-key") == "REDACTED"
    original = _store.load(cassette).interactions[1].response
    assert fixed.interactions[1].response.body == original.body  # the raw bytes, kept


def test_export_under_1_gib(cassette: Path) -> None:
    r = run_limited("export", str(cassette))
    clean(r)
    assert r.returncode == 0 and len(r.stdout) > 2 * MIB  # raw bytes, base64


def test_max_decoded_moves_the_limit(cassette: Path) -> None:
    r = run_limited("show", "--diff-text", "--max-decoded", "1M", str(cassette))
    assert r.returncode == 0 and "not decoded: larger than 1 MiB when decoded" in clean(r)
    r = run_limited("audit", str(cassette), env={"SSEVCR_MAX_DECODED": "2M"})
    assert r.returncode == 1 and "not decoded: larger than 2 MiB when decoded" in clean(r)
    r = run_limited("show", "--max-decoded", "lots", str(cassette))
    assert r.returncode == 2 and "expected a size like 64M" in clean(r)


def test_a_limit_above_the_memory_is_a_clean_error(cassette: Path) -> None:
    r = run_limited("show", "--diff-text", "--max-decoded", "4G", str(cassette))
    out = clean(r)
    assert r.returncode == 1 and "out of memory" in out and "--max-decoded" in out


def test_replay_event_fault_and_recorder_summary_under_1_gib(cassette: Path) -> None:
    code = f"""
import json
from ssevcr import _store
from ssevcr._player import Player
from ssevcr._redaction import Redaction
from ssevcr.mitm.recorder import exchange_summary
c = _store.load({str(cassette)!r})
inter = c.interactions[1]
play = Player.create(c, faults=["drop:event=1,on=/v1/bomb"]).play(inter.request)
redacted = Redaction().interaction(inter)
print(json.dumps({{"skipped": list(play.schedule.skipped), "fired": list(play.schedule.fired),
    "sent": sum(len(s.data) for s in play.schedule.steps), "summary": exchange_summary(inter),
    "kept": redacted.response is inter.response, "key": redacted.request.header("x-api-key")}}))
"""
    r = run_limited(code=code)
    clean(r)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["fired"] == [] and doc["skipped"] == [
        f"drop:event=1,on=/v1/bomb: the body is gzip-encoded and was {NOT_DECODED}"
    ]
    assert doc["sent"] == len(_store.load(cassette).interactions[1].response.body)  # as recorded
    assert doc["summary"]["events"] is None and doc["summary"]["bytes"] > 2 * MIB
    assert doc["kept"] is True and doc["key"] == "REDACTED"


# ---------------------------------------------------------------------------------------------
# recording a bomb through the real mitmdump


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


def test_recording_a_bomb_keeps_mitmdump_small(
    tmp_path: Path, upstream: Upstream, bomb: bytes
) -> None:
    if not MITMDUMP:  # pragma: no cover - bootstrap creates .venv-mitmproxy
        pytest.skip("needs mitmdump (bootstrap creates .venv-mitmproxy, or set SSEVCR_MITMDUMP)")
    pieces = tuple(bomb[at : at + 262144] for at in range(0, len(bomb), 262144))
    upstream.script(
        "bomb",
        Script(
            (("content-type", "text/event-stream"), ("content-encoding", "gzip")), pieces, gap=0.001
        ),
    )
    path = tmp_path / "rec.msgpack"
    rec = RecordCLI(path, "--upstream", upstream.url, confdir=tmp_path / "conf")
    try:
        with (
            httpx.Client(timeout=60) as client,
            client.stream("GET", f"{rec.url}/v1/bomb", headers={"x-test-id": "bomb"}) as r,
        ):
            got = b"".join(r.iter_raw())  # the client reads the raw bytes (it never inflates them)
        assert got == bomb
        rec.recorded("bomb", timeout=60)
        status = Path(f"/proc/{rec.mitmdump_pid()}/status").read_text()
        peak = (
            int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
            * 1024
        )
    finally:
        if rec.proc.poll() is None:
            assert rec.stop(signal.SIGTERM) == 0, rec.stderr
    assert peak < 512 * MIB, peak  # the bomb is 2 GiB inflated; the cap is 64 MiB
    inter = _store.load(path).interactions[0]
    assert inter.response.body == bomb  # recorded as it came, still encoded
    deadline = time.monotonic() + 5
    while not any("/v1/bomb 200" in line for line in rec.stderr):  # the summary: bytes, not events
        assert time.monotonic() < deadline, rec.stderr
        time.sleep(0.05)
