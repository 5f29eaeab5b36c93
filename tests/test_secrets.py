"""Secrets never reach disk or output.

Secrets are planted in every place the default redaction covers — URL userinfo, every listed query
key (in mixed case), every listed header and the ``-api-key``/``-token``/``-secret`` suffixes,
JSON keys at any depth in request bodies, form fields, response headers, a JSON response body, the
JSON of SSE ``data:`` lines (split across chunks, multi-line) and the same stream gzip-encoded —
and recorded through each recording path: ``ssevcr record`` in reverse and in forward mode (the
real mitmdump, HTTP and HTTPS) and ``use_cassette(record=...)`` in process, against the real
upstream of tests/upstream.py. Then the cassette's raw bytes (and its decoded bodies) are grepped
for every planted secret, the response bytes are checked to be the sent bytes with only the
secrets replaced, and the cassette must replay the live requests and pass ``ssevcr audit``.

``audit`` must find each credential of a cassette recorded without redaction (places, provider
key shapes by prefix and length, SigV4, Basic credentials), ``audit --fix`` must leave none and
keep a cassette that loads and replays. Miss explanations, ``show`` in every mode and log lines
never print a planted secret.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import ssl
import subprocess
import sys
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import httpx2
import pytest
from click.testing import CliRunner
from test_record import RecordCLI, listening, recorder_mitmdump
from upstream import Script, Upstream

import ssevcr
from ssevcr import NoMatchError, _store
from ssevcr._audit import audit, scan
from ssevcr._cassette import Cassette, End, Interaction, Request, Response
from ssevcr._matching import MatchOptions, explain_miss
from ssevcr._player import Player
from ssevcr._redaction import Redaction
from ssevcr._secrets import find, is_secret_header, is_secret_json_key, mask_text, safe
from ssevcr._sse import parse
from ssevcr.cli import main

QUERY_KEYS = (
    "key",
    "API_KEY",
    "api-key",
    "access_token",
    "Token",
    "sig",
    "signature",
    "X-Amz-Signature",
    "x-amz-credential",
    "X-AMZ-SECURITY-TOKEN",
)
REQUEST_HEADERS = (
    "authorization",
    "x-api-key",
    "x-amz-security-token",
    "ocp-apim-subscription-key",
    "anthropic-api-key",
    "x-auth-token",
    "x-portkey-api-key",
    "x-custom-api-key",  # the suffixes
    "x-session-token",
    "x-client-secret",
)
RESPONSE_HEADERS = ("set-cookie", "x-amz-security-token", "x-refresh-token")


def planted(name: str) -> str:
    """A fresh secret, letters and digits only (fits a URL, a header, JSON and a form)."""
    return f"Pl{name.replace('-', '').replace('_', '')}{uuid.uuid4().hex}"


@dataclass
class Plant:
    """One set of planted secrets: the requests to send and the responses the upstream gives."""

    test_id: str
    secrets: dict[str, str]

    @classmethod
    def make(cls) -> Plant:
        names = [f"q{k}" for k in QUERY_KEYS] + [f"h{h}" for h in REQUEST_HEADERS]
        names += [f"r{h}" for h in RESPONSE_HEADERS] + ["userinfo"]
        names += ["api_key", "client_secret", "access_token", "refreshToken", "password"]
        names += ["form_password", "form_secret", "form_refresh", "resp_access", "resp_refresh"]
        names += ["sse_password", "sse_access", "sse_nested", "gz_secret"]
        return cls(uuid.uuid4().hex[:16], {n: planted(n) for n in names})

    def __getitem__(self, name: str) -> str:
        return self.secrets[name]

    def redacted(self, body: bytes) -> bytes:
        """``body`` with each planted secret replaced as redaction does."""
        for s in self.secrets.values():
            body = body.replace(s.encode(), b"REDACTED")
        return body

    def query(self) -> str:
        return "&".join(f"{k}={self['q' + k]}" for k in QUERY_KEYS) + "&keep=1"

    def headers(self, test_id: str) -> dict[str, str]:
        h = {name: self["h" + name] for name in REQUEST_HEADERS}
        h["authorization"] = f"Bearer {h['authorization']}"
        return {**h, "x-test-id": test_id}

    def json_body(self) -> dict[str, object]:
        return {
            "model": "m",
            "api_key": self["api_key"],
            "options": {
                "client_secret": self["client_secret"],
                "steps": [
                    {"access_token": self["access_token"], "refreshToken": self["refreshToken"]}
                ],
            },
            "password": self["password"],
            "max_tokens": 5,
        }

    def form_body(self) -> bytes:
        return (
            f"grant_type=password&username=u&password={self['form_password']}"
            f"&client_secret={self['form_secret']}&refresh_token={self['form_refresh']}"
        ).encode()

    def sse_body(self) -> bytes:
        return (
            b'data: {"delta":"hi","password":"' + self["sse_password"].encode() + b'"}\n\n'
            b'event: auth\r\ndata: {"note": 1,\r\n'
            b'data:  "access_token": "' + self["sse_access"].encode() + b'"}\r\n\r\n'
            b": keep-alive\n\n"
            b'data: {"client_secret": {"value": "' + self["sse_nested"].encode() + b'"}}\n\n'
            b"data: [DONE]\n\n"
        )

    def gzip_body(self) -> bytes:
        return (
            b'data: {"api_key": "' + self["gz_secret"].encode() + b'", "n": 1}\n\ndata: [DONE]\n\n'
        )

    def json_response(self) -> bytes:
        return json.dumps(
            {
                "access_token": self["resp_access"],
                "token_type": "bearer",
                "nested": {"refresh_token": self["resp_refresh"]},
            }
        ).encode()

    def response_headers(self, content_type: str) -> tuple[tuple[str, str], ...]:
        return (
            ("content-type", content_type),
            ("set-cookie", f"sid={self['rset-cookie']}; HttpOnly"),
            ("x-amz-security-token", self["rx-amz-security-token"]),
            ("x-refresh-token", self["rx-refresh-token"]),
        )

    def script(self, up: Upstream) -> dict[str, str]:
        """Register the three answers; the test ids of the SSE, the form and the gzip request."""
        ids = {k: f"{self.test_id}-{k}" for k in ("sse", "form", "gzip")}
        sse = self.sse_body()
        cut = sse.index(self["sse_password"].encode()) + 9  # a chunk boundary inside a secret
        cut2 = sse.index(b"access_token") + 3
        up.script(
            ids["sse"],
            Script(
                self.response_headers("text/event-stream"), (sse[:cut], sse[cut:cut2], sse[cut2:])
            ),
        )
        body = self.json_response()
        up.script(ids["form"], Script(self.response_headers("application/json"), (body,)))
        gz = self.gzip_body()
        up.script(
            ids["gzip"],
            Script(self.response_headers("text/event-stream"), (gz[:30], gz[30:]), gzip=True),
        )
        return ids


def send_all(
    client: httpx.Client | httpx2.Client,
    base: str,
    plant: Plant,
    ids: dict[str, str],
    *,
    replayed: bool = False,
) -> None:
    """The three requests, as an application sends them (the client reads every response: the
    planted bytes live, what redaction left of them on replay)."""

    def seen(body: bytes) -> bytes:
        return plant.redacted(body) if replayed else body

    r = client.post(
        f"{base}/v1/chat?{plant.query()}", json=plant.json_body(), headers=plant.headers(ids["sse"])
    )
    assert r.status_code == 200 and r.content == seen(plant.sse_body())
    r = client.post(
        f"{base}/oauth/token",
        content=plant.form_body(),
        headers={"content-type": "application/x-www-form-urlencoded", "x-test-id": ids["form"]},
    )
    assert r.content == seen(plant.json_response())
    r = client.post(f"{base}/v1/gz", json={"model": "m"}, headers={"x-test-id": ids["gzip"]})
    assert r.content == seen(plant.gzip_body())


def assert_clean(
    path: Path, plant: Plant, up: Upstream, ids: dict[str, str], *, userinfo: bool = False
) -> Cassette:
    """No planted secret in the file's raw bytes nor in a decoded body; the response bytes are
    the sent ones with only the secrets replaced; every chunk time kept; audit finds nothing."""
    raw = path.read_bytes()
    leaked = [name for name, s in plant.secrets.items() if s.encode() in raw]
    assert not leaked, leaked
    cassette = _store.load(path)
    by_id = {i.request.header("x-test-id"): i for i in cassette.interactions}
    for name, test_id in ids.items():
        inter = by_id[test_id]
        sent = up.exchange(test_id)
        resp = inter.response
        body = resp.body
        sent_body = sent.sent_body
        if resp.content_encoding == "gzip":
            body = zlib.decompress(body, 47)
            sent_body = zlib.decompress(sent_body, 47)
        for s in plant.secrets.values():
            assert s.encode() not in body and s.encode() not in inter.request.body
        assert body == plant.redacted(sent_body), name  # every other byte, the SSE framing included
        assert (list(resp.chunk_at) and len(resp.chunk_at) == len(sent.sent)) or name == "form"
        if resp.is_event_stream:
            assert len(parse(body).events) == len(parse(sent_body).events)
        for k, v in resp.headers:
            if k.lower() in RESPONSE_HEADERS:
                assert v == "REDACTED"
        for k, v in inter.request.headers:
            if k.lower() in REQUEST_HEADERS:
                assert v == "REDACTED", k
    sse = by_id[ids["sse"]].request
    assert "&keep=1" in sse.url and sse.url.count("=REDACTED") == len(QUERY_KEYS)
    assert json.loads(sse.body)["options"]["steps"][0]["refreshToken"] == "REDACTED"
    assert json.loads(sse.body)["max_tokens"] == 5
    assert sse.header("content-length") in (None, str(len(sse.body)))
    if userinfo:
        assert "REDACTED@" in sse.url
    result = audit(cassette)
    assert not result.findings and not result.problems, result.findings
    return cassette


def replays(cassette: Cassette, plant: Plant, ids: dict[str, str], base: str) -> None:
    """The live requests (secrets and all) match what was recorded with REDACTED in their
    place."""
    player = Player.create(cassette)
    live = Request(
        "POST",
        f"{base}/v1/chat?{plant.query()}",
        tuple(plant.headers(ids["sse"]).items()),
        json.dumps(plant.json_body()).encode(),
    )
    assert player.play(live).interaction.request.header("x-test-id") == ids["sse"]
    form = Request(
        "POST",
        f"{base}/oauth/token",
        (("content-type", "application/x-www-form-urlencoded"),),
        plant.form_body(),
    )
    assert player.play(form).interaction.request.path == "/oauth/token"


# ---------------------------------------------------------------------------------------------
# the recording paths


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


def stopped(rec: RecordCLI) -> None:
    if rec.proc.poll() is None:
        assert rec.stop(signal.SIGTERM) == 0, rec.stderr
    else:
        rec.close()


def no_secret_in(lines: list[str], plant: Plant) -> None:
    text = "".join(lines)
    assert not [n for n, s in plant.secrets.items() if s in text]


def test_reverse_proxy_recording_redacts_every_place(
    tmp_path: Path, confdir: Path, upstream: Upstream
) -> None:
    plant = Plant.make()
    ids = plant.script(upstream)
    path = tmp_path / "reverse.msgpack"
    rec = RecordCLI(path, "--upstream", upstream.url, confdir=confdir)
    try:
        with httpx.Client(timeout=20) as client:
            send_all(client, rec.url, plant, ids)
        for t in ids.values():
            rec.recorded(t)
    finally:
        stopped(rec)
    cassette = assert_clean(path, plant, upstream, ids)
    replays(cassette, plant, ids, "http://elsewhere")
    no_secret_in(rec.stdout + rec.stderr, plant)


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_forward_proxy_recording_redacts_every_place(
    tmp_path: Path, confdir: Path, upstream: Upstream, upstream_tls: Upstream, tls: bool
) -> None:
    up = upstream_tls if tls else upstream
    plant = Plant.make()
    ids = plant.script(up)
    path = tmp_path / "forward.msgpack"
    rec = RecordCLI(path, "--insecure-upstream", confdir=confdir)
    try:
        verify = ssl.create_default_context(cafile=rec.ca)
        with httpx.Client(proxy=rec.url, verify=verify, timeout=20) as client:
            send_all(client, up.url, plant, ids)
        if not tls:  # userinfo in an absolute-form request target, as a proxy client may send it
            host = up.url.removeprefix("http://")
            target = f"http://u:{plant['userinfo']}@{host}/v1/userinfo"
            raw = (
                f"GET {target} HTTP/1.1\r\nHost: {host}\r\n"
                f"x-test-id: {plant.test_id}-ui\r\nconnection: close\r\n\r\n"
            )
            hostname, port = rec.url.removeprefix("http://").rsplit(":", 1)
            with socket.create_connection((hostname, int(port)), timeout=20) as sock:
                sock.sendall(raw.encode())
                while sock.recv(65536):
                    pass
        for t in ids.values():
            rec.recorded(t)
    finally:
        stopped(rec)
    cassette = assert_clean(path, plant, up, ids)
    replays(cassette, plant, ids, up.url)
    no_secret_in(rec.stdout + rec.stderr, plant)


async def test_in_process_recording_redacts_every_place(tmp_path: Path, upstream: Upstream) -> None:
    plant = Plant.make()
    ids = plant.script(upstream)
    path = tmp_path / "in-process.msgpack"
    base = upstream.url.replace("http://", f"http://user:{plant['userinfo']}@")
    with ssevcr.use_cassette(path, record="once"), httpx2.Client(timeout=20) as client:
        send_all(client, base, plant, ids)
    cassette = assert_clean(path, plant, upstream, ids, userinfo=True)
    replays(cassette, plant, ids, base)
    # and in process, replaying the same live requests through use_cassette
    with ssevcr.use_cassette(path), httpx2.Client(timeout=20) as client:
        send_all(client, base, plant, ids, replayed=True)
    # async, gzip: the same redaction
    path2 = tmp_path / "async.msgpack"
    plant2 = Plant.make()
    ids2 = plant2.script(upstream)
    async with httpx2.AsyncClient(timeout=20) as aclient:
        with ssevcr.use_cassette(path2, record="once"):
            r = await aclient.post(
                f"{upstream.url}/v1/gz", json={}, headers={"x-test-id": ids2["gzip"]}
            )
            assert r.content == plant2.gzip_body()
    assert plant2["gz_secret"].encode() not in zlib.decompress(
        _store.load(path2).interactions[0].response.body, 47
    )


# ---------------------------------------------------------------------------------------------
# the rules, one by one (pure)


def test_every_listed_header_and_suffix_is_secret() -> None:
    for name in (
        *REQUEST_HEADERS,
        *RESPONSE_HEADERS,
        "X-Portkey-Api-Key",
        "Anthropic-Api-Key",
        "openai-organization",
    ):
        assert is_secret_header(name), name
    for name in (
        "content-type",
        "x-ratelimit-remaining-tokens",
        "idempotency-key",
        "x-request-id",
        "anthropic-version",
    ):
        assert not is_secret_header(name), name


def test_json_key_names() -> None:
    for name in (
        "api_key",
        "apiKey",
        "x-api-key",
        "client_secret",
        "clientSecret",
        "access_token",
        "refresh_token",
        "RefreshToken",
        "password",
        "new_password",
        "id_token",
        "secret",
    ):
        assert is_secret_json_key(name), name
    for name in (
        "token",
        "max_tokens",
        "input_tokens",
        "signature",
        "thoughtSignature",
        "key_id",
        "prompt_cache_key",
        "valid_token_count",
        "passwords_count",
    ):
        assert not is_secret_json_key(name), name


def test_userinfo_and_query_keep_every_other_byte() -> None:
    r = Redaction()
    assert (
        r.redact_url("https://u:p@h.example:8443/a%20b?x=1&Sig=abc&y=%2F#f")
        == "https://REDACTED@h.example:8443/a%20b?x=1&Sig=REDACTED&y=%2F#f"
    )
    assert (
        r.redact_url("https://h/p?X-Amz-Credential=AKIA%2F20250101&X-Amz-Date=1")
        == "https://h/p?X-Amz-Credential=REDACTED&X-Amz-Date=1"
    )
    assert r.redact_url("https://h/p?signature=") == "https://h/p?signature="  # nothing to hide
    assert r.redact_url("https://h/p?a=1") == "https://h/p?a=1"


def test_sse_rewrite_keeps_the_framing_and_every_other_byte() -> None:
    plant = Plant.make()
    body = plant.sse_body()
    for cuts in ([], [5, 40, 41, 90], list(range(1, len(body)))):
        points = [0, *cuts, len(body)]
        pieces = [
            (i / 100, body[a:b]) for i, (a, b) in enumerate(zip(points, points[1:], strict=False))
        ]
        resp = Response.from_chunks(200, pieces, headers=(("content-type", "text/event-stream"),))
        out = Redaction().response(resp)
        expected = body
        for s in plant.secrets.values():
            expected = expected.replace(s.encode(), b"REDACTED")
        assert out.body == expected
        # a chunk made only of the middle or end of a secret goes (its replacement went with
        # the chunk where the secret started); every other chunk stays, with its time
        inside: set[int] = set()
        for secret in plant.secrets.values():
            at = body.find(secret.encode())
            inside |= set(range(at + 1, at + len(secret))) if at >= 0 else set()
        spans = zip(points, points[1:], strict=False)
        kept = [
            at
            for at, (a, b) in zip(resp.chunk_at, spans, strict=True)
            if not set(range(a, b)) <= inside
        ]
        assert list(out.chunk_at) == kept  # each other chunk keeps its time
        before, after = parse(body), parse(out.body)
        assert [(f.type, f.id) for f in before.events] == [(f.type, f.id) for f in after.events]
        assert [type(f) for f in before.frames] == [type(f) for f in after.frames]


def test_gzip_response_is_decoded_redacted_and_encoded_again_chunk_by_chunk() -> None:
    plant = Plant.make()
    body = plant.sse_body() + plant.gzip_body()
    c = zlib.compressobj(wbits=31)
    plain = [body[:50], body[50:120], body[120:]]
    gz = [c.compress(p) + c.flush(zlib.Z_SYNC_FLUSH) for p in plain]
    gz[-1] += c.flush()
    resp = Response.from_chunks(
        200,
        [(0.1, gz[0]), (0.2, gz[1]), (0.3, gz[2])],
        headers=(
            ("content-type", "text/event-stream"),
            ("content-encoding", "gzip"),
            ("content-length", "1"),
        ),
    )
    out = Redaction().response(resp)
    assert list(out.chunk_at) == [0.1, 0.2, 0.3] and out.header("content-length") == str(
        len(out.body)
    )
    d = zlib.decompressobj(wbits=31)
    seen = b""
    for chunk in out.chunks:  # each chunk decodable when it arrives
        seen += d.decompress(chunk.data)
        assert body.startswith(seen.replace(b"REDACTED", b"")[:0])
    assert not any(s.encode() in seen for s in plant.secrets.values())
    assert seen.count(b"REDACTED") == 4


def test_a_body_too_large_to_decode_is_left_as_recorded() -> None:
    bomb = zlib.compressobj(wbits=31)
    data = bomb.compress(b'data: {"password":"x"}\n\n' + b"\0" * (2 << 20)) + bomb.flush()
    resp = Response.from_chunks(
        200,
        [(0.1, data)],
        headers=(("content-type", "text/event-stream"), ("content-encoding", "gzip")),
    )
    r = Redaction(max_decoded=1 << 20)
    assert r.response(resp) is resp
    result = audit(Cassette((Interaction(Request("GET", "http://h/"), resp),)), limit=1 << 20)
    assert result.problems and "not decoded: larger than 1 MiB" in result.problems[0]


# ---------------------------------------------------------------------------------------------
# audit


SHAPED = {
    # provider keys by prefix and length alone, low entropy included
    "OpenAI API key": [
        "sk-" + "a" * 48,
        "sk-proj-" + "A1" * 40,
        "sk-svcacct-" + "b" * 50,
        "sk-test-" + "0" * 32,
    ],
    "Anthropic API key": ["sk-ant-api03-" + "x" * 93 + "AA", "sk-ant-oat01-" + "y" * 60],
    "OpenRouter API key": ["sk-or-v1-" + "c" * 64],
    "Google API key": ["AIza" + "B" * 35],
    "Groq API key": ["gsk_" + "x" * 48],
    "xAI API key": ["xai-" + "Q" * 80],
    "Perplexity API key": ["pplx-" + "d" * 48],
    "Replicate API token": ["r8_" + "e" * 37],
    "Hugging Face token": ["hf_" + "f" * 34],
    "AWS access key": ["AKIA" + "Z" * 16],
    "GitHub token": ["ghp_" + "g" * 36],
    "Slack token": ["xoxb-" + "1" * 24],
    "JSON Web Token": ["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijklmnop"],
}


@pytest.mark.parametrize("kind", sorted(SHAPED))
def test_audit_finds_provider_keys_by_prefix_and_length(kind: str) -> None:
    for key in SHAPED[kind]:
        text = f'data: {{"text": "here is {key} ok"}}\n\n'.encode()
        hits = find(text)
        assert [(h.kind, text[h.start : h.end].decode()) for h in hits] == [(kind, key)]
    assert not find(b"sk-learn-is-a-python-library-for-ml, gsk_short, AIza-no, xai-grok-2-latest")


def test_audit_finds_sigv4_basic_and_url_credentials() -> None:
    sig = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    text = (
        "AWS4-HMAC-SHA256 Credential=x/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, "
        f"Signature={sig} then Basic dXNlcjpodW50ZXIy and postgres://admin:hunter2@db/x"
    ).encode()
    kinds = [(h.kind, text[h.start : h.end]) for h in find(text)]
    assert kinds == [
        ("credential in 'Credential'", b"x/20250101/us-east-1/s3/aws4_request"),  # the key id
        ("AWS SigV4 signature", sig.encode()),
        ("Basic credentials", b"dXNlcjpodW50ZXIy"),
        ("credentials in a URL", b"admin:hunter2"),
    ]
    assert not find(b"basic usage: see https://example.com/docs@v2")


def unredacted() -> Cassette:
    """A cassette as a recorder without redaction would have saved it: every planted secret in
    place, the provider-shaped ones in a request prompt and in a response event."""
    plant = Plant.make()
    sse = plant.sse_body() + b'data: {"text": "' + SHAPED["Groq API key"][0].encode() + b'"}\n\n'
    request = Request(
        "POST",
        f"http://user:{plant['userinfo']}@h/v1/chat?{plant.query()}",
        (*plant.headers("t").items(), ("content-type", "application/json")),
        json.dumps({**plant.json_body(), "prompt": SHAPED["OpenAI API key"][1]}).encode(),
    )
    resp = Response.from_chunks(
        200,
        [(0.1, sse[:70]), (0.2, sse[70:])],
        headers=plant.response_headers("text/event-stream"),
        end=End(0.3),
    )
    form = Request(
        "POST",
        "http://h/oauth",
        (("content-type", "application/x-www-form-urlencoded"),),
        plant.form_body(),
    )
    token = Response.from_chunks(
        200, [(0.1, plant.json_response())], headers=(("content-type", "application/json"),)
    )
    return Cassette((Interaction(request, resp), Interaction(form, token)))


def test_audit_finds_every_place_and_fix_leaves_none(tmp_path: Path) -> None:
    cassette = unredacted()
    path = tmp_path / "leaky.msgpack"
    _store.save(cassette, path)
    runner = CliRunner()
    found = runner.invoke(main, ["audit", str(path)])
    assert found.exit_code == 1
    lines = found.stdout.splitlines()
    # each query key, each header, userinfo, 5 JSON keys + the prompt key, 3 form fields,
    # 3 response headers, 3 SSE secrets + the Groq key, 2 JSON response tokens
    assert len(lines) == len(QUERY_KEYS) + len(REQUEST_HEADERS) + 1 + 6 + 3 + 3 + 4 + 2, lines
    assert not any(s in found.output for s in collect_secrets(cassette))
    fixed = runner.invoke(main, ["audit", "--fix", str(path)])
    assert fixed.exit_code == 0, fixed.output
    again = runner.invoke(main, ["audit", str(path)])
    assert again.exit_code == 0 and again.stdout == ""
    clean = _store.load(path)  # it loads
    raw = path.read_bytes()
    assert not [s for s in collect_secrets(cassette) if s.encode() in raw]
    # and replays: the live request matches what audit left
    player = Player.create(clean)
    assert player.play(cassette.interactions[0].request).index == 0
    assert player.play(cassette.interactions[1].request).index == 1
    assert (
        parse(clean.interactions[0].response.body).events[0].data
        == '{"delta":"hi","password":"REDACTED"}'
    )


def collect_secrets(cassette: Cassette) -> list[str]:
    """The planted secrets of :func:`unredacted` ("Pl..." values, and the shaped keys)."""
    import re

    text = json.dumps([str(i) for i in cassette.interactions]) + str(
        [i.response.body for i in cassette.interactions]
    )
    planted = sorted(set(re.findall(r"Pl[A-Za-z]+[0-9a-f]{32}", text)))
    return [*planted, SHAPED["Groq API key"][0], SHAPED["OpenAI API key"][1]]


# ---------------------------------------------------------------------------------------------
# output: miss explanations, show, logs


def test_miss_explanations_mask_live_secrets() -> None:
    plant = Plant.make()
    recorded = Redaction().request(
        Request(
            "POST",
            f"http://h/v1/chat?{plant.query()}",
            (("content-type", "application/json"),),
            json.dumps(plant.json_body()).encode(),
        )
    )
    live_body = {**plant.json_body(), "model": "other", "api_key": plant["api_key"] + "x"}
    live = Request(
        "POST",
        f"http://u:{plant['userinfo']}@h/v1/chat?{plant.query()}"
        f"&extra={SHAPED['Google API key'][0]}",
        (),
        json.dumps(live_body).encode(),
    )
    text = explain_miss("c.msgpack", [recorded], live, MatchOptions())
    assert "query:" in text and "body $.model" in text
    assert (
        not [n for n, s in plant.secrets.items() if s in text]
        and SHAPED["Google API key"][0] not in text
    )
    secret_value = Request(
        "POST", "http://h/v1/chat", (), json.dumps({"password": "hunter2-" + "z" * 20}).encode()
    )
    text = explain_miss(
        "c",
        [Request("POST", "http://h/v1/chat", (), b'{"password": "old"}')],
        secret_value,
        MatchOptions(),
    )
    assert "hunter2" not in text and "password" in text
    form = explain_miss(
        "c",
        [Request("POST", "http://h/x", (), b"a=1")],
        Request("POST", "http://h/x", (), b"password=hunter2secret&a=2"),
        MatchOptions(),
    )
    assert "hunter2secret" not in form
    # the error a replay raises carries the same masked text
    cassette = Cassette((Interaction(recorded, Response.from_chunks(200, [(0.1, b"{}")])),))
    with pytest.raises(NoMatchError) as e:
        Player.create(cassette).play(live)
    assert not [n for n, s in plant.secrets.items() if s in str(e.value)]


def test_show_never_prints_a_live_secret(tmp_path: Path) -> None:
    cassette = unredacted()
    path = tmp_path / "leaky.msgpack"
    _store.save(cassette, path)
    secrets = collect_secrets(cassette)
    svg, page = tmp_path / "t.svg", tmp_path / "t.html"
    for args in (
        [],
        ["--events"],
        ["--json"],
        ["--diff-text"],
        ["--svg", str(svg), "--html", str(page), "--fault", "drop:event=1"],
    ):
        result = CliRunner(env={"COLUMNS": "300"}).invoke(main, ["show", str(path), *args])
        assert result.exit_code == 0, result.output
        leaked = [s for s in secrets if s in result.output]
        assert not leaked, (args, leaked)
    for f in (svg, page):
        text = f.read_text("utf-8")
        assert not [s for s in secrets if s in text]
    # --json and --diff-text still say where each one was
    doc = json.loads(CliRunner().invoke(main, ["show", str(path), "--json"]).stdout)
    assert '"password":"Plssepa…(45 chars)"' in doc["interactions"][0]["events"][0]["data"]


def test_safe_text_masks_and_escapes() -> None:
    key = SHAPED["Anthropic API key"][0]
    assert safe(f"\x1b]52;c;{key}\x07") == f"\\x1b]52;c;{key[:7]}…({len(key)} chars)\\x07"
    assert mask_text("https://h/p?a=1&token=abc&b=2") == "https://h/p?a=1&token=…(3 chars)&b=2"
    assert mask_text("nothing here") == "nothing here"


def test_scan_of_the_recorded_examples_finds_nothing() -> None:
    root = Path(__file__).resolve().parent.parent / "cassettes" / "examples"
    for path in sorted(root.glob("*.msgpack")):
        assert scan(_store.load(path)) == [], path


def test_recorder_log_lines_never_print_a_live_url_secret(tmp_path: Path, confdir: Path) -> None:
    """An exchange that gets no response is not recorded, only logged (mitmdump's log and the
    SSEVCR-RECORDED line): its URL is redacted there too."""
    secret = planted("logged")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    proc = recorder_mitmdump(
        tmp_path / "log.msgpack",
        confdir,
        f"reverse:http://127.0.0.1:{dead}",
        *["--set", "ssevcr_report=true"],
        *["--set", "connection_strategy=lazy"],  # read the request before connecting upstream
    )
    try:
        host, port = listening(proc)
        with contextlib.suppress(httpx.RemoteProtocolError):  # closed, no answer
            httpx.get(f"http://{host}:{port}/v1/x?key={secret}&token={secret}", timeout=20)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    text = out.decode("utf-8", "replace")
    assert "not recorded (no response)" in text and '"outcome":"no_response"' in text, text
    assert "/v1/x?key=REDACTED&token=REDACTED" in text
    assert secret not in text


def test_ssevcr_cli_subprocess_show_masks(tmp_path: Path) -> None:
    cassette = unredacted()
    path = tmp_path / "leaky.msgpack"
    _store.save(cassette, path)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from ssevcr.cli import main; main()",
            "show",
            str(path),
            "--events",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert not [s for s in collect_secrets(cassette) if s in out.stdout + out.stderr]


def test_every_gzip_member_is_searched_and_redacted() -> None:
    """A body of several gzip members is one stream to gzip and to clients: a secret in the
    second member is found by audit and redacted at record time, never left unread."""
    secret = planted("member")
    first = zlib.compress(b'data: {"a": 1}\n\n', wbits=31)
    c = zlib.compressobj(wbits=31)
    second = c.compress(b'data: {"password": "' + secret.encode() + b'"}\n\n') + c.flush()
    resp = Response.from_chunks(
        200,
        [(0.1, first), (0.2, second)],
        headers=(("content-type", "text/event-stream"), ("content-encoding", "gzip")),
    )
    cassette = Cassette((Interaction(Request("GET", "http://h/"), resp),))
    found = scan(cassette)
    assert [f.location for f in found] == ["response event 2"]
    out = Redaction().response(resp)
    assert secret.encode() not in zlib.decompressobj(wbits=31).decompress(out.body)
    assert parse(zlib.decompress(out.body, 47)).events[1].data == '{"password": "REDACTED"}'
