"""The pure WebSocket replay plan and its follower (ssevcr._conversation): anchors, timing
policies, every fault on the plan, fragmenting on character boundaries, and client matching."""

from __future__ import annotations

import json

import pytest

from ssevcr._cassette import WebSocket, WsClose, WsMessage
from ssevcr._conversation import Conversation, Finish, Out, Wait, build, mismatch
from ssevcr._faults import parse_faults
from ssevcr._timing import parse_timing


def server(at: float, kind: str, **extra: object) -> WsMessage:
    return WsMessage(at, False, json.dumps({"type": kind, **extra}).encode())


def client(at: float, kind: str) -> WsMessage:
    return WsMessage(at, True, json.dumps({"type": kind}).encode())


WS = WebSocket(
    (
        server(0.01, "session.created"),
        client(0.50, "response.create"),  # the user thought for half a second
        server(0.60, "response.created"),
        server(0.70, "response.output_text.delta", delta="héllo wörld"),
        server(0.80, "response.done"),
    ),
    WsClose(1.0, 1000, "", "client"),
)


def follow(
    talk: Conversation, client_at: dict[int, float], until: float = 10.0
) -> list[tuple[float, object]]:
    """Drive the follower like an adapter would: the k-th client message arrives at
    ``client_at[k]``; returns (time, Out or Finish) in order."""
    out: list[tuple[float, object]] = []
    now = 0.0
    expected = iter(talk.plan.expected)
    pending = sorted(client_at.items())
    while now <= until:
        action = talk.next(now)
        if isinstance(action, Out):
            out.append((now, action))
            continue
        if isinstance(action, Finish):
            out.append((now, action))
            return out
        assert isinstance(action, Wait)
        nxt = pending[0][1] if pending else None
        if action.until is not None and (nxt is None or action.until <= nxt):
            now = action.until
            continue
        if nxt is None:
            return out
        now = nxt
        pending.pop(0)
        m = next(expected)
        assert talk.received(now, m.data, m.binary) is None
    return out


def test_server_messages_wait_for_the_client_they_answer() -> None:
    plan = build(WS)
    assert [o.after for o in plan.messages] == [0, 1, 1, 1]
    fast = follow(Conversation(plan), {1: 0.2})
    slow = follow(Conversation(plan), {1: 3.0})
    # offsets from the client's message, however late it comes
    assert [round(t, 6) for t, _ in fast[:4]] == [0.01, 0.3, 0.4, 0.5]
    assert [round(t, 6) for t, _ in slow[:4]] == [0.01, 3.1, 3.2, 3.3]
    assert isinstance(fast[-1][1], Finish) and fast[-1][1].ending.how == "client"


def test_at_end_once_only_the_ending_is_left() -> None:
    """``at_end``: every server message handed out and the client message the ending follows
    heard (what an adapter asks when the client leaves before the recorded close comes)."""
    talk = Conversation(build(WS))
    assert isinstance(talk.next(0.01), Out) and not talk.at_end  # session.created
    assert isinstance(talk.next(0.02), Wait) and not talk.at_end  # the client's turn
    assert talk.received(0.2, WS.messages[1].data, False) is None
    for at in (0.3, 0.4, 0.5):
        assert not talk.at_end
        assert isinstance(talk.next(at), Out)
    assert talk.at_end  # response.done out; the client's close is due at 0.7
    assert talk.next(0.55) == Wait(0.7)
    cut = Conversation(build(WS, faults=parse_faults(["stall:before=3,for=forever"])))
    cut.next(0.01)
    cut.received(0.2, WS.messages[1].data, False)
    cut.next(0.3)
    assert cut.at_end and cut.plan.ending.how == "hang"  # (adapters do not count a hang as an end)


@pytest.mark.parametrize(
    ("timing", "times"),
    [("instant", [0.0, 0.2, 0.2, 0.2]), ("scale:0.5", [0.005, 0.25, 0.3, 0.35])],
)
def test_timing_policies_map_the_offsets(timing: str, times: list[float]) -> None:
    got = follow(Conversation(build(WS, timing=parse_timing(timing))), {1: 0.2})
    assert [round(t, 6) for t, _ in got[:4]] == times


def outs(spec: str) -> tuple[list[Out], object]:
    plan = build(WS, faults=parse_faults([spec]), seed=1)
    return list(plan.messages), plan


def test_event_faults_change_the_plan() -> None:
    msgs, _ = outs("drop:event=last")
    assert [o.number for o in msgs] == [1, 2, 3]
    msgs, _ = outs("duplicate:event=3")
    assert [o.data for o in msgs][2] == [o.data for o in msgs][3]
    msgs, _ = outs("corrupt:event=3,how=json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(msgs[2].data)
    msgs, _ = outs("corrupt:event=3,how=bytes")
    assert msgs[2].data != WS.messages[3].data and msgs[2].data.isascii()
    msgs, plan = outs("error:after=2")
    assert json.loads(msgs[-1].data)["type"] == "error" and len(msgs) == 3
    assert (plan.ending.how, plan.ending.code) == ("close", 1011)  # type: ignore[attr-defined]
    msgs, plan = outs("close:after=2,code=4001,reason=bye")
    assert len(msgs) == 2 and (plan.ending.how, plan.ending.code) == ("close", 4001)  # type: ignore[attr-defined]
    _, plan = outs("close:after=2,code=1006")
    assert plan.ending.how == "drop"  # type: ignore[attr-defined]
    _, plan = outs("truncate:after=1,end=reset")
    assert plan.ending.how == "reset"  # type: ignore[attr-defined]
    _, plan = outs("close:after=0,code=4000")
    assert plan.messages == () and plan.ending.code == 4000  # type: ignore[attr-defined]


def test_stalls_delay_the_rest_of_the_turn_or_end_it() -> None:
    plan = build(WS, faults=parse_faults(["stall:before=3,for=1s"]))
    got = follow(Conversation(plan), {1: 0.5})
    assert [round(t, 6) for t, _ in got[:4]] == [0.01, 0.6, 1.7, 1.8]
    plan = build(WS, faults=parse_faults(["stall:before=3,for=forever"]))
    assert len(plan.messages) == 2 and plan.ending.how == "hang"


def test_faults_that_do_not_apply_are_skipped_with_a_reason() -> None:
    plan = build(
        WS,
        faults=parse_faults(
            ["slow:bps=10", "truncate:byte=3", "drop:event=9", "corrupt:event=2,how=utf8"]
        ),
    )
    assert plan.messages == build(WS).messages and not plan.fired
    reasons = " | ".join(plan.skipped)
    assert "does not apply to WebSocket" in reasons and "byte offsets" in reasons
    assert "has 4 server messages" in reasons and "must be UTF-8" in reasons


@pytest.mark.parametrize("spec", ["rechunk:size=1", "rechunk:size=3", "rechunk:random,max=4"])
def test_rechunk_never_cuts_a_character(spec: str) -> None:
    plan = build(WS, faults=parse_faults([spec]), seed=3)
    for o in plan.messages:
        assert sum(o.pieces or (len(o.data),)) == len(o.data)
        pos = 0
        for size in o.pieces:
            o.data[pos : pos + size].decode("utf-8")  # each fragment whole characters
            pos += size
    assert len(plan.messages[2].pieces) > 3


def test_client_messages_match_by_type_or_canonically() -> None:
    rec = WsMessage(0.0, True, b'{"type":"response.create","response":{"a":1,"b":2}}')
    other = b'{"response":{"b":2,"a":3},"type":"response.create"}'
    assert mismatch(rec, other, False) is None  # the type is what counts by default
    problem = mismatch(rec, other, False, "json")
    assert problem is not None and "JSON" in problem
    assert (
        mismatch(rec, b'{"response":{"b":2,"a":1},"type":"response.create"}', False, "json") is None
    )
    audio = WsMessage(0.0, True, b"\x00\x01", binary=True)
    assert mismatch(audio, b"\x09", True) is None and mismatch(audio, b"\x09", True, "json")
    said = mismatch(rec, b"hello", False)
    assert said == "expected a message with type 'response.create', got the text message 'hello'"


def test_json_matching_names_the_first_differing_field_and_takes_redacted_as_any() -> None:
    rec = WsMessage(0.0, True, b'{"type":"session.update","session":{"voice":"alloy","k":1}}')
    problem = mismatch(
        rec, b'{"type":"session.update","session":{"voice":"verse","k":1}}', False, "json"
    )
    assert problem == (
        "expected a message with type 'session.update', "
        'the JSON differs at $.session.voice: recorded "alloy", got "verse"'
    )
    redacted = WsMessage(0.0, True, b'{"type":"session.update","client_secret":"REDACTED"}')
    live = b'{"client_secret":"ek_live_1234567890abcdef","type":"session.update"}'
    assert mismatch(redacted, live, False, "json") is None
    assert mismatch(redacted, live, False, "exact") is not None  # bytes: REDACTED is REDACTED


def test_exact_matching_compares_opcode_and_bytes() -> None:
    rec = WsMessage(0.0, True, b'{"type":"response.create"}')
    assert mismatch(rec, b'{"type":"response.create"}', False, "exact") is None
    spaced = mismatch(rec, b'{"type": "response.create"}', False, "exact")
    assert spaced is not None and "the bytes differ from byte 8: recorded 26, got 27" in spaced
    assert mismatch(rec, b'{"type":"response.create"}', True, "exact") is not None  # opcode
    audio = WsMessage(0.0, True, b"\x00\x01", binary=True)
    assert mismatch(audio, b"\x00\x01", True, "exact") is None
    assert mismatch(audio, b"\x00\x02", True, "exact") is not None


def test_the_plan_carries_the_matching_the_follower_uses() -> None:
    plan = build(WS, match="exact")
    talk = Conversation(plan)
    assert talk.match == "exact"
    problem = talk.received(0.1, b'{"type":"response.create"}', False)  # (recorded with a space)
    assert problem is not None and "bytes differ" in problem
    assert Conversation(build(WS)).received(0.1, b'{"type":"response.create"}', False) is None


def test_a_message_too_many_is_explained() -> None:
    talk = Conversation(build(WS))
    assert talk.received(0.1, b'{"type":"response.create"}', False) is None
    problem = talk.received(0.2, b'{"type":"response.cancel"}', False)
    assert problem is not None and "not in the recording (it has 1)" in problem
    assert "response.cancel" in problem
