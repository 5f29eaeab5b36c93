"""The capture type (``ssevcr._capture``): one exchange being recorded, pure, times passed in.

Fed the real provider fixtures (tests/fixtures/providers) cut as the upstream cuts them; what an
SDK that stops at the provider's last event leaves unread is the body's framing, so its stream is
complete. The mitmproxy and in-process adapters that drive it are tested in test_record.py and
test_intercept.py.
"""

from __future__ import annotations

import gzip
import math
import threading

import pytest
from upstream import fixture_body, fixture_names, plan_chunks

from ssevcr._capture import DEFAULT_MAX_BODY, Capture, completed_stream
from ssevcr._cassette import Outcome, Request, Response
from ssevcr._redaction import Redaction
from ssevcr._sse import parse

SSE = (("content-type", "text/event-stream; charset=utf-8"),)
REQUEST = Request("POST", "https://api.example/v1/chat/completions", (("authorization", "k"),))


def captured(body_pieces: list[bytes], outcome: Outcome, headers=SSE, **kw: int) -> Capture:
    cap = Capture(REQUEST, **kw)
    cap.head(0.1, 200, reason="OK", headers=headers)
    for i, piece in enumerate(body_pieces):
        cap.chunk(0.2 + i * 0.01, piece)
    cap.finish(0.2 + len(body_pieces) * 0.01, outcome, "gone" if outcome != "complete" else None)
    return cap


def test_the_first_end_wins_and_nothing_after_it_is_kept() -> None:
    cap = Capture(REQUEST)
    cap.head(0.01, 200, headers=SSE)
    cap.chunk(0.02, b"data: a\n\n")
    assert cap.finish(0.03, Outcome.UPSTREAM_ERROR, "reset by peer")
    assert not cap.finish(0.04, Outcome.CLIENT_DISCONNECTED, "later")
    cap.chunk(0.05, b"data: b\n\n")
    inter = cap.interaction(Redaction())
    assert inter.response.end.outcome is Outcome.UPSTREAM_ERROR
    assert inter.response.end.error == "reset by peer"
    assert inter.response.body == b"data: a\n\n"
    assert inter.request.header("authorization") == "REDACTED"  # redaction is not optional
    assert cap.interaction(Redaction()) is inter  # built once


def _race(cap: Capture, outcomes: tuple[Outcome, ...]) -> list[Outcome]:
    won: list[Outcome] = []
    barrier = threading.Barrier(len(outcomes))

    def end(outcome: Outcome) -> None:
        barrier.wait()
        if cap.finish(1.0, outcome):
            won.append(outcome)

    threads = [threading.Thread(target=end, args=(o,)) for o in outcomes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won


def test_first_end_wins_across_threads() -> None:
    outcomes = (Outcome.COMPLETE, Outcome.UPSTREAM_ERROR, Outcome.CLIENT_DISCONNECTED) * 2
    for _ in range(50):
        cap = Capture(REQUEST)
        cap.head(0.0, 200)
        won = _race(cap, outcomes)
        assert len(won) == 1 and cap.end is not None and cap.end.outcome is won[0]


def test_times_are_clamped_into_a_valid_response() -> None:
    cap = Capture(REQUEST)
    cap.head(-0.5, 200)  # a clock read before the origin
    cap.chunk(0.3, b"a")
    cap.chunk(0.2, b"b")  # earlier than the one before
    cap.chunk(math.nan, b"c")
    cap.finish(0.1, Outcome.COMPLETE)  # before the last chunk
    resp = cap.interaction(Redaction()).response
    assert resp.headers_at == 0.0
    assert list(resp.chunk_at) == [0.3, 0.3, 0.3]
    assert resp.end.at == 0.3 and resp.body == b"abc"


def test_a_body_over_the_limit_is_cut_and_never_passed_off_as_whole() -> None:
    cap = Capture(REQUEST, max_body=10)
    cap.head(0.0, 200, headers=SSE)
    for i in range(1000):  # a stream that never ends: memory stays at the limit
        cap.chunk(i / 1000, b"data: x\n\n")
    assert cap.size == 10 and cap.overflow == 9 * 1000 - 10
    cap.finish(1.0, Outcome.COMPLETE)
    resp = cap.interaction(Redaction()).response
    assert resp.body == b"data: x\n\nd" and list(resp.chunk_sizes) == [9, 1]
    assert resp.end.outcome is Outcome.UPSTREAM_ERROR  # replayed as an aborted body
    assert "larger than the recording limit of 10 bytes" in (resp.end.error or "")
    assert "; complete" in (resp.end.error or "")
    assert DEFAULT_MAX_BODY == 64 << 20


@pytest.mark.parametrize("fixture", fixture_names())
def test_a_client_gone_right_after_the_providers_last_event_read_a_complete_stream(
    fixture: str,
) -> None:
    """What the SDKs do: openai breaks out at ``data: [DONE]``, a consumer of the anthropic SDK
    stops at ``message_stop``; the terminating chunk is never read. Cut the fixture as the
    upstream does and end it as a client that left at each event boundary would."""
    body = fixture_body(fixture)
    parsed = parse(body)
    events = [f for f in parsed.frames if hasattr(f, "type")]
    last_event_end = events[-1].end if events else 0
    for boundary in sorted({f.end for f in parsed.frames}):
        prefix = body[:boundary]
        cap = captured(plan_chunks(prefix, 6, "events"), Outcome.CLIENT_DISCONNECTED)
        end = cap.interaction(Redaction()).response.end
        terminal = boundary >= last_event_end and _ends_with_terminal(fixture)
        expected = Outcome.COMPLETE if terminal else Outcome.CLIENT_DISCONNECTED
        assert end.outcome is expected, (fixture, boundary, end)
        if terminal:
            assert end.error is None
    # cut inside an event: the client did not get it, whatever came before
    if len(body) > 3:
        cut = captured([body[:-3]], Outcome.CLIENT_DISCONNECTED)
        assert cut.interaction(Redaction()).response.end.outcome is Outcome.CLIENT_DISCONNECTED


def _ends_with_terminal(fixture: str) -> bool:
    last = parse(fixture_body(fixture)).events[-1]
    return last.data.strip() == "[DONE]" or last.type in (
        "message_stop",
        "response.completed",
        "response.failed",
    )


def test_the_fixtures_cover_both_kinds_of_last_event() -> None:
    kinds = {_ends_with_terminal(f) for f in fixture_names()}
    assert kinds == {True, False}  # gemini streams have no last event: they are read to the end


def test_upstream_errors_and_other_bodies_keep_their_outcome() -> None:
    done = fixture_body("openai-chat/text.sse")
    assert (
        captured([done], Outcome.UPSTREAM_ERROR).interaction(Redaction()).response.end.outcome
        is Outcome.UPSTREAM_ERROR
    )
    plain = captured([done], Outcome.CLIENT_DISCONNECTED, headers=(("content-type", "text/plain"),))
    assert plain.interaction(Redaction()).response.end.outcome is Outcome.CLIENT_DISCONNECTED


def test_a_gzip_stream_is_judged_on_its_decoded_events() -> None:
    body = gzip.compress(fixture_body("anthropic/text.sse"))
    headers = (*SSE, ("content-encoding", "gzip"))
    cap = captured([body[:7], body[7:]], Outcome.CLIENT_DISCONNECTED, headers=headers)
    assert cap.interaction(Redaction()).response.end.outcome is Outcome.COMPLETE
    damaged = Response.from_chunks(200, [(0.1, b"\x1f\x8b broken")], headers=headers)
    assert not completed_stream(damaged)


def test_an_interaction_needs_a_head_and_an_end() -> None:
    cap = Capture(REQUEST)
    with pytest.raises(RuntimeError):
        cap.interaction(Redaction())
    cap.head(0.0, 204)
    with pytest.raises(RuntimeError):
        cap.interaction(Redaction())
    cap.finish(0.1, Outcome.COMPLETE)
    assert cap.interaction(Redaction()).response.status == 204
