"""Recording through the real ``ssevcr record`` CLI (a subprocess running the real mitmdump) with
real clients — the openai and anthropic SDKs (httpx2), plain httpx and ``curl -N`` — against the
real upstream of tests/upstream.py, over sockets on 127.0.0.1, in reverse and forward mode.

What is checked against what: the upstream logs every piece it wrote and when; the cassette must
hold exactly those bytes with the same gaps (tolerance sized for a loaded 2-core machine; the
tight figure is in bench/), and the client must have seen them spread in time.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import anthropic
import filelock
import httpx
import httpx2
import msgpack
import openai
import pytest
from upstream import Upstream, fixture_body, fixture_names, matched_gaps

from ssevcr import _store
from ssevcr._cassette import Cassette, Interaction, Outcome, Request, Response
from ssevcr._errors import ConfigError, SsevcrError
from ssevcr._expiry import recorded_at
from ssevcr._redaction import DEFAULT_HEADERS, Redaction
from ssevcr._sse import parse
from ssevcr.mitm.driver import RECORD_ADDON, locate_mitmdump
from ssevcr.mitm.protocol import LENT, READY, lent_variable, parse_line

try:
    MITMDUMP = locate_mitmdump()
except SsevcrError:  # pragma: no cover - bootstrap creates .venv-mitmproxy
    MITMDUMP = []
ROOT = Path(__file__).resolve().parent.parent
GAP_TOLERANCE = 0.010  # median |recorded gap - sent gap| in seconds; the bench target is 1 ms
SECRET_KEY = "sk-test-" + uuid.uuid4().hex  # sent by clients; must never reach a cassette
SECRET_ANT = "sk-ant-test-" + uuid.uuid4().hex


# ---------------------------------------------------------------------------------------------
# the recorder, as a user runs it


def _descendants(pid: int) -> list[int]:
    out = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                out += [int(child), *_descendants(int(child))]
    except OSError:
        pass
    return out


class RecordCLI:
    """``ssevcr record CASSETTE --listen 127.0.0.1:0 ...`` as a subprocess. One a test leaves
    running (a failed assertion) is killed, with its mitmdump and command, after the test."""

    live: ClassVar[list[RecordCLI]] = []

    def __init__(
        self,
        cassette: Path,
        *args: str,
        confdir: Path,
        timeout: float = 30.0,
        prefix: tuple[str, ...] = (),
        cwd: Path | None = None,
    ) -> None:
        self.cassette = cassette
        self.confdir = confdir
        self.argv = [
            *prefix,
            sys.executable,
            "-c",
            "from ssevcr.cli import main; main()",
            "record",
            str(cassette),
            "--listen",
            "127.0.0.1:0",
            "--confdir",
            str(confdir),
            *args,
        ]
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            cwd=cwd,
        )
        RecordCLI.live.append(self)
        self.stderr: list[str] = []
        self.stdout: list[str] = []
        self._err_thread = threading.Thread(
            target=self._drain, args=(self.proc.stderr, self.stderr), daemon=True
        )
        self._err_thread.start()
        ready: list[str] = []
        got = threading.Event()

        def first_line() -> None:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            ready.append(line)
            got.set()
            self._drain(self.proc.stdout, self.stdout)

        self._out_thread = threading.Thread(target=first_line, daemon=True)
        self._out_thread.start()
        if not got.wait(timeout) or not ready[0]:
            self.kill()
            raise AssertionError(f"recorder not ready: stderr={''.join(self.stderr)!r}")
        self.ready_line = ready[0].strip()
        m = re.search(r"http://[\w.:\[\]]+", self.ready_line)
        assert m, self.ready_line
        self.url = m.group(0)
        self.ca = str(confdir / "mitmproxy-ca-cert.pem")

    @staticmethod
    def _drain(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line)

    def mitmdump_pid(self) -> int:
        children = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            children += (task / "children").read_text().split()
        mitm = [c for c in children if b"mitmdump" in Path(f"/proc/{c}/cmdline").read_bytes()]
        if not mitm:  # started through a wrapper (unshare): look one level further down
            return RecordCLI.mitmdump_pid_below(self.proc.pid)
        assert len(mitm) == 1, children
        return int(mitm[0])

    @staticmethod
    def mitmdump_pid_below(pid: int) -> int:
        found = [
            c for c in _descendants(pid) if b"mitmdump" in Path(f"/proc/{c}/cmdline").read_bytes()
        ]
        assert len(found) == 1, found
        return found[0]

    def recorded(self, test_id: str, timeout: float = 20.0) -> Interaction:
        """Wait until the interaction of the request with ``x-test-id: test_id`` is on disk."""
        deadline = time.monotonic() + timeout
        while True:
            if self.cassette.exists():
                for inter in _store.load(self.cassette).interactions:
                    if inter.request.header("x-test-id") == test_id:
                        return inter
            if time.monotonic() > deadline:
                raise AssertionError(f"{test_id} never recorded; stderr: {''.join(self.stderr)}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        self.close()
        return rc

    def close(self) -> None:
        """After the process ended: finish reading its output and close the pipes (not one a
        reader still waits on: a leftover grandchild may hold it open)."""
        if self in RecordCLI.live:
            RecordCLI.live.remove(self)
        for thread, pipe in (
            (self._err_thread, self.proc.stderr),
            (self._out_thread, self.proc.stdout),
        ):
            thread.join(5)
            if pipe is not None and not thread.is_alive():
                pipe.close()

    def kill(self) -> None:
        """Last resort: SIGKILL the CLI, its mitmdump and its command."""
        for pid in [*_descendants(self.proc.pid), self.proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait(10)
        self.close()


@pytest.fixture(autouse=True)
def _no_recorder_outlives_its_test() -> Iterator[None]:
    before = list(RecordCLI.live)
    yield
    for rec in [r for r in RecordCLI.live if r not in before]:
        if rec.proc.poll() is None:
            rec.kill()
        else:
            rec.close()


def run_curl(args: list[str]) -> tuple[list[float], bytes]:
    """Run curl, noting when each piece of its output arrives."""
    times, got = [], []
    with subprocess.Popen(args, stdout=subprocess.PIPE, bufsize=0) as proc:
        assert proc.stdout is not None
        while piece := proc.stdout.read(65536):
            times.append(time.monotonic())
            got.append(piece)
        assert proc.wait(10) == 0
    return times, b"".join(got)


def tid() -> str:
    return uuid.uuid4().hex[:16]


def steer(test_id: str, fixture: str | None = None, **kw: str) -> dict[str, str]:
    h = {"x-test-id": test_id}
    if fixture:
        h["x-upstream-fixture"] = fixture
    h.update({f"x-upstream-{k.replace('_', '-')}": v for k, v in kw.items()})
    return h


def check_stream(
    inter: Interaction,
    ex: object,
    client_times: list[float] | None = None,
    gap_tolerance: float | None = GAP_TOLERANCE,
) -> list[float]:
    """The cassette holds exactly the bytes the upstream sent, with its gaps; the client saw
    them spread in time. Returns each |recorded gap - sent gap|."""
    resp = inter.response
    assert resp.end.outcome is Outcome.COMPLETE, resp.end
    assert resp.body == ex.sent_body  # type: ignore[attr-defined]
    assert resp.status == 200 and resp.is_event_stream
    sent = ex.sent  # type: ignore[attr-defined]
    pairs = matched_gaps(sent, resp.chunk_at, resp.chunk_sizes)
    diffs = sorted(abs(s - r) for s, r in pairs)
    if gap_tolerance is not None:  # the low median: of two gaps (a 3-event fixture) the better
        # one, so a single scheduling stall of mitmdump on a loaded machine does not decide it
        assert diffs[(len(diffs) - 1) // 2] < gap_tolerance, pairs
    span_sent = sent[-1][0] - sent[0][0]
    span_rec = sum(r for _, r in pairs)
    assert abs(span_rec - span_sent) < 0.05 + 0.2 * span_sent, (span_rec, span_sent)
    assert 0 <= resp.headers_at <= resp.chunk_at[0] <= resp.end.at
    if client_times is not None:
        assert len(client_times) >= 2
        client_span = client_times[-1] - client_times[0]
        assert client_span > 0.6 * span_sent, (
            client_span,
            span_sent,
            [round(t - sent[0][0], 4) for t in client_times],
            [round(t - sent[0][0], 4) for t, _ in sent],
            resp.chunk_at,
        )  # not one burst
    return diffs


def assert_no_secret(cassette: Path, *secrets: str) -> None:
    data = cassette.read_bytes()
    for s in secrets:
        assert s.encode() not in data
    assert b"REDACTED" in data


def listening(proc: subprocess.Popen[bytes]) -> tuple[str, int]:
    """Where a mitmdump running the recorder addon listens, from its ready line on stdout."""
    assert proc.stdout is not None
    for raw in proc.stdout:
        parsed = parse_line(raw.decode())
        if parsed and parsed[0] == READY:
            host, port = parsed[1]["listen"][0]
            return host, port
    raise AssertionError("mitmdump ended without its ready line")


@contextmanager
def streamed(url: str, headers: dict[str, str]) -> Iterator[httpx.Response]:
    """``POST url`` of ``{}`` with ``headers`` (httpx, 20 s timeout): the streamed response, open
    for the ``with`` block."""
    with (
        httpx.Client(timeout=20) as client,
        client.stream("POST", url, json={}, headers=headers) as r,
    ):
        yield r


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


PRE_EXISTING = Interaction(
    Request("GET", "http://pre.existing/marker"), Response.from_chunks(200, [(0.001, b"kept")])
)


@pytest.fixture(scope="module")
def reverse(
    upstream: Upstream, confdir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RecordCLI]:
    cassette = tmp_path_factory.mktemp("rev") / "reverse.msgpack"
    _store.save(Cassette((PRE_EXISTING,)), cassette)  # recording appends by default
    rec = RecordCLI(
        cassette,
        "--upstream",
        upstream.url,
        "--redact-header",
        "x-custom-secret",
        "--redact-query",
        "token",
        "--redact-body",
        "auth.token",
        confdir=confdir,
    )
    yield rec
    assert rec.stop(signal.SIGTERM) == 0, rec.stderr
    assert any(line.startswith("Saved ") for line in rec.stderr)


@pytest.fixture(scope="module")
def forward(confdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordCLI]:
    cassette = tmp_path_factory.mktemp("fwd") / "forward.msgpack"
    rec = RecordCLI(cassette, "--insecure-upstream", confdir=confdir)
    yield rec
    assert rec.stop(signal.SIGINT) == 0, rec.stderr


def tls_context(ca: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca)


# ---------------------------------------------------------------------------------------------
# reverse mode


def test_ready_line_and_ca_hint(reverse: RecordCLI, forward: RecordCLI) -> None:
    assert reverse.ready_line.startswith("Recording on http://127.0.0.1:")
    assert "reverse proxy" in reverse.ready_line
    assert "forward proxy" in forward.ready_line
    assert not reverse.url.endswith(":0")
    assert Path(forward.ca).exists()
    deadline = time.monotonic() + 5  # printed on stderr before the ready line; our reader may lag
    while not any(
        forward.ca in line for line in forward.stderr
    ):  # where the CA is, how to trust it
        assert time.monotonic() < deadline, forward.stderr
        time.sleep(0.02)


@pytest.mark.parametrize("fixture", fixture_names())
def test_reverse_httpx_records_each_fixture(
    reverse: RecordCLI, upstream: Upstream, fixture: str
) -> None:
    t = tid()
    split = (
        "bytes" if fixture_names().index(fixture) % 2 else "events"
    )  # both: boundaries inside and between events
    times, got = [], []
    with (
        httpx.Client(base_url=reverse.url, timeout=20) as client,
        client.stream(
            "POST",
            "/v1/stream",
            json={"model": "m", "stream": True},
            headers={**steer(t, fixture, split=split), "authorization": f"Bearer {SECRET_KEY}"},
        ) as r,
    ):
        for piece in r.iter_raw():
            times.append(time.monotonic())
            got.append(piece)
    ex = upstream.exchange(t)
    assert b"".join(got) == fixture_body(fixture) == ex.sent_body
    inter = reverse.recorded(t)
    check_stream(inter, ex, times)
    assert len(parse(inter.response.body).events) == len(parse(fixture_body(fixture)).events)
    assert inter.request.method == "POST" and inter.request.url == f"{upstream.url}/v1/stream"
    assert json.loads(inter.request.body) == {"model": "m", "stream": True}
    assert inter.request.header("authorization") == "REDACTED"
    assert ex.headers["authorization"] == f"Bearer {SECRET_KEY}"  # the upstream got the real one


def test_reverse_openai_sdk(reverse: RecordCLI, upstream: Upstream) -> None:
    t, fixture = tid(), "openai-chat/text.sse"
    client = openai.OpenAI(base_url=f"{reverse.url}/v1", api_key=SECRET_KEY, max_retries=0)
    times, text = [], []
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        extra_headers=steer(t, fixture),
    )
    for chunk in stream:
        times.append(time.monotonic())
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
    expected = "".join(
        (json.loads(e.data)["choices"] or [{}])[0].get("delta", {}).get("content") or ""
        for e in parse(fixture_body(fixture)).events
        if e.data != "[DONE]"
    )
    assert "".join(text) == expected and expected
    ex = upstream.exchange(t)
    inter = reverse.recorded(t)
    check_stream(inter, ex, times)
    assert inter.request.path == "/v1/chat/completions"
    assert_no_secret(reverse.cassette, SECRET_KEY)


def test_reverse_anthropic_sdk(reverse: RecordCLI, upstream: Upstream) -> None:
    t, fixture = tid(), "anthropic/tool_use.sse"
    # anthropic 2.x sends the key as Authorization; older clients and curl users send x-api-key
    client = anthropic.Anthropic(
        base_url=reverse.url,
        api_key=SECRET_ANT,
        max_retries=0,
        default_headers={"x-api-key": SECRET_KEY},
    )
    times, kinds = [], []
    stream = client.messages.create(
        model="claude-x",
        max_tokens=64,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        extra_headers=steer(t, fixture),
    )
    for event in stream:
        times.append(time.monotonic())
        kinds.append(event.type)
    # (this fixture's last block has no blank line after it: message_stop is never dispatched)
    assert kinds == [e.type for e in parse(fixture_body(fixture)).events if e.type != "ping"]
    ex = upstream.exchange(t)
    assert (
        ex.headers["x-api-key"] == SECRET_KEY
        and ex.headers["authorization"] == f"Bearer {SECRET_ANT}"
    )
    inter = reverse.recorded(t)
    check_stream(inter, ex, times)
    assert inter.request.header("x-api-key") == inter.request.header("authorization") == "REDACTED"
    assert_no_secret(reverse.cassette, SECRET_ANT, SECRET_KEY)


def test_reverse_curl(reverse: RecordCLI, upstream: Upstream) -> None:
    t, fixture = tid(), "gemini/text.sse"
    args = [
        "curl",
        "-sN",
        f"{reverse.url}/v1beta/models/g:streamGenerateContent?alt=sse&key={SECRET_KEY}",
    ]
    for k, v in steer(t, fixture, chunks="6").items():
        args += ["-H", f"{k}: {v}"]
    times, got = run_curl(args)
    assert got == fixture_body(fixture)
    ex = upstream.exchange(t)
    assert f"key={SECRET_KEY}" in ex.path
    inter = reverse.recorded(t)
    check_stream(inter, ex, times)
    assert inter.request.url.endswith("?alt=sse&key=REDACTED")
    assert_no_secret(reverse.cassette, SECRET_KEY)


def test_reverse_redacts_user_additions(reverse: RecordCLI, upstream: Upstream) -> None:
    t = tid()
    s1, s2, s3 = (uuid.uuid4().hex for _ in range(3))
    r = httpx.post(
        f"{reverse.url}/v1/things?token={s2}&keep=1",
        json={"model": "m", "auth": {"token": s3, "user": "u"}},
        headers={**steer(t, json="1", set_cookie="1"), "x-custom-secret": s1},
        timeout=20,
    )
    assert r.status_code == 200
    s4 = r.headers["set-cookie"].removeprefix("sid=")  # the client is served as usual
    assert len(s4) == 32
    ex = upstream.exchange(t)
    assert ex.headers["x-custom-secret"] == s1 and s2 in ex.path and s3.encode() in ex.body
    inter = reverse.recorded(t)
    req = inter.request
    assert req.header("x-custom-secret") == "REDACTED"
    assert req.url.endswith("/v1/things?token=REDACTED&keep=1")
    assert json.loads(req.body) == {"model": "m", "auth": {"token": "REDACTED", "user": "u"}}
    assert inter.response.header("set-cookie") == "REDACTED"
    assert_no_secret(reverse.cassette, s1, s2, s3, s4)


def test_reverse_json_response(reverse: RecordCLI, upstream: Upstream) -> None:
    t = tid()
    r = httpx.get(f"{reverse.url}/v1/models", headers=steer(t, json="1"), timeout=20)
    inter = reverse.recorded(t)
    ex = upstream.exchange(t)
    assert inter.response.body == r.content == ex.sent_body
    assert inter.response.content_type == "application/json"
    assert inter.response.end.outcome is Outcome.COMPLETE and len(inter.response.chunk_sizes) >= 1
    assert inter.response.header("content-length") == str(len(r.content))


def test_reverse_gzip_stream_is_byte_exact(reverse: RecordCLI, upstream: Upstream) -> None:
    t, fixture = tid(), "openai-responses/text.sse"
    with (
        streamed(f"{reverse.url}/v1/responses", steer(t, fixture, gzip="1")) as r,
    ):
        decoded = b"".join(r.iter_bytes())  # the client decodes as usual
    assert decoded == fixture_body(fixture)
    ex = upstream.exchange(t)
    inter = reverse.recorded(t)
    check_stream(inter, ex)
    assert inter.response.content_encoding == "gzip"
    assert inter.response.body == ex.sent_body != fixture_body(fixture)  # raw compressed bytes
    assert gzip.decompress(inter.response.body) == fixture_body(fixture)
    n = len(parse(fixture_body(fixture)).events)
    deadline = time.monotonic() + 5
    while not any(
        f"/v1/responses 200 {n} events" in line for line in reverse.stderr
    ):  # progress decodes gzip
        assert time.monotonic() < deadline, reverse.stderr
        time.sleep(0.05)


def test_upstream_dying_midstream_is_an_upstream_error(
    reverse: RecordCLI, upstream: Upstream
) -> None:
    t, fixture = tid(), "anthropic/text.sse"
    got = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        streamed(f"{reverse.url}/v1/messages", steer(t, fixture, chunks="8", die_after="3")) as r,
    ):
        for piece in r.iter_raw():
            got.append(piece)
    ex = upstream.exchange(t)
    assert ex.outcome == "died" and len(ex.sent) == 3
    inter = reverse.recorded(t)
    resp = inter.response
    assert resp.end.outcome is Outcome.UPSTREAM_ERROR
    assert resp.end.error  # mitmproxy's error text
    assert resp.body == ex.sent_body == b"".join(got)
    assert len(resp.body) < len(fixture_body(fixture))


def test_client_disconnecting_is_recorded(reverse: RecordCLI, upstream: Upstream) -> None:
    t, fixture = tid(), "openai-chat/text.sse"
    got = []
    with (
        streamed(
            f"{reverse.url}/v1/chat/completions", steer(t, fixture, chunks="12", gap_ms="80-80")
        ) as r,
    ):
        for piece in r.iter_raw():
            got.append(piece)
            if len(got) == 3:
                break  # leaving the block closes the connection mid-stream
    received = b"".join(got)
    inter = reverse.recorded(t)
    resp = inter.response
    assert resp.end.outcome is Outcome.CLIENT_DISCONNECTED, resp.end
    full = fixture_body(fixture)
    assert resp.body.startswith(received) and full.startswith(resp.body)
    assert len(resp.body) < len(full)
    assert len(resp.chunk_sizes) <= 4  # what the client got, at most one piece in flight more
    assert upstream.exchange(t).outcome in ("client_gone", "complete")


def test_concurrent_streams(reverse: RecordCLI, upstream: Upstream) -> None:
    ids = [tid() for _ in range(6)]
    fixtures = fixture_names()[:6]
    errors: list[BaseException] = []

    def run(test_id: str, fixture: str) -> None:
        try:
            r = httpx.post(
                f"{reverse.url}/v1/x", json={}, headers=steer(test_id, fixture), timeout=20
            )
            assert r.content == fixture_body(fixture)
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=run, args=a) for a in zip(ids, fixtures, strict=True)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    # six streams share one mitmproxy loop and this 2-core machine: judge the gaps together
    diffs = sorted(
        d
        for test_id in ids
        for d in check_stream(
            reverse.recorded(test_id), upstream.exchange(test_id), gap_tolerance=None
        )
    )
    assert diffs[len(diffs) // 2] < 1.5 * GAP_TOLERANCE, diffs


def test_appends_to_an_existing_cassette(reverse: RecordCLI, upstream: Upstream) -> None:
    t = tid()
    httpx.get(f"{reverse.url}/v1/models", headers=steer(t, json="1"), timeout=20)
    reverse.recorded(t)
    assert _store.load(reverse.cassette).interactions[0] == PRE_EXISTING


# ---------------------------------------------------------------------------------------------
# forward mode (HTTPS intercepted with the mitmproxy CA)


def test_forward_openai_sdk_https(forward: RecordCLI, upstream_tls: Upstream) -> None:
    t, fixture = tid(), "openai-chat/parallel_tool_calls.sse"
    http_client = httpx2.Client(proxy=forward.url, verify=tls_context(forward.ca), timeout=20)
    client = openai.OpenAI(
        base_url=f"{upstream_tls.url}/v1",
        api_key=SECRET_KEY,
        http_client=http_client,
        max_retries=0,
    )
    times, args = [], {}
    for chunk in client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        extra_headers=steer(t, fixture),
    ):
        times.append(time.monotonic())
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            args[call.index] = args.get(call.index, "") + (call.function.arguments or "")
    assert len(args) == 2 and all(json.loads(a) for a in args.values())
    http_client.close()
    ex = upstream_tls.exchange(t)
    inter = forward.recorded(t)
    check_stream(inter, ex, times)
    assert inter.request.url == f"{upstream_tls.url}/v1/chat/completions"
    assert_no_secret(forward.cassette, SECRET_KEY)


def test_forward_anthropic_sdk_https(forward: RecordCLI, upstream_tls: Upstream) -> None:
    t, fixture = tid(), "anthropic/text.sse"
    http_client = httpx2.Client(proxy=forward.url, verify=tls_context(forward.ca), timeout=20)
    client = anthropic.Anthropic(
        base_url=upstream_tls.url, api_key=SECRET_ANT, http_client=http_client, max_retries=0
    )
    # warm-up: the helper's first use builds its types, CPU work that on a loaded machine
    # bunches the events this client sees (seen on a loaded 2-core machine); not what is
    # measured here
    with client.messages.stream(
        model="claude-x",
        max_tokens=64,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers=steer(tid(), fixture, chunks="1", gap_ms="1-1"),
    ) as warm:
        assert warm.get_final_text()
    times = []
    with client.messages.stream(
        model="claude-x",
        max_tokens=64,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers=steer(t, fixture),
    ) as stream:
        for _ in stream:
            times.append(time.monotonic())
        text = stream.get_final_text()
    assert text
    http_client.close()
    inter = forward.recorded(t)
    check_stream(inter, upstream_tls.exchange(t), times)
    assert_no_secret(forward.cassette, SECRET_ANT)


def test_forward_httpx_https_and_http(
    forward: RecordCLI, upstream_tls: Upstream, upstream: Upstream
) -> None:
    for up in (upstream_tls, upstream):
        t, fixture = tid(), "mistral/thinking_text.sse"
        times = []
        with (
            httpx.Client(proxy=forward.url, verify=tls_context(forward.ca), timeout=20) as client,
            client.stream(
                "POST",
                f"{up.url}/v1/chat/completions",
                json={},
                headers=steer(t, fixture, split="bytes"),
            ) as r,
        ):
            for _ in r.iter_raw():
                times.append(time.monotonic())
        inter = forward.recorded(t)
        check_stream(inter, up.exchange(t), times)
        assert inter.request.url.startswith(up.url)


def test_forward_curl_https(forward: RecordCLI, upstream_tls: Upstream) -> None:
    t, fixture = tid(), "cohere/tool_call.sse"
    args = [
        "curl",
        "-sN",
        "--proxy",
        forward.url,
        "--cacert",
        forward.ca,
        f"{upstream_tls.url}/v2/chat",
        "-H",
        f"Authorization: Bearer {SECRET_KEY}",
        "--json",
        "{}",
    ]
    for k, v in steer(t, fixture).items():
        args += ["-H", f"{k}: {v}"]
    times, got = run_curl(args)
    assert got == fixture_body(fixture)
    inter = forward.recorded(t)
    check_stream(inter, upstream_tls.exchange(t), times)
    assert_no_secret(forward.cassette, SECRET_KEY)


# ---------------------------------------------------------------------------------------------
# life cycle


def test_command_mode_sets_the_proxy_env_and_returns_its_exit_code(
    tmp_path: Path, confdir: Path, upstream_tls: Upstream
) -> None:
    t, fixture = tid(), "groq/error_midstream.sse"
    cassette = tmp_path / "cmd.msgpack"
    headers = " ".join(f"-H '{k}: {v}'" for k, v in steer(t, fixture).items())
    script = (
        f"curl -sN {headers} {upstream_tls.url}/openai/v1/chat/completions "
        f"> {tmp_path / 'out'}; exit 7"
    )
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "from ssevcr.cli import main; main()",
            "record",
            str(cassette),
            "--listen",
            "127.0.0.1:0",
            "--confdir",
            str(confdir),
            "--insecure-upstream",
            "--",
            "sh",
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 7, r.stderr
    assert (tmp_path / "out").read_bytes() == fixture_body(
        fixture
    )  # curl used HTTPS_PROXY + CURL_CA_BUNDLE
    assert r.stdout.count("\n") == 1 and r.stdout.startswith("Recording on http://127.0.0.1:")
    (inter,) = _store.load(cassette).interactions
    assert inter.request.header("x-test-id") == t and inter.response.body == fixture_body(fixture)
    when = recorded_at(inter)  # the recorder dates what it records (max_age reads it)
    assert when is not None and abs(when - time.time()) < 600
    assert "/openai/v1/chat/completions 200" in r.stderr  # one progress line per exchange


def test_filters_and_overwrite(tmp_path: Path, confdir: Path, upstream: Upstream) -> None:
    cassette = tmp_path / "f.msgpack"
    _store.save(Cassette((PRE_EXISTING,)), cassette)
    rec = RecordCLI(
        cassette, "--overwrite", "--path", "/keep/*", "--host", "127.0.0.*", confdir=confdir
    )
    try:
        ids = {}
        with httpx.Client(proxy=rec.url, timeout=20) as client:
            for path in ("/skip/a", "/keep/b", "/keep/c?x=1"):
                ids[path] = tid()
                assert (
                    client.get(
                        f"{upstream.url}{path}", headers=steer(ids[path], json="1")
                    ).status_code
                    == 200
                )
        rec.recorded(ids["/keep/c?x=1"])
        urls = [i.request.url for i in _store.load(cassette).interactions]
        assert urls == [f"{upstream.url}/keep/b", f"{upstream.url}/keep/c?x=1"]  # old one replaced
    finally:
        assert rec.stop() == 0


def test_host_filter_excludes(tmp_path: Path, confdir: Path, upstream: Upstream) -> None:
    cassette = tmp_path / "h.msgpack"
    rec = RecordCLI(
        cassette, "--host", "api.example.com", "--host", f"*:{upstream.port}", confdir=confdir
    )
    try:
        t = tid()
        with httpx.Client(proxy=rec.url, timeout=20) as client:
            client.get(f"{upstream.url}/a", headers=steer(t, json="1"))
        rec.recorded(t)  # host:port pattern matched
    finally:
        rec.stop()
    rec = RecordCLI(cassette, "--host", "api.example.com", confdir=confdir)
    try:
        t2 = tid()
        with httpx.Client(proxy=rec.url, timeout=20) as client:
            assert client.get(f"{upstream.url}/b", headers=steer(t2, json="1")).status_code == 200
        upstream.exchange(t2)
    finally:
        assert rec.stop() == 0  # SIGTERM drains the writer: anything recorded would be on disk now
    assert [i.request.header("x-test-id") for i in _store.load(cassette).interactions] == [t]


HOOKS = """
def request(req):
    if req.path == "/boom":
        raise RuntimeError("boom")
    if req.path == "/skip":
        return None
    req.set_header("x-team", "voice")
    req.set_header("x-drop-me", None)
    req.set_header("authorization", req.header("authorization"))  # (still redacted after)
    return req


def response(resp):
    resp.set_header("x-request-id", "fixed")
    return resp
"""


def test_hooks_edit_or_drop_what_is_recorded(
    tmp_path: Path, confdir: Path, upstream: Upstream
) -> None:
    (tmp_path / "rec_hooks.py").write_text(HOOKS)  # importable from the current folder
    cassette = tmp_path / "hooked.msgpack"
    rec = RecordCLI(
        cassette,
        "--upstream",
        upstream.url,
        "--hook-request",
        "rec_hooks:request",
        "--hook-response",
        "rec_hooks:response",
        confdir=confdir,
        cwd=tmp_path,
    )
    key = "sk-live-" + uuid.uuid4().hex
    try:
        ids = {}
        for path in ("/skip", "/boom", "/keep"):
            ids[path] = tid()
            headers = {**steer(ids[path], json="1"), "authorization": f"Bearer {key}"}
            headers["x-drop-me"] = "1"
            r = httpx.get(f"{rec.url}{path}", headers=headers, timeout=20)
            assert r.status_code == 200  # the client is served as usual
        kept = rec.recorded(ids["/keep"])
    finally:
        code = rec.stop()
    err = "".join(rec.stderr)
    assert code == 1, err  # the exchange the failing hook cost is a loss
    assert [i.request.path for i in _store.load(cassette).interactions] == ["/keep"]
    assert kept.request.header("x-team") == "voice" and kept.request.header("x-drop-me") is None
    assert kept.request.header("authorization") == "REDACTED"  # redaction ran after the hook
    assert kept.response.header("x-request-id") == "fixed"
    assert_no_secret(cassette, key)
    assert "/skip 200" in err and "dropped by a recording hook" in err, err
    assert "before_record_request" in err and "boom" in err, err
    assert "Saved 1 exchange" in err and "1 dropped by a recording hook" in err, err


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("rec_hooks", "expected MODULE:FUNC"),
        ("no_such_module_ssevcr:request", "cannot import 'no_such_module_ssevcr'"),
        ("rec_hooks:missing", "'rec_hooks' has no callable 'missing'"),
        ("rec_broken:request", "cannot import 'rec_broken' (ZeroDivisionError"),
    ],
)
def test_a_bad_hook_is_refused_before_the_proxy_starts(
    tmp_path: Path, spec: str, problem: str
) -> None:
    (tmp_path / "rec_hooks.py").write_text(HOOKS)
    (tmp_path / "rec_broken.py").write_text("1 / 0\n")
    cassette = tmp_path / "never.msgpack"
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "ssevcr"),
            "record",
            str(cassette),
            "--hook-request",
            spec,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert f"--hook-request {spec!r}: {problem}" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and "Proxy" not in run.stderr + run.stdout
    assert not cassette.exists()


def test_sigkill_keeps_every_completed_exchange(
    tmp_path: Path, confdir: Path, upstream: Upstream
) -> None:
    cassette = tmp_path / "k.msgpack"
    rec = RecordCLI(cassette, "--upstream", upstream.url, confdir=confdir)
    done = []
    for fixture in fixture_names()[:3]:
        t = tid()
        httpx.post(f"{rec.url}/v1/x", json={}, headers=steer(t, fixture, gap_ms="5-10"), timeout=20)
        done.append(t)
    for t in done:
        rec.recorded(t)
    # one more stream in flight, then SIGKILL the process that writes the cassette
    t = tid()
    with (
        streamed(
            f"{rec.url}/v1/x", steer(t, "openai-chat/text.sse", chunks="20", gap_ms="100-100")
        ) as r,
    ):
        it = r.iter_raw()
        next(it)
        os.kill(rec.mitmdump_pid(), signal.SIGKILL)
        with pytest.raises(httpx.HTTPError):
            for _ in it:
                pass
    assert rec.proc.wait(20) == 1
    rec.close()
    assert any("mitmdump stopped unexpectedly" in line for line in rec.stderr), rec.stderr
    loaded = _store.load(cassette)
    assert [i.request.header("x-test-id") for i in loaded.interactions] == done
    for inter, fixture in zip(loaded.interactions, fixture_names()[:3], strict=True):
        assert inter.response.body == fixture_body(fixture)


def test_sigkill_of_the_cli_does_not_orphan_mitmdump(
    tmp_path: Path, confdir: Path, upstream: Upstream
) -> None:
    rec = RecordCLI(tmp_path / "o.msgpack", "--upstream", upstream.url, confdir=confdir)
    child = rec.mitmdump_pid()
    rec.proc.kill()
    rec.proc.wait(10)
    rec.close()
    deadline = time.monotonic() + 15
    while (
        Path(f"/proc/{child}").exists()
        and Path(f"/proc/{child}/stat").read_text().split()[2] != "Z"
    ):
        assert time.monotonic() < deadline, "mitmdump outlived its launcher"
        time.sleep(0.05)


def test_port_already_taken_is_one_clear_line(tmp_path: Path, confdir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(
            [
                sys.executable,
                "-c",
                "from ssevcr.cli import main; main()",
                "record",
                str(tmp_path / "p.msgpack"),
                "--listen",
                f"127.0.0.1:{port}",
                "--confdir",
                str(confdir),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"Error: cannot listen on 127.0.0.1:{port}: address already in use "
        "(choose another with --listen HOST:PORT; port 0 picks a free one)"
    ]
    assert not (tmp_path / "p.msgpack").exists()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com", "expected http:// or https://"),
        ("https://api.openai.com/v1", "give only scheme"),
        ("http://", "no host"),
        ("http://host:99999", "out of range"),
    ],
)
def test_bad_upstream_is_one_clear_line(tmp_path: Path, url: str, problem: str) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "from ssevcr.cli import main; main()",
            "record",
            str(tmp_path / "b.msgpack"),
            "--upstream",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"Error: bad upstream URL {url!r}") and problem in line


def test_damaged_cassette_is_refused_before_recording(tmp_path: Path) -> None:
    cassette = tmp_path / "bad.msgpack"
    cassette.write_bytes(b"\x00not a cassette")
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "from ssevcr.cli import main; main()",
            "record",
            str(cassette),
            "--listen",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("Error: cassette ") and str(cassette) in line


def _missing_in_mitmdump() -> list[str]:
    """Which of the packages ssevcr lends (msgpack: mitmproxy <= 12.2 brought it, 12.3 does not;
    filelock: never brought) the mitmdump under test lacks in its own environment."""
    first = Path(MITMDUMP[0]).read_bytes()[:200].split(b"\n", 1)[0] if MITMDUMP else b""
    python = first[2:].decode().strip() if first.startswith(b"#!") else MITMDUMP[0]
    return [
        name
        for name in LENT
        if subprocess.run([python, "-c", f"import {name}"], capture_output=True).returncode
    ]


def recorder_mitmdump(
    cassette: Path, confdir: Path, mode: str, *options: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A plain mitmdump running the recorder addon (not ``ssevcr record``) in ``mode``, on a free
    port of 127.0.0.1, recording into ``cassette`` (its folder the working directory); stdout and
    stderr together on ``stdout``."""
    return subprocess.Popen(
        [
            *MITMDUMP,
            "-s",
            str(RECORD_ADDON),
            "--mode",
            mode,
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            "0",
            "--set",
            f"confdir={confdir}",
            "--set",
            f"ssevcr_cassette={cassette}",
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cassette.parent,
    )


def _plain_mitmdump(
    cassette: Path, confdir: Path, upstream: Upstream, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    return recorder_mitmdump(cassette, confdir, f"reverse:{upstream.url}", env=env)


def test_addon_loads_into_a_plain_mitmdump(
    tmp_path: Path, confdir: Path, upstream: Upstream
) -> None:
    """``mitmdump -s ssevcr/mitm/scripts/record.py`` with nothing on PYTHONPATH: the addon finds
    its package. A mitmproxy environment without msgpack (12.3 on) gets one clear line saying
    what to install; one with it records."""
    cassette = tmp_path / "s.msgpack"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTEST_CURRENT_TEST") and not k.startswith("SSEVCR_LEND_")
    }
    missing = _missing_in_mitmdump()
    if "msgpack" in missing:
        out = _plain_mitmdump(cassette, confdir, upstream, env).communicate(timeout=60)[0]
        assert b"needs msgpack in mitmdump's Python environment" in out, out
        assert b"pip install msgpack there" in out
    for package in (msgpack, filelock):  # what ssevcr record lends
        if package.__name__ in missing:
            env[lent_variable(package.__name__)] = str(Path(package.__file__).parent)
    proc = _plain_mitmdump(cassette, confdir, upstream, env)
    try:
        host, port = listening(proc)
        t = tid()
        r = httpx.post(
            f"http://{host}:{port}/v1/x",
            json={},
            headers=steer(t, "gemini/tool_call.sse"),
            timeout=20,
        )
        assert r.content == fixture_body("gemini/tool_call.sse")
        upstream.exchange(t)
        deadline = time.monotonic() + 10
        while not cassette.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)  # drains and closes its output
    (inter,) = _store.load(cassette).interactions
    assert inter.response.body == fixture_body("gemini/tool_call.sse")


def test_launcher_imports_stay_light() -> None:
    code = (
        "import sys, ssevcr.mitm.driver, ssevcr.mitm.recorder, ssevcr.mitm.replay_proxy, "
        "ssevcr.mitm.protocol, ssevcr._redaction; "
        "bad = [m for m in ('mitmproxy', 'httpx', 'httpx2', 'click') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_addons_import_only_the_core_and_the_protocol() -> None:
    """What mitmdump's interpreter loads: the addon modules, the protocol module they share with
    the launcher, and the core; never the replay server, the CLI or an HTTP client."""
    code = (
        "import json, sys, ssevcr.mitm.recorder, ssevcr.mitm.replay_proxy; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = json.loads(out.stdout)
    assert not {"mitmproxy", "httpx", "httpx2", "click", "h11", "asyncio"} & set(modules)
    mitm = {m for m in modules if m.startswith("ssevcr.mitm")}
    assert mitm == {
        "ssevcr.mitm",
        "ssevcr.mitm.announce",
        "ssevcr.mitm.protocol",
        "ssevcr.mitm.recorder",
        "ssevcr.mitm.replay_proxy",
    }
    assert not [
        m for m in modules if m.startswith(("ssevcr.cli", "ssevcr._server", "ssevcr._player"))
    ]


def test_only_the_import_shim_touches_sys_path() -> None:
    """One place makes ssevcr importable inside mitmdump (scripts/_ssevcr_import.py)."""
    touching = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "ssevcr").rglob("*.py")
        if "sys.path" in p.read_text().replace("``sys.path``", "")
    )
    assert touching == ["ssevcr/mitm/scripts/_ssevcr_import.py"]


# ---------------------------------------------------------------------------------------------
# redaction (pure)


def test_redaction_defaults_cover_the_design_list() -> None:
    design = {
        "authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "openai-organization",
        "openai-project",
        "cookie",
        "set-cookie",
    }
    assert design <= DEFAULT_HEADERS
    headers = (
        ("Authorization", "Bearer s"),
        ("content-type", "application/json"),
        ("X-Api-Key", "s"),
        ("cookie", "a=1"),
        ("Cookie", "b=2"),
    )
    assert Redaction().redact_headers(headers) == (
        ("Authorization", "REDACTED"),
        ("content-type", "application/json"),
        ("X-Api-Key", "REDACTED"),
        ("cookie", "REDACTED"),
        ("Cookie", "REDACTED"),
    )
    clean = (("content-type", "text/event-stream"),)
    assert Redaction().redact_headers(clean) is clean


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://g.example/v1/m:stream?alt=sse&key=AIza123",
            "https://g.example/v1/m:stream?alt=sse&key=REDACTED",
        ),
        (
            "https://g.example/p?KEY=a&%6Bey=b&keys=c#frag",
            "https://g.example/p?KEY=REDACTED&%6Bey=REDACTED&keys=c#frag",
        ),
        ("https://g.example/p?key", "https://g.example/p?key=REDACTED"),
        ("https://g.example/p?x=1&y=%20", "https://g.example/p?x=1&y=%20"),
        ("https://g.example/p", "https://g.example/p"),
    ],
)
def test_redaction_of_query_keys_keeps_the_rest_of_the_url(url: str, expected: str) -> None:
    assert Redaction().redact_url(url) == expected


def test_redaction_of_body_paths() -> None:
    r = Redaction().extended(body_paths=["api_key", "auth.token", "messages.secret"])
    body = (
        b'{"api_key": "s1", "auth": {"token": "s2", "kind": "x"}, '
        b'"messages": [{"secret": "s3"}, {"a": 1}]}'
    )
    assert json.loads(r.redact_body(body)) == {
        "api_key": "REDACTED",
        "auth": {"token": "REDACTED", "kind": "x"},
        "messages": [{"secret": "REDACTED"}, {"a": 1}],
    }
    untouched = b'{ "model" : "gpt-4o",  "auth": {"kind": 1} }'
    assert r.redact_body(untouched) is untouched  # no match: the exact bytes are kept
    assert r.redact_body(b"api_key=s1") == b"api_key=s1"  # not JSON
    assert r.redact_body(b"{broken") == b"{broken"
    with pytest.raises(ConfigError):
        Redaction().extended(body_paths=["auth..token"])


def test_redaction_of_a_whole_interaction() -> None:
    r = Redaction().extended(headers=["X-Custom"], query_keys=["sig"])
    inter = Interaction(
        Request(
            "POST",
            "https://h/p?sig=1&a=2",
            (("x-custom", "s"), ("authorization", "Bearer s")),
            b"{}",
        ),
        Response.from_chunks(
            200, [(0.1, b"data: x\n\n")], headers=(("set-cookie", "sid=s"), ("x-custom", "s"))
        ),
    )
    out = r.interaction(inter)
    assert out.request.url == "https://h/p?sig=REDACTED&a=2"
    assert out.request.headers == (("x-custom", "REDACTED"), ("authorization", "REDACTED"))
    assert out.response.headers == (("set-cookie", "REDACTED"), ("x-custom", "REDACTED"))
    assert (
        out.response.body == inter.response.body
        and out.response.chunk_at == inter.response.chunk_at
    )


def test_missing_mitmdump_says_how_to_install_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SSEVCR_MITMDUMP"}
    env["PATH"] = str(tmp_path)  # no mitmdump there
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            # and no importable mitmproxy (one Python >= 3.12 environment may have it)
            "import sys; sys.modules['mitmproxy'] = None; from ssevcr.cli import main; main()",
            "record",
            str(tmp_path / "m.msgpack"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 1
    (line,) = r.stderr.strip().splitlines()
    assert (
        line.startswith("Error: mitmdump not found")
        and "ssevcr[record]" in line
        and "SSEVCR_MITMDUMP" in line
    )


def test_reverse_https_upstream_is_verified_unless_told_otherwise(
    tmp_path: Path, confdir: Path, upstream_tls: Upstream
) -> None:
    cassette = tmp_path / "tls.msgpack"
    rec = RecordCLI(cassette, "--upstream", upstream_tls.url, confdir=confdir)
    try:
        r = httpx.get(f"{rec.url}/v1/models", headers=steer(tid(), json="1"), timeout=20)
        assert r.status_code == 502  # self-signed upstream refused: verification is on by default
    finally:
        code = rec.stop()
    assert code == 1, rec.stderr  # it saw an exchange and saved nothing: not a success
    assert not cassette.exists()
    text = "".join(rec.stderr)
    assert "/v1/models ---" in text and "NOT SAVED (no response: " in text, text
    # says what happened and what to do
    assert "certificate verify failed" in text.lower() and "--insecure-upstream" in text, text
    assert "Saved 0 exchanges" in text and "1 exchange NOT saved" in text, text
    rec = RecordCLI(
        cassette, "--upstream", upstream_tls.url, "--insecure-upstream", confdir=confdir
    )
    try:
        t, fixture = tid(), "openai-responses/function_call.sse"
        args = ["curl", "-sN", f"{rec.url}/v1/responses", "--json", "{}"]
        for k, v in steer(t, fixture).items():
            args += ["-H", f"{k}: {v}"]
        times, got = run_curl(args)
        assert got == fixture_body(fixture)
        inter = rec.recorded(t)
        check_stream(inter, upstream_tls.exchange(t), times)
        assert inter.request.url == f"{upstream_tls.url}/v1/responses"
    finally:
        assert rec.stop() == 0


def test_sigterm_reaches_the_command_and_its_exit_code_is_returned(
    tmp_path: Path, confdir: Path
) -> None:
    trapped = tmp_path / "trapped"
    rec = RecordCLI(
        tmp_path / "t.msgpack",
        "--",
        "sh",
        "-c",
        f'trap "exit 5" TERM; : > {trapped}; while :; do sleep 0.05; done',
        confdir=confdir,
    )
    child = rec.mitmdump_pid()
    deadline = time.monotonic() + 10  # a SIGTERM before the trap is set would end sh with 143
    while not trapped.exists():
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.01)
    assert rec.stop(signal.SIGTERM) == 5
    assert (
        not Path(f"/proc/{child}").exists()
        or Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"
    )


# ---------------------------------------------------------------------------------------------
# how a stream ends, and streams that never do


def test_an_sdk_that_leaves_at_done_recorded_a_complete_stream(
    reverse: RecordCLI, upstream: Upstream
) -> None:
    """The openai SDK breaks out of its loop at ``data: [DONE]`` and closes the response without
    reading the body's terminating chunk (held back here): every event arrived, so the
    recording is ``complete``, not ``client_disconnected``."""
    t, fixture = tid(), "openai-chat/text.sse"
    client = openai.OpenAI(base_url=f"{reverse.url}/v1", api_key=SECRET_KEY, max_retries=0)
    started = time.monotonic()
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            extra_headers=steer(t, fixture, end_delay_ms="3000", gap_ms="1-2"),
        )
    )
    assert chunks and time.monotonic() - started < 2.5  # it did not wait for the end
    inter = reverse.recorded(t)
    resp = inter.response
    assert resp.body == fixture_body(fixture)
    assert resp.end.outcome is Outcome.COMPLETE and resp.end.error is None, resp.end


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_never_ending_stream_saves_what_arrived(
    tmp_path: Path, confdir: Path, upstream: Upstream, sig: int
) -> None:
    cassette = tmp_path / "forever.msgpack"
    rec = RecordCLI(cassette, "--upstream", upstream.url, confdir=confdir)
    t, got = tid(), []
    with (
        # Gemini's stream has no terminal event: wherever the recording stops, the body
        # cannot look finished (an OpenAI body repeated forever ends each repeat with
        # [DONE], and a stop on a repeat's boundary is rightly recorded complete)
        streamed(
            f"{rec.url}/v1/chat/completions", steer(t, "gemini/text.sse", forever="1", gap_ms="1-1")
        ) as r,
    ):
        pieces = r.iter_raw()
        for piece in pieces:
            got.append(piece)
            if sum(map(len, got)) > 200_000:
                break
        assert rec.stop(sig) == 0, rec.stderr  # while the stream is still running
    (inter,) = _store.load(cassette).interactions
    resp = inter.response
    assert resp.end.outcome is Outcome.CLIENT_DISCONNECTED
    assert resp.end.error == "recording stopped while the stream was open"
    received = b"".join(got)
    sent = upstream.exchange(t).sent_body
    # everything the client read is there, and nothing the upstream did not send
    assert len(resp.body) >= len(received) and resp.body[: len(received)] == received
    assert sent.startswith(resp.body)
    assert any("Saved 1 exchange" in line for line in rec.stderr), rec.stderr


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_max_body_bounds_the_memory_of_a_never_ending_stream(
    tmp_path: Path, confdir: Path, upstream: Upstream
) -> None:
    cassette = tmp_path / "bounded.msgpack"
    rec = RecordCLI(cassette, "--upstream", upstream.url, "--max-body", "1MiB", confdir=confdir)
    mitm = rec.mitmdump_pid()
    t, read = tid(), 0
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST",
            f"{rec.url}/v1/chat/completions",
            json={},
            headers=steer(t, "openai-chat/text.sse", forever="1", gap_ms="0-0"),
        ) as r,
    ):
        before = None
        for piece in r.iter_raw(1 << 16):
            read += len(piece)
            if before is None and read > 4 << 20:
                before = _rss_kib(mitm)  # past the limit: nothing more is kept from here on
            if read > 64 << 20:
                break
        after = _rss_kib(mitm)
    assert before is not None and after - before < 24 << 10, (before, after)  # KiB
    assert rec.stop() == 0, rec.stderr
    (inter,) = _store.load(cassette).interactions
    resp = inter.response
    assert len(resp.body) == 1 << 20
    assert resp.end.outcome is Outcome.UPSTREAM_ERROR
    assert "larger than the recording limit of 1 MiB" in (resp.end.error or ""), resp.end
    assert fixture_body("openai-chat/text.sse").startswith(resp.body[:100])


# ---------------------------------------------------------------------------------------------
# recording that saves nothing is not a success


def _own_mounts() -> bool:
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


def _mounted(folder: Path, options: str) -> tuple[str, ...]:
    """A prefix that runs the command in a mount namespace of its own where ``folder`` is a
    fresh tmpfs mounted with ``options`` (nothing outside the namespace sees it)."""
    if not _own_mounts():
        pytest.skip("needs unshare -m (a mount namespace) to make a full or read-only folder")
    folder.mkdir(parents=True, exist_ok=True)
    script = f'mount -t tmpfs -o {options} ssevcr-test "{folder}" && exec "$@"'
    return ("unshare", "-m", "sh", "-c", script, "sh")


def test_overwrite_replaces_a_damaged_cassette(
    tmp_path: Path, confdir: Path, upstream: Upstream
) -> None:
    cassette = tmp_path / "damaged.msgpack"
    cassette.write_bytes(b"\x00not a cassette")
    rec = RecordCLI(cassette, "--upstream", upstream.url, "--overwrite", confdir=confdir)
    t = tid()
    assert httpx.get(f"{rec.url}/v1/models", headers=steer(t, json="1"), timeout=20).is_success
    deadline = time.monotonic() + 20
    while not any("/v1/models 200" in line for line in rec.stderr):
        assert time.monotonic() < deadline, rec.stderr
        time.sleep(0.05)
    assert rec.stop() == 0, rec.stderr
    # the damaged file was replaced by a cassette that loads
    (inter,) = _store.load(cassette).interactions
    assert inter.request.header("x-test-id") == t and inter.response.status == 200
    assert "NOT SAVED" not in "".join(rec.stderr)


def test_a_read_only_folder_is_refused_before_recording(tmp_path: Path, confdir: Path) -> None:
    folder = tmp_path / "ro"
    prefix = _mounted(folder, "ro")
    r = subprocess.run(
        [
            *prefix,
            sys.executable,
            "-c",
            "from ssevcr.cli import main; main()",
            "record",
            str(folder / "c.msgpack"),
            "--listen",
            "127.0.0.1:0",
            "--confdir",
            str(confdir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"Error: cannot record into '{folder / 'c.msgpack'}'") and (
        "not writable" in line
    ), line


def test_a_full_disk_loses_exchanges_and_says_so_with_a_failing_exit_code(
    tmp_path: Path, confdir: Path, upstream: Upstream
) -> None:
    folder = tmp_path / "full"
    prefix = _mounted(folder, "size=8k")
    cassette = folder / "c.msgpack"
    rec = RecordCLI(cassette, "--upstream", upstream.url, confdir=confdir, prefix=prefix)
    small, big = tid(), tid()
    httpx.get(f"{rec.url}/v1/models", headers=steer(small, json="1"), timeout=20)
    r = httpx.post(
        f"{rec.url}/v1/chat/completions",
        json={},
        headers=steer(big, "openai-chat/text.sse", gap_ms="1-1"),
        timeout=20,
    )
    assert r.status_code == 200 and len(r.content) > 8 << 10  # the client got its stream
    deadline = time.monotonic() + 20
    while not any("NOT SAVED" in line for line in rec.stderr):
        assert time.monotonic() < deadline, rec.stderr
        time.sleep(0.05)
    code = rec.stop()
    text = "".join(rec.stderr)
    assert code == 1, text
    assert "NOT SAVED (cassette " in text and "No space left on device" in text, text
    assert "Saved 1 exchange to" in text and "1 exchange NOT saved:" in text, text
    assert "1 x cassette" in text


def test_listening_beyond_loopback_is_a_warning_and_the_ready_line_says_where(
    tmp_path: Path, confdir: Path
) -> None:
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare -n (a network namespace)")
    # in a network namespace of its own (loopback only): nothing can reach it from elsewhere
    r = subprocess.run(
        [
            "unshare",
            "-n",
            "sh",
            "-c",
            'ip link set lo up && exec "$@"',
            "sh",
            sys.executable,
            "-c",
            "from ssevcr.cli import main; main()",
            "record",
            str(tmp_path / "c.msgpack"),
            "--listen",
            "0.0.0.0:0",
            "--confdir",
            str(confdir),
            "--",
            "sh",
            "-c",
            'echo "$HTTPS_PROXY"',
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    ready, proxy = r.stdout.splitlines()
    assert re.fullmatch(r"Recording on http://0\.0\.0\.0:\d+ \(forward proxy\) into .*", ready)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", proxy)  # the command gets a local URL
    assert "Warning: the recording proxy listens on every network interface" in r.stderr


def test_a_first_chunk_that_came_with_the_head_is_stamped_when_it_arrived(
    reverse: RecordCLI, upstream: Upstream
) -> None:
    """The head and the first chunk in one write: mitmproxy holds the chunk while its hooks run
    on the head, so stamping it when it is let through made it look late (issue 20: +2.6 ms).
    It arrived with the head, and is recorded so."""
    errors = []
    for _ in range(3):
        t, fixture = tid(), "anthropic/text.sse"
        httpx.post(
            f"{reverse.url}/v1/messages",
            json={},
            headers=steer(t, fixture, head_with_first="1", gap_ms="30-30"),
            timeout=20,
        )
        resp = reverse.recorded(t).response
        assert resp.chunk_at[0] == resp.headers_at, (resp.headers_at, list(resp.chunk_at[:2]))
        sent = upstream.exchange(t).sent
        assert sent[0][0] - upstream.exchange(t).headers_sent_at < 0.001  # one write
        errors.append(abs((resp.chunk_at[1] - resp.chunk_at[0]) - (sent[1][0] - sent[0][0])))
    # and the next chunk keeps its distance to it, as sent (loaded-machine tolerance; the tight
    # figure is bench/bench_record.py --first-byte)
    assert sorted(errors)[1] < GAP_TOLERANCE, errors


def test_recording_a_reconnecting_client_links_its_connections_and_replays_them(
    tmp_path: Path, confdir: Path
) -> None:
    """An SSE client cut by its upstream after event 3 reconnects with Last-Event-ID through the
    real mitmdump: both connections are recorded, the second linked to the first; replayed with
    the upstream stopped, the same client reads the same events over the same two connections."""
    from stream_helpers import CliReplay, read_reconnecting

    from ssevcr._cassette import Resumes

    cassette = tmp_path / "reconnect.msgpack"
    headers = {"x-upstream-events": "8", "x-upstream-cut-after": "3"}
    with Upstream() as up:
        rec = RecordCLI(cassette, "--upstream", up.url, confdir=confdir)
        live, sent = read_reconnecting(f"{rec.url}/events", headers)
        assert sent == [None, "3"] and [i for i, _ in live] == [str(i) for i in range(1, 9)]
        # (the client can read the last event before the upstream's handler marks its exchange)
        assert all(ex.done.wait(10) for ex in up.exchanges)
        assert [ex.outcome for ex in up.exchanges] == ["died", "complete"]
        assert rec.stop(signal.SIGTERM) == 0, rec.stderr
    first, second = _store.load(cassette).interactions
    assert first.resumes is None and first.response.end.outcome is Outcome.UPSTREAM_ERROR
    assert second.resumes == Resumes(0, "3")
    assert second.request.header("last-event-id") == "3"
    shown = subprocess.run(
        [sys.executable, "-c", "from ssevcr.cli import main; main()", "show", str(cassette)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "#2 resumes #1 after event id 3" in shown.stdout, shown.stdout + shown.stderr
    replay = CliReplay(str(cassette), "--timing", "instant")
    try:
        replayed, sent_again = read_reconnecting(f"{replay.url}/events", headers)
    finally:
        code, summary = replay.stop()
    assert replayed == live and sent_again == [None, "3"], summary
    assert code == 0 and "2 plays, 0 misses" in summary, summary
