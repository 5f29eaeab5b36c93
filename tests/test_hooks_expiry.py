"""The pure parts of the recording hooks (``_hooks``), custom matchers (``_matching``) and expiry
(``_expiry``): what a hook may return, what a matcher's failure says, how ages and dates parse
(a hostile ``recorded_at`` is undated, never an error)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ssevcr import ConfigError, Interaction, Request, Response
from ssevcr._expiry import RECORDED_AT, check, parse_age, recorded_at, stamp
from ssevcr._hooks import Hooks
from ssevcr._matching import MatchOptions, differences, explain_miss

CHUNKS = [(0.1, b"data: 1\n\n"), (0.25, b"data: 2\n\n"), (0.4, b"data: [DONE]\n\n")]


def _interaction(chunks: list[tuple[float, bytes]] = CHUNKS) -> Interaction:
    return Interaction(
        Request("POST", "https://api.example.com/v1/chat", (("x-a", "1"),), b'{"model":"m"}'),
        Response.from_chunks(
            200, chunks, headers=(("content-type", "text/event-stream"), ("content-length", "34"))
        ),
    )


def test_a_hook_that_changes_nothing_keeps_the_interaction_itself() -> None:
    inter = _interaction()
    assert Hooks(lambda r: r, lambda r: r).apply(inter) is inter


def test_an_edited_chunk_keeps_its_time_and_content_length_follows() -> None:
    def edit(response):  # type: ignore[no-untyped-def]
        response.chunks[1] = b"data: 22\n\n"
        return response

    out = Hooks(before_record_response=edit).apply(_interaction())
    assert out is not None
    assert list(out.response.chunk_at) == [0.1, 0.25, 0.4]
    assert out.response.body == b"data: 1\n\ndata: 22\n\ndata: [DONE]\n\n"
    assert out.response.header("content-length") == str(len(out.response.body))


@pytest.mark.parametrize(
    ("hook", "message"),
    [
        (lambda r: setattr(r, "headers", [("x-b", "a\r\nset-cookie: x")]) or r, "control bytes"),
        (lambda r: setattr(r, "status", 99) or r, "expected an HTTP status"),
        (lambda r: r.chunks.pop() and r, "arrived in 3 chunks, the hook returned 2"),
        (lambda r: 1 / 0, "before_record_response raised ZeroDivisionError"),
        (lambda r: "text", "must return the response or None"),
    ],
)
def test_a_bad_response_hook_is_a_config_error(hook: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Hooks(before_record_response=hook).apply(_interaction())  # type: ignore[arg-type]


def test_a_buffered_body_can_be_set_a_streamed_one_cannot() -> None:
    def whole(response):  # type: ignore[no-untyped-def]
        response.body = b"{}"
        return response

    one = Hooks(before_record_response=whole).apply(_interaction([(0.2, b'{"a": 1}')]))
    assert one is not None and one.response.body == b"{}" and list(one.response.chunk_at) == [0.2]
    with pytest.raises(ConfigError, match="edited chunk by chunk"):
        Hooks(before_record_response=whole).apply(_interaction())


def test_a_request_hook_cannot_inject_a_header_line() -> None:
    def inject(request):  # type: ignore[no-untyped-def]
        request.set_header("x-a", "1\r\nhost: evil")
        return request

    with pytest.raises(ConfigError, match="before_record_request: value of 'x-a'"):
        Hooks(before_record_request=inject).apply(_interaction())
    dropped = Hooks(before_record_request=lambda r: None).apply(_interaction())
    assert dropped is None


def test_a_custom_matcher_in_differences_and_in_the_miss() -> None:
    def same_model(recorded: Request, live: Request) -> bool:
        assert recorded.body == live.body, "another model"
        return True

    options = MatchOptions(on=("method", "path", same_model))
    recorded = _interaction().request
    assert differences(recorded, recorded, options) == []
    other = replace(recorded, body=b'{"model":"n"}')
    assert differences(recorded, other, options) == [
        ("same_model", "matcher same_model: another model")
    ]
    text = explain_miss("c", [recorded, recorded], other, options)
    assert "    - matcher same_model: another model" in text
    assert "matching on method, path, same_model" in text
    with pytest.raises(ConfigError, match="valid: method"):
        MatchOptions(on=("method", "colour"))


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        (90, 90.0),
        ("30d", 30 * 86400.0),
        ("12h", 43200.0),
        ("2w", 1209600.0),
        ("90s", 90.0),
        ("5m", 300.0),
    ],
)
def test_ages(given: object, seconds: float) -> None:
    assert parse_age(given) == seconds


@pytest.mark.parametrize("given", ["soon", "-1d", 0, True, float("inf"), "1y", None])
def test_bad_ages(given: object) -> None:
    with pytest.raises(ConfigError):
        parse_age(given)


def test_dates_undated_and_hostile() -> None:
    now = 1_800_000_000.0
    base = _interaction()
    old = replace(base, meta={RECORDED_AT: stamp(now - 40 * 86400)})
    new = replace(base, meta={RECORDED_AT: stamp(now - 86400)})
    hostile = [
        replace(base, meta={RECORDED_AT: text})
        for text in ("garbage", "2026-13-40T99:99:99Z", "\x1b[2J" * 5, "9" * 10_000)
    ]
    assert recorded_at(old) == now - 40 * 86400
    assert all(recorded_at(i) is None for i in hostile)
    found = check("c", [new, old, base, *hostile], 30 * 86400, now)
    assert found.expired == ((1, 40 * 86400),) and found.undated == 5 and found.total == 7
    assert "1 of 7 interactions of cassette 'c' are older than 30.0 days" in found.describe(
        30 * 86400
    )
    assert not check("c", [base], 1, now)  # undated never expires
