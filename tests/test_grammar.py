"""The timing and fault grammars: values for good specs, one clear ConfigError for bad ones."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssevcr._errors import ConfigError
from ssevcr._faults import (
    FAULT_NAMES,
    Corrupt,
    Drop,
    Duplicate,
    Header,
    InjectError,
    Rechunk,
    Scope,
    Slow,
    Stall,
    Status,
    Truncate,
    parse_fault,
    parse_faults,
)
from ssevcr._timing import HORIZON, Timing, parse_duration, parse_timing


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("1.5s", 1.5),
        ("2", 2.0),
        ("100us", 1e-4),
        (".5s", 0.5),
        ("1m", 60.0),
        (" 3 ms ", 0.003),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "-1s", "1h", "1.2.3s", "nan", "inf", "ms"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError, match="250ms"):
        parse_duration(text)


def test_timings() -> None:
    assert parse_timing(None) == Timing("original")
    assert parse_timing("instant") == Timing("instant")
    assert parse_timing("scale:0.1") == Timing("scale", factor=0.1)
    assert parse_timing("fixed:50ms") == Timing("fixed", gap=0.05)
    assert parse_timing("original", max_gap="1s") == Timing("original", max_gap=1.0)
    assert str(parse_timing("scale:2", max_gap=0.5)) == "scale:2 (max gap 500ms)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("scale:abc", "scale needs a number"),
        ("scale:-1", ">= 0"),
        ("fixed", "fixed needs a duration"),
        ("fixed:soon", "use a number with a unit"),
        ("slowly", "valid: original, instant, scale:F, fixed:DUR"),
        ("instant:3", "valid:"),
    ],
)
def test_bad_timings(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_timing(text)


def test_retime_modes() -> None:
    points = [0.4, 0.5, 0.5, 0.9, 3.0]
    assert parse_timing("original").retime(points) == {0.4: 0.4, 0.5: 0.5, 0.9: 0.9, 3.0: 3.0}
    assert set(parse_timing("instant").retime(points).values()) == {0.0}
    assert parse_timing("scale:0.5").retime(points)[3.0] == pytest.approx(1.5)
    fixed = parse_timing("fixed:10ms").retime(points)
    assert [fixed[t] for t in (0.4, 0.5, 0.9, 3.0)] == pytest.approx([0.01, 0.02, 0.03, 0.04])
    capped = parse_timing("original", max_gap="0.5s").retime(points)
    # 0 -> 0.4 kept, 0.9 -> 3.0 (2.1 s) shortened to 0.5 s
    assert capped == pytest.approx({0.4: 0.4, 0.5: 0.5, 0.9: 0.9, 3.0: 1.4})


def test_fault_values() -> None:
    assert parse_fault("truncate:after=3,end=abort") == Truncate(after=3, end="abort")
    assert parse_fault("truncate:byte=100") == Truncate(byte=100, end="abort")
    assert parse_fault("truncate:after=last,end=close") == Truncate(after="last", end="close")
    assert parse_fault("corrupt:event=2") == Corrupt(event=2, how="json")
    assert parse_fault("corrupt:event=2,how=utf8") == Corrupt(event=2, how="utf8")
    assert parse_fault("stall:before=2,for=forever") == Stall(before=2, duration=None)
    assert parse_fault("stall:before=1,for=1.5s") == Stall(before=1, duration=1.5)
    assert parse_fault("drop:event=last") == Drop(event="last")
    assert parse_fault("duplicate:event=4") == Duplicate(event=4)
    assert parse_fault("error:after=3") == InjectError(after=3)
    assert parse_fault("error:after=3,provider=anthropic") == InjectError(
        after=3, provider="anthropic"
    )
    assert parse_fault("status:429") == Status(code=429)
    assert parse_fault("status:503,retry_after=100ms") == Status(code=503, retry_after=0.1)
    assert parse_fault("rechunk:size=1") == Rechunk(how="size", size=1)
    assert parse_fault("rechunk:random") == Rechunk(how="random", max=16)
    assert parse_fault("rechunk:random,max=4") == Rechunk(how="random", max=4)
    assert parse_fault("rechunk:hostile") == Rechunk(how="hostile")
    assert parse_fault("slow:bps=2000") == Slow(bps=2000)
    assert str(parse_fault("slow:bps=2000")) == "slow:bps=2000"


def test_fault_scopes() -> None:
    assert parse_fault("status:429,on=2").scope == Scope(interaction=2)
    assert parse_fault("status:429,on=/v1/chat/*,times=1").scope == Scope(
        path="/v1/chat/*", times=1
    )
    scope = parse_fault("drop:event=1,on=/v1/chat/*").scope
    assert scope.matches(0, "/v1/chat/completions") and not scope.matches(0, "/v1/messages")
    assert Scope(interaction=2).matches(1, "/") and not Scope(interaction=2).matches(0, "/")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("explode", "valid faults: " + ", ".join(FAULT_NAMES)),
        ("truncate:after=-1", "after must be >= 0"),
        ("truncate", "exactly one of after=N"),
        ("truncate:after=1,byte=2", "exactly one of"),
        ("truncate:after=2,end=maybe", "end must be one of close, abort, reset"),
        ("corrupt:event=0", "event must be >= 1"),
        ("corrupt:event=x", "whole number"),
        ("corrupt:event=1,how=badly", "how must be one of json, utf8, bytes"),
        ("stall:before=2", "stall needs for="),
        ("stall:before=2,for=later", "use a number with a unit"),
        ("drop:evnt=1", "unknown key 'evnt'; drop takes event, on, times"),
        ("status", "status needs a code"),
        ("status:abc", "whole number"),
        ("status:700", "HTTP status"),
        ("rechunk", "exactly one of size=N, random or hostile"),
        ("rechunk:size=0", "size must be >= 1"),
        ("rechunk:random,hostile", "exactly one of"),
        ("slow:bps=0", "bps must be >= 1"),
        ("drop:event=1,,on=2", "empty item"),
        ("drop:event=1,event=2", "given twice"),
        ("error:after=1,provider=acme", "provider must be one of"),
        ("drop:event=1,on=zero", "on must be a whole number"),
    ],
)
def test_bad_faults(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_fault(text)
    assert message in str(info.value)
    assert text.strip() in str(info.value) or "unknown fault" in str(info.value)


def test_parse_faults_accepts_one_string_or_many() -> None:
    assert parse_faults(None) == ()
    assert parse_faults("drop:event=1") == (Drop(event=1),)
    assert len(parse_faults(["drop:event=1", parse_fault("status:500")])) == 2


FINITE = st.floats(0, sys.float_info.max, allow_nan=False, allow_infinity=False)
TIMINGS = st.one_of(
    st.sampled_from([Timing(), Timing("instant")]),
    st.builds(lambda f: Timing("scale", factor=f), FINITE),
    st.builds(lambda g: Timing("fixed", gap=g), FINITE),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(FINITE, max_size=8), TIMINGS, st.one_of(st.none(), FINITE))
def test_any_finite_time_retimes_to_a_finite_time_in_order(
    times: list[float], timing: Timing, cap: float | None
) -> None:
    """1e300 x 1e10 overflows to inf (and inf - inf under --max-gap is NaN): every replay time
    stays in [0, HORIZON] and keeps the recorded order."""
    mapped = timing.with_max_gap(cap).retime(times)
    replay = [mapped[t] for t in sorted(set(times))]
    assert all(0 <= t <= HORIZON for t in replay)
    assert replay == sorted(replay)


def test_durations_as_long_as_a_float_holds_parse_and_infinite_ones_do_not() -> None:
    assert parse_duration("9" * 300 + "s") == pytest.approx(1e300)
    for text in ("9" * 400 + "s", "9" * 307 + "m"):  # inf
        with pytest.raises(ConfigError, match="not a finite number"):
            parse_duration(text)
    assert parse_timing("scale:1e300").retime([1e300]) == {1e300: HORIZON}


def test_header_and_seeded_rechunk_values() -> None:
    assert parse_fault("header:content-type=text/plain") == Header(
        name="content-type", value="text/plain"
    )
    assert parse_fault("header:Content-Type=text/plain; charset=utf-8") == Header(
        name="content-type", value="text/plain; charset=utf-8"
    )
    assert parse_fault("header:drop=Content-Type") == Header(name="content-type", action="drop")
    assert parse_fault("header:content-length") == Header(name="content-length", action="length")
    assert parse_fault("header:content-encoding=gzip,on=2").scope == Scope(interaction=2)
    assert parse_fault("rechunk:random,seed=3") == Rechunk(how="random", seed=3)
    assert parse_fault("rechunk:random,seed=3,max=4") == Rechunk(how="random", seed=3, max=4)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("header", "header takes one of NAME=VALUE, drop=NAME or content-length"),
        ("header:a=1,b=2", "header takes one of"),
        ("header:content-type", "header takes one of"),
        ("header:transfer-encoding=gzip", "the replay writes transfer-encoding itself"),
        ("header:drop=connection", "the replay writes connection itself"),
        ("header:content-length=5", "takes no value"),
        ("header:bad name=x", "header name is not a token"),
        ("header:x-a=\x01", "control bytes"),
        ("header:drop=", "header name is not a token"),
        ("rechunk:size=2,seed=1", "seed goes with rechunk:random"),
        ("rechunk:random,seed=-1", "seed must be >= 0"),
    ],
)
def test_bad_header_and_rechunk_faults(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="bad fault") as info:
        parse_fault(text)
    assert message in str(info.value)
