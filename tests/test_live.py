"""The schedule of a response still arriving (``_live``): fed chunk by chunk, what it says is
certain is always the start of what ``_schedule.build`` gives for the finished response (same
steps, same end), for real provider streams and generated ones, any chunking, any faults; and it
says so early (a truncated stream ends for the client when the next chunk arrives, not when the
upstream ends)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from upstream import fixture_body, fixture_names

from ssevcr._cassette import End, Outcome, Response
from ssevcr._errors import ConfigError
from ssevcr._faults import parse_faults
from ssevcr._live import Known, LiveSchedule
from ssevcr._schedule import Abort, Close, Schedule, build
from ssevcr._timing import Timing

HEAD = (("content-type", "text/event-stream"), ("transfer-encoding", "chunked"))
URL = "http://127.0.0.1:9/v1/chat/completions"


def split(body: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(body)})
    return [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]


def timed(pieces: list[bytes]) -> list[tuple[float, bytes]]:
    return [(0.01 * (i + 1), p) for i, p in enumerate(pieces)]


def final_schedule(
    chunks: list[tuple[float, bytes]], faults: Sequence[str], end: End, headers: tuple = HEAD
) -> Schedule:
    response = Response.from_chunks(
        200, chunks, reason="OK", headers=headers, headers_at=0.005, end=end
    )
    return build(response, timing=Timing(), faults=parse_faults(faults), seed="7:0:0", url=URL)


def feed(
    chunks: list[tuple[float, bytes]], faults: Sequence[str], end: End, headers: tuple = HEAD
) -> tuple[list[Known], Schedule]:
    """Feed the chunks one by one; what was known after each, and the final schedule. Checks at
    every step that what is known is the start of the final schedule."""
    final = final_schedule(chunks, faults, end, headers)
    head = Response(200, "OK", headers=headers, headers_at=0.005)
    live = LiveSchedule(head, faults=parse_faults(faults), seed="7:0:0", url=URL)
    seen = []
    for at, data in chunks:
        live.add(at, data)
        known = live.known()
        assert final.steps[: len(known.steps)] == known.steps, (faults, len(seen))
        if known.end is not None:
            assert (known.steps, known.end) == (final.steps, final.end), faults
        if known.schedule is not None:
            s = known.schedule
            assert (s.status, s.reason, s.headers) == (final.status, final.reason, final.headers)
        seen.append(known)
    live.finish(end)
    last = live.known()
    assert (last.steps, last.end) == (final.steps, final.end) and live.consistent
    assert live.final == final
    return seen, final


SPECS = st.sampled_from(
    [
        "truncate:after={n}",
        "truncate:after={n},end=close",
        "truncate:after={n},end=reset",
        "truncate:after=last",
        "truncate:after=0",
        "truncate:byte={b}",
        "stall:before={n},for=20ms",
        "stall:before={n},for=forever",
        "stall:before=last,for=5ms",
        "drop:event={n}",
        "drop:event=last",
        "corrupt:event={n}",
        "corrupt:event={n},how=utf8",
        "corrupt:event={n},how=bytes",
        "corrupt:event=last,how=bytes",
        "duplicate:event={n}",
        "duplicate:event=last",
        "error:after={n}",
        "error:after=last",
        "error:after={n},provider=anthropic",
        "rechunk:size={n}",
        "rechunk:random",
        "rechunk:hostile",
        "slow:bps=2000",
        "status:429",
        "status:503,provider=openai",
    ]
)


@st.composite
def fault_sets(draw: st.DrawFn) -> list[str]:
    specs = draw(st.lists(SPECS, min_size=1, max_size=3))
    return [s.format(n=draw(st.integers(1, 12)), b=draw(st.integers(0, 3000))) for s in specs]


FRAME = st.one_of(
    st.builds(lambda t: f"data: {t}\n\n".encode(), st.text('ab{}":é', max_size=8)),
    st.builds(lambda t: f"event: e\r\ndata: {t}\r\n\r\n".encode(), st.text("xy", max_size=4)),
    st.builds(lambda t: f"data: {t}\r\r".encode(), st.text("z", max_size=3)),
    st.just(b": keep-alive\n\n"),
    st.just(b"data: [DONE]\n\n"),
)


def check_any(chunks: list[tuple[float, bytes]], faults: list[str], outcome: Outcome) -> None:
    end = End(chunks[-1][0] + 0.01 if chunks else 0.01, outcome)
    try:
        final_schedule(chunks, faults, end)
    except ConfigError:  # two faults on one event: refused by the replay as well
        assume(False)
    feed(chunks, faults, end)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frames=st.lists(FRAME, min_size=0, max_size=14),
    tail=st.sampled_from([b"", b"data: unfinished", b"\r"]),
    cuts=st.lists(st.integers(1, 400), max_size=12),
    after_cr=st.booleans(),
    faults=fault_sets(),
    outcome=st.sampled_from([Outcome.COMPLETE, Outcome.UPSTREAM_ERROR]),
)
def test_what_is_known_early_is_the_start_of_the_final_schedule(
    frames: list[bytes],
    tail: bytes,
    cuts: list[int],
    after_cr: bool,
    faults: list[str],
    outcome: Outcome,
) -> None:
    body = b"".join(frames) + tail
    assume(body)
    if after_cr:  # also split between every CR and what follows it
        cuts = [*cuts, *(i + 1 for i, b in enumerate(body) if b == 0x0D)]
    check_any(timed(split(body, cuts)), faults, outcome)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(fixture_names()),
    cuts=st.lists(st.integers(1, 6000), max_size=20),
    faults=fault_sets(),
)
def test_provider_streams_any_chunking(name: str, cuts: list[int], faults: list[str]) -> None:
    body = fixture_body(name)
    check_any(timed(split(body, cuts)), faults, Outcome.COMPLETE)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cuts=st.lists(st.integers(1, 3000), min_size=1, max_size=10),
    faults=fault_sets(),
)
def test_gzip_streams_are_decided_on_the_decoded_bytes(cuts: list[int], faults: list[str]) -> None:
    text = fixture_body("anthropic/text.sse")
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    pieces = split(text, cuts)
    raw = [
        comp.compress(p) + (comp.flush() if i == len(pieces) - 1 else comp.flush(zlib.Z_SYNC_FLUSH))
        for i, p in enumerate(pieces)
    ]
    headers = (*HEAD, ("content-encoding", "gzip"))
    end = End(0.5)
    try:
        final_schedule(timed(raw), faults, end, headers)
    except ConfigError:
        assume(False)
    feed(timed(raw), faults, end, headers)


# ------------------------------------------------------------------------- how early


def events(n: int) -> list[tuple[float, bytes]]:
    return timed([f'data: {{"n": {i}}}\n\n'.encode() for i in range(1, n + 1)])


def test_without_a_pending_fault_every_chunk_is_known_when_it_arrives() -> None:
    chunks = events(6)
    seen, _ = feed(chunks, ["duplicate:event=5", "slow:bps=100000"], End(0.1))
    assert [len(b"".join(s.data for s in k.steps)) for k in seen][:4] == [
        sum(len(d) for _, d in chunks[: i + 1]) for i in range(4)
    ]
    assert all(k.end is None for k in seen)


def test_a_truncated_stream_ends_when_the_next_chunk_arrives() -> None:
    seen, final = feed(events(8), ["truncate:after=3"], End(0.1))
    assert [k.end is not None for k in seen] == [False, False, False] + [True] * 5
    assert isinstance(final.end, Abort) and final.end.at == pytest.approx(0.04)  # chunk 4's time
    seen, final = feed(events(8), ["error:after=2,provider=openai"], End(0.1))
    assert seen[2].end == final.end and isinstance(final.end, Close)


def test_a_fault_on_event_n_holds_back_from_its_start_until_it_is_complete() -> None:
    chunks = [(0.01, b'data: {"n": 1}\n\ndata: {"n"'), (0.02, b": 2}\n\n"), (0.03, b"data: 3\n\n")]
    seen, _ = feed(chunks, ["drop:event=2"], End(0.1))
    assert [s.data for s in seen[0].steps] == []  # chunk 1 carries the start of event 2
    assert b"".join(s.data for s in seen[1].steps) == b'data: {"n": 1}\n\n'
    assert b"".join(s.data for s in seen[2].steps) == b'data: {"n": 1}\n\ndata: 3\n\n'


def test_a_fault_on_the_last_event_holds_back_only_the_latest_event() -> None:
    seen, final = feed(events(5), ["drop:event=last"], End(0.1))
    assert [len(k.steps) for k in seen] == [0, 1, 2, 3, 4]
    assert b"data: " + b'{"n": 5}' not in final.body and len(final.steps) == 4


def test_status_waits_for_the_provider_then_answers() -> None:
    seen, final = feed(events(7), ["status:429"], End(0.1))
    assert [k.schedule is not None for k in seen] == [False] * 4 + [True] * 3
    assert final.status == 429 and seen[4].end == final.end
    seen, _ = feed(events(3), ["status:500,provider=anthropic"], End(0.1))
    assert seen[0].schedule is not None and seen[0].schedule.status == 500


def test_a_body_with_content_length_is_decided_at_its_end() -> None:
    headers = (("content-type", "text/event-stream"), ("content-length", "60"))
    seen, final = feed(events(4), ["truncate:after=2,end=close"], End(0.1), headers)
    assert all(k.schedule is None and not k.steps for k in seen)
    assert final.content_length == len(final.body)


def test_a_chunk_ending_in_cr_waits_for_the_next_byte() -> None:
    """``\r`` may be the first half of ``\r\n``: the event it seems to end is not known yet."""
    chunks = [(0.01, b"data: 1\r\n\r"), (0.02, b"\ndata: 2\r\n\r\n")]
    seen, final = feed(chunks, ["duplicate:event=1"], End(0.1))
    assert seen[0].steps == ()
    assert final.body == b"data: 1\r\n\r\n" * 2 + b"data: 2\r\n\r\n"


def test_two_faults_on_one_event_raise_as_the_replay_does() -> None:
    head = Response(200, "OK", headers=HEAD)
    live = LiveSchedule(head, faults=parse_faults(["drop:event=1", "corrupt:event=1"]), url=URL)
    for at, data in events(3):
        live.add(at, data)
    with pytest.raises(ConfigError, match="two faults change the same event"):
        live.known()
