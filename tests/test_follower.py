"""The schedule follower, on a fake clock: every step is handed over once, in order, never before
its deadline, due steps together (up to the batch size), then the end."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssevcr._follower import Finish, Follower, Head, Wait, Write
from ssevcr._schedule import Abort, Close, Hang, Reset, Schedule, Send


def schedule(steps: list[tuple[float, bytes]], end: object, headers_at: float = 0.1) -> Schedule:
    return Schedule(200, "OK", "HTTP/1.1", (), headers_at, tuple(Send(a, d) for a, d in steps), end)  # type: ignore[arg-type]


def run(
    s: Schedule, *, lag: float = 0.0, batch: int | None = 64 << 10
) -> list[tuple[float, object]]:
    """Follow ``s`` on a fake clock that wakes ``lag`` seconds late; (time, action) pairs."""
    f = Follower(s, batch_bytes=batch)
    now, out = 0.0, []
    for _ in range(10_000):
        action = f.next(now)
        out.append((now, action))
        if isinstance(action, Wait):
            assert action.until > now
            now = action.until + lag
        elif isinstance(action, Finish):
            return out
    raise AssertionError("the follower never finished")


def test_head_then_steps_at_their_deadlines_then_the_end() -> None:
    s = schedule([(0.2, b"a"), (0.3, b"bb"), (0.3, b"c")], Close(0.5))
    got = [(t, a) for t, a in run(s) if not isinstance(a, Wait)]
    assert got == [
        (0.1, Head()),
        (0.2, Write(0, 1, 1)),
        (0.3, Write(1, 3, 3)),  # due together: one write
        (0.5, Finish(Close(0.5))),
    ]


def test_instant_replay_is_one_write() -> None:
    s = schedule([(0.0, b"x" * 10)] * 100, Close(0.0), headers_at=0.0)
    actions = [a for _, a in run(s)]
    assert actions == [Head(), Write(0, 100, 1000), Finish(Close(0.0))]


def test_batches_are_capped_but_a_large_step_is_still_one_write() -> None:
    s = schedule([(0.0, b"x" * 40), (0.0, b"y" * 40), (0.0, b"z" * 200)], Close(0.0), 0.0)
    writes = [a for _, a in run(s, batch=100) if isinstance(a, Write)]
    assert writes == [Write(0, 2, 80), Write(2, 3, 200)]


@pytest.mark.parametrize("end", [Close(1.0), Abort(1.0), Reset(1.0), Hang(1.0)])
def test_every_end_comes_at_its_time(end: object) -> None:
    s = schedule([(0.5, b"a")], end)
    t, last = run(s)[-1]
    assert last == Finish(end) and t == 1.0  # type: ignore[arg-type]


def test_without_a_batch_size_every_due_step_is_one_write() -> None:
    s = schedule([(0.0, b"x" * 40)] * 3 + [(0.5, b"y")], Close(0.5), 0.0)
    writes = [a for _, a in run(s, batch=None) if isinstance(a, Write)]
    assert writes == [Write(0, 3, 120), Write(3, 4, 1)]


@given(
    st.lists(st.tuples(st.floats(0, 5), st.binary(min_size=1, max_size=50)), max_size=30),
    st.floats(0, 0.05),
    st.one_of(st.none(), st.integers(1, 200)),
)
def test_every_byte_once_in_order_never_early(
    steps: list[tuple[float, bytes]], lag: float, batch: int | None
) -> None:
    steps.sort(key=lambda p: p[0])
    end_at = max([a for a, _ in steps], default=0.0)
    s = schedule(steps, Close(end_at), headers_at=0.0)
    sent = b""
    for now, action in run(s, lag=lag, batch=batch):
        if isinstance(action, Write):
            part = s.steps[action.start : action.stop]
            assert all(step.at <= now for step in part)  # never early
            assert action.size == sum(len(p.data) for p in part)
            assert action.stop - action.start == 1 or batch is None or action.size <= batch
            if action.stop < len(s.steps):  # all that was due went, up to the batch size
                after = s.steps[action.stop]
                assert after.at > now or (
                    batch is not None and action.size + len(after.data) > batch
                )
            sent += b"".join(p.data for p in part)
    assert sent == b"".join(d for _, d in steps)


def test_a_batch_size_can_be_given_per_call() -> None:
    s = schedule([(0.0, b"x" * 40)] * 10, Close(0.0), 0.0)
    f = Follower(s, batch_bytes=100)
    assert f.next(0.0) == Head()
    assert f.next(0.0) == Write(0, 2, 80)
    assert f.next(0.0, 1_000) == Write(2, 10, 320)  # a socket that takes it all at once
    assert f.next(0.0) == Finish(Close(0.0))


@given(
    st.lists(st.tuples(st.floats(0, 2), st.binary(min_size=1, max_size=30)), max_size=40),
    st.integers(1, 100),
)
def test_per_call_bisection_matches_a_step_by_step_walk(
    steps: list[tuple[float, bytes]], batch: int
) -> None:
    """The follower's binary searches hand over what a walk step by step would."""
    s = schedule(sorted(steps), Close(2.5), 0.0)
    now, i, expected = 0.0, 0, []
    ats = [a for a, _ in sorted(steps)]
    sizes = [len(d) for _, d in sorted(steps)]
    while i < len(ats):
        if ats[i] > now:
            now = ats[i]
            continue
        j, size = i + 1, sizes[i]
        while j < len(ats) and ats[j] <= now and size + sizes[j] <= batch:
            size += sizes[j]
            j += 1
        expected.append(Write(i, j, size))
        i = j
    assert [a for _, a in run(s, batch=batch) if isinstance(a, Write)] == expected
