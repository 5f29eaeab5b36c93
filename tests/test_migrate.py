"""``ssevcr import --from vcrpy|har`` (``ssevcr._migrate``): cassettes recorded by vcrpy itself
and by pytest-recording (from the local upstream of tests/upstream.py) import and replay through
the openai SDK to the same text; older vcrpy formats, JSON, compressed bodies and HAR files
convert; what cannot be converted is named by field and line, and nothing is written."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import requests
import vcr
from click.testing import CliRunner
from client_helpers import BODY, CHAT, CHAT_URL, FIXTURE, TEXT, CaptureServer, fixture_frames
from test_intercept import steer, stop
from upstream import Upstream

import ssevcr
from ssevcr import _store
from ssevcr._expiry import check, recorded_at
from ssevcr._migrate import DEFAULT_PROFILE, from_har, from_vcrpy
from ssevcr.cli import main


def run_import(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["import", *args])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def sdk_text(path: Path, base_url: str) -> tuple[str, ssevcr._intercept.ActiveCassette]:
    import openai

    with ssevcr.use_cassette(path, timing="instant") as cas:
        client = openai.OpenAI(api_key="sk-test", base_url=base_url + "/v1", max_retries=0)
        stream = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    return text, cas


@pytest.mark.parametrize(
    ("serializer", "options"),
    [
        ("yaml", {}),
        ("json", {}),
        # requests streams: vcrpy stores the body decoded and keeps content-encoding: gzip
        ("yaml", {"gzip": True}),
        ("json", {"gzip": True, "decode_compressed_response": True}),
    ],
)
def test_vcrpy_cassettes_recorded_by_vcrpy_replay_through_the_sdk(
    tmp_path: Path,
    upstream: Upstream,
    capture: CaptureServer,
    serializer: str,
    options: dict[str, bool],
) -> None:
    source = tmp_path / f"vcr.{serializer}"
    gzip = options.pop("gzip", False)
    recorder = vcr.VCR(record_mode="once", serializer=serializer, **options)
    with recorder.use_cassette(str(source)):
        headers = steer(FIXTURE, gzip="1") if gzip else steer(FIXTURE)
        r = requests.post(upstream.url + CHAT_URL, json=CHAT, headers=headers, stream=True)
        assert b"".join(r.iter_content(None)) == BODY
    stop(upstream)
    if gzip and not options:
        assert "content-encoding" in source.read_text()
    out = tmp_path / "imported.msgpack"
    code, output = run_import(str(source), "--from", "vcrpy", "-o", str(out))
    assert code == 0, output
    assert "timing synthesized" in output
    (inter,) = _store.load(out).interactions
    response = inter.response
    assert response.body == BODY and response.header("content-encoding") is None
    assert [c.data for c in response.chunks] == fixture_frames()  # one chunk per event
    ats = list(response.chunk_at)
    assert ats[0] == pytest.approx(0.4) and ats[1] - ats[0] == pytest.approx(0.02)
    if gzip and not options:
        assert "content-encoding gzip dropped" in inter.meta["synthesized"]
    assert "synthesized" in inter.meta and inter.meta["profile"] == DEFAULT_PROFILE
    # vcrpy keeps no recording time, and this upstream sends no Date header: undated
    assert "recorded_at" not in inter.meta
    text, cas = sdk_text(out, capture.url)
    assert text == TEXT and len(cas.plays) == 1 and capture.connections == 0


PYTEST_RECORDING_TEST = """
import pytest
import requests

@pytest.mark.vcr
def test_stream():
    r = requests.post({url!r} + "/v1/chat/completions", json={chat!r}, headers={headers!r},
                      stream=True)
    assert b"".join(r.iter_content(None)) == {body!r}
"""


def test_a_pytest_recording_cassette_replays_through_the_sdk(
    tmp_path: Path, pytester: pytest.Pytester, upstream: Upstream, capture: CaptureServer
) -> None:
    pytester.makepyfile(
        test_rec=PYTEST_RECORDING_TEST.format(
            url=upstream.url, chat=CHAT, headers=steer(FIXTURE), body=BODY
        )
    )
    result = pytester.runpytest("--record-mode=once", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    source = pytester.path / "cassettes" / "test_rec" / "test_stream.yaml"
    assert source.exists() and len(upstream.exchanges) == 1
    stop(upstream)
    out = tmp_path / "imported.msgpack"
    code, output = run_import(str(source), "--from", "vcrpy", "-o", str(out))
    assert code == 0, output
    assert sdk_text(out, capture.url)[0] == TEXT
    assert capture.connections == 0


OLD_FORMAT = """\
- request:
    body: !!python/unicode '{"model": "gpt-4o", "stream": true}'
    headers:
      Content-Type: !!python/unicode application/json
    method: POST
    uri: https://api.openai.com/v1/chat/completions
  response:
    body: {string: !!python/unicode "data: {\\"x\\": 1}\\n\\ndata: [DONE]\\n\\n"}
    headers:
      Content-Type: text/event-stream
    status: {code: 200, message: OK}
"""


def test_the_format_before_vcrpy_1_and_python2_tags() -> None:
    converted = from_vcrpy(OLD_FORMAT.encode(), name="old.yaml")
    assert not converted.problems
    (inter,) = converted.cassette.interactions
    assert inter.request.body == b'{"model": "gpt-4o", "stream": true}'
    assert inter.request.headers == (("Content-Type", "application/json"),)
    assert [c.data for c in inter.response.chunks] == [b'data: {"x": 1}\n\n', b"data: [DONE]\n\n"]


V1_BINARY = """\
interactions:
- request:
    body: null
    headers: {Accept: ['*/*'], User-Agent: [python-requests/2.31.0]}
    method: GET
    uri: https://api.example.com/v1/models
  response:
    body:
      string: !!binary |
        eyJvayI6IHRydWV9
    headers:
      Content-Type: [application/json]
      Set-Cookie: [a=1, b=2]
    status: {code: 200, message: OK}
- request: {body: null, headers: {}, method: GET, uri: https://api.example.com/x}
  response:
    body: {string: ''}
    headers: {}
    status: {message: OK}
version: 1
"""


def test_problems_name_the_field_and_line_and_nothing_is_written(tmp_path: Path) -> None:
    source = tmp_path / "c.yaml"
    source.write_text(V1_BINARY)
    out = tmp_path / "c.msgpack"
    code, output = run_import(str(source), "--from", "vcrpy", "-o", str(out))
    assert code == 1 and not out.exists()
    line = V1_BINARY.splitlines().index("    status: {message: OK}") + 1
    assert f"line {line}: interactions[1].response.status.code: expected an HTTP status" in output
    assert "nothing was written (--partial writes the others)" in output
    code, output = run_import(str(source), "--from", "vcrpy", "-o", str(out), "--partial")
    assert code == 0, output
    (inter,) = _store.load(out).interactions
    assert inter.response.body == b'{"ok": true}'
    # headers as lists of values; credentials redacted as in every recording
    assert inter.response.headers[1:] == (("Set-Cookie", "REDACTED"), ("Set-Cookie", "REDACTED"))
    source.write_text("interactions: [\n  - {request: }\n")
    code, output = run_import(str(source), "--from", "vcrpy", "-o", str(out))
    assert code == 1 and "line 2: not valid YAML" in output
    source.write_text("version: 2\ninteractions: []\n")
    assert (
        "format version 2 is not known"
        in run_import(str(source), "--from", "vcrpy", "-o", str(out))[1]
    )
    source.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    code, output = run_import(str(source), "--from", "vcrpy", "-o", str(out))
    assert code == 1 and "not valid YAML" in output  # the safe loader builds no object


def har(entries: list[dict]) -> bytes:
    return json.dumps(
        {
            "log": {
                "version": "1.2",
                "creator": {"name": "Playwright", "version": "1.50"},
                "entries": entries,
            }
        }
    ).encode()


def har_entry(text: str, *, base64_body: bool = False, status: int = 200) -> dict:
    content: dict = {"size": len(text), "mimeType": "text/event-stream"}
    if base64_body:
        content.update(text=base64.b64encode(text.encode()).decode(), encoding="base64")
    else:
        content["text"] = text
    return {
        "startedDateTime": "2025-01-01T00:00:00.000Z",
        "time": 900,
        "request": {
            "method": "POST",
            "url": "https://api.openai.com/v1/chat/completions",
            "httpVersion": "h2",
            "headers": [
                {"name": ":authority", "value": "api.openai.com"},
                {"name": "content-type", "value": "application/json"},
            ],
            "postData": {"mimeType": "application/json", "text": json.dumps(CHAT)},
        },
        "response": {
            "status": status,
            "statusText": "",
            "httpVersion": "h2",
            "headers": [
                {"name": "content-type", "value": "text/event-stream; charset=utf-8"},
                {"name": "content-encoding", "value": "br"},
                {"name": ":status", "value": "200"},
            ],
            "content": content,
        },
        "timings": {"blocked": 1, "dns": -1, "connect": -1, "send": 2, "wait": 398, "receive": 660},
    }


@pytest.mark.parametrize("base64_body", [False, True])
def test_a_har_file_replays_through_the_sdk(
    tmp_path: Path, capture: CaptureServer, base64_body: bool
) -> None:
    source = tmp_path / "s.har"
    source.write_bytes(
        har([har_entry(BODY.decode(), base64_body=base64_body), har_entry("", status=0)])
    )
    out = tmp_path / "h.msgpack"
    code, output = run_import(str(source), "--from", "har", "-o", str(out))
    assert code == 1 and "log.entries[1].response.status: 0: the request got no response" in output
    code, output = run_import(str(source), "--from", "har", "-o", str(out), "--partial")
    assert code == 0, output
    cassette = _store.load(out)
    (inter,) = cassette.interactions
    response = inter.response
    assert response.body == BODY and [c.data for c in response.chunks] == fixture_frames()
    assert response.header("content-encoding") is None  # a HAR body is decoded
    assert all(not k.startswith(":") for k, _ in (*response.headers, *inter.request.headers))
    ats = list(response.chunk_at)
    assert response.headers_at == pytest.approx(0.4) and ats[0] == pytest.approx(0.4)
    assert ats[-1] == pytest.approx(0.4 + 0.66)  # spread over the entry's receive time
    assert "synthesized" in inter.meta and "Playwright" in cassette.meta["imported_from"]
    text, cas = sdk_text(out, capture.url)
    assert text == TEXT and len(cas.plays) == 1 and capture.connections == 0
    shown = CliRunner().invoke(main, ["show", str(out)])
    assert shown.exit_code == 0 and "synthesized" in shown.output, shown.output


def test_har_problems() -> None:
    converted = from_har(
        har([{"request": {"method": "GET", "url": "/relative"}, "response": {"status": 200}}]),
        name="x.har",
    )
    assert [str(p) for p in converted.problems] == [
        "log.entries[0].request.url: not an absolute URL: '/relative'"
    ]
    no_body = har_entry("x")
    del no_body["response"]["content"]["text"]
    converted = from_har(har([no_body]), name="x.har")
    assert "saved without response bodies" in str(converted.problems[0])
    with pytest.raises(ssevcr.CassetteError, match="not a HAR file"):
        from_har(b'{"entries": []}', name="x.har")


# ---------------------------------------------------------------------------------------------
# when it was recorded: recorded_at (what max_age reads)


def test_har_started_date_time_dates_each_interaction(tmp_path: Path) -> None:
    chrome, firefox, undated = har_entry("data: {}\n\n"), har_entry("x"), har_entry("y")
    chrome["startedDateTime"] = "2025-03-04T05:06:07.891Z"  # Chrome, Playwright
    firefox["startedDateTime"] = "2025-03-04T06:06:07.123+01:00"  # Firefox: local offset
    del undated["startedDateTime"]
    source = tmp_path / "dated.har"
    source.write_bytes(har([chrome, firefox, undated]))
    out = tmp_path / "dated.msgpack"
    code, output = run_import(str(source), "--from", "har", "-o", str(out))
    assert code == 0, output
    interactions = _store.load(out).interactions
    assert [i.meta.get("recorded_at") for i in interactions] == [
        "2025-03-04T05:06:07Z",
        "2025-03-04T05:06:07Z",
        None,
    ]
    # max_age reads them: ten days later the dated ones are expired, the undated one never is
    when = recorded_at(interactions[0])
    assert when is not None
    found = check(str(out), interactions, 7 * 86400, when + 10 * 86400)
    assert [n for n, _ in found.expired] == [0, 1] and found.undated == 1


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("yesterday", "not an ISO 8601 date: 'yesterday'"),
        ("2025-03-04T05:06:07", "has no UTC offset"),
        ("2025-03-04", "has no UTC offset"),
        ("1970-01-01T00:00:00.000Z", "is before 2000"),
        ("2999-01-01T00:00:00.000Z", "is in the future"),
        (1741064767, "expected an ISO 8601 date, got 1741064767"),
    ],
)
def test_a_bad_started_date_time_is_a_problem_of_its_entry(
    tmp_path: Path, value: object, problem: str
) -> None:
    bad = har_entry("x")
    bad["startedDateTime"] = value
    source = tmp_path / "bad.har"
    source.write_bytes(har([har_entry("data: {}\n\n"), bad]))
    out = tmp_path / "bad.msgpack"
    code, output = run_import(str(source), "--from", "har", "-o", str(out))
    assert code == 1 and "log.entries[1].startedDateTime: " in output and problem in output
    assert not out.exists()
    code, output = run_import(str(source), "--from", "har", "-o", str(out), "--partial")
    assert code == 0, output
    (inter,) = _store.load(out).interactions  # the other entry, dated
    assert inter.meta["recorded_at"] == "2025-01-01T00:00:00Z"


def test_a_vcrpy_interaction_is_dated_by_its_response_date_header() -> None:
    def cassette(date: str) -> bytes:
        header = f"      Date: ['{date}']\n" if date else ""
        return (
            "interactions:\n- request:\n    body: null\n    headers: {}\n    method: GET\n"
            "    uri: https://api.example.com/v1/models\n  response:\n    body: {string: ok}\n"
            f"    headers:\n      Content-Type: [text/plain]\n{header}"
            "    status: {code: 200, message: OK}\nversion: 1\n"
        ).encode()

    def dated(date: str) -> str | None:
        converted = from_vcrpy(cassette(date), name="v.yaml")
        assert not converted.problems
        return converted.cassette.interactions[0].meta.get("recorded_at")

    assert dated("Tue, 01 Jul 2025 10:00:00 GMT") == "2025-07-01T10:00:00Z"
    assert dated("") is None  # no Date header: undated
    assert dated("not a date") is None
    assert dated("Thu, 01 Jan 1970 00:00:00 GMT") is None  # not believed
