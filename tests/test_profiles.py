"""Timing profiles (``ttft:``, ``tps:``, ``jitter:``, ``profile:``): pure functions over event
times, and what a client observes through the SDK when a synthesized stream is replayed with
its real timing."""

from __future__ import annotations

import math
import random
import statistics
import time
from pathlib import Path

import httpx2
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ssevcr
from ssevcr import _profiles, _synth
from ssevcr._errors import ConfigError
from ssevcr._profiles import Fit, Jitter, Source, Tps, Ttft

EXAMPLES = Path(__file__).resolve().parent.parent / "cassettes" / "examples"

times_st = st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=50).map(sorted)


def test_grammar() -> None:
    assert _profiles.parse("ttft:2s+tps:20") == (Ttft(2.0), Tps(20.0))
    assert _profiles.parse(" jitter:25% + profile:x.msgpack ") == (
        Jitter(0.25),
        Source("x.msgpack"),
    )
    assert _profiles.parse("jitter:10") == (Jitter(0.1),)
    assert _profiles.describe(_profiles.parse("ttft:250ms+tps:40+jitter:5%")) == (
        "ttft:250ms+tps:40+jitter:5%"
    )
    for bad, message in [
        ("ttft", "expected"),
        ("tps:0", "bad tps"),
        ("tps:fast", "bad tps"),
        ("jitter:150%", "bad jitter"),
        ("speed:2", "unknown timing profile"),
        ("ttft:soon", "bad ttft"),
    ]:
        with pytest.raises(ConfigError, match=message):
            _profiles.parse(bad)


def test_ttft_moves_the_first_event_and_keeps_the_gaps() -> None:
    assert _profiles.apply(Ttft(2.0), [0.5, 0.6, 0.9]) == pytest.approx([2.0, 2.1, 2.4])


def test_tps_spaces_the_events_after_the_first() -> None:
    out = _profiles.apply([Ttft(1.0), Tps(20)], [0.3, 0.31, 0.5, 0.9])
    assert out == pytest.approx([1.0, 1.05, 1.10, 1.15])


@given(times_st, st.integers(0, 2**31), st.floats(0, 1))
def test_jitter_is_seeded_bounded_and_ordered(times: list[float], seed: int, frac: float) -> None:
    a = _profiles.apply(Jitter(frac), times, seed)
    assert a == _profiles.apply(Jitter(frac), times, seed)
    assert all(x <= y for x, y in zip(a, a[1:], strict=False))
    prev_old = prev_new = 0.0
    for old, new in zip(times, a, strict=True):
        gap, new_gap = old - prev_old, new - prev_new
        assert gap * (1 - frac) - 1e-9 <= new_gap <= gap * (1 + frac) + 1e-9
        prev_old, prev_new = old, new


def test_jitter_differs_between_seeds() -> None:
    times = [0.3 + 0.05 * i for i in range(40)]
    assert _profiles.apply(Jitter(0.3), times, 1) != _profiles.apply(Jitter(0.3), times, 2)


@given(times_st, st.lists(st.sampled_from(["ttft:1s", "tps:30", "jitter:40%"]), max_size=4))
def test_any_chain_keeps_times_ordered_and_counted(times: list[float], chain: list[str]) -> None:
    steps = _profiles.parse("+".join(chain)) if chain else ()
    out = _profiles.apply(steps, times, 3)
    assert len(out) == len(times)
    assert all(x <= y for x, y in zip(out, out[1:], strict=False)) and out[0] >= 0


def test_fit_recovers_a_log_normal_and_draws_from_it() -> None:
    rng = random.Random(5)
    times, t = [0.4], 0.4
    for i in range(4000):
        t += 0.0 if i % 10 == 0 else rng.lognormvariate(math.log(0.03), 0.5)
        times.append(t)
    fit = _profiles.fit(times)
    assert fit.ttft == 0.4
    assert fit.mu == pytest.approx(math.log(0.03), abs=0.03)
    assert fit.sigma == pytest.approx(0.5, abs=0.03)
    assert fit.p_zero == pytest.approx(0.1, abs=0.01)
    drawn = _profiles.apply(fit, [0.0] * 4001, seed=9)
    gaps = [b - a for a, b in zip(drawn, drawn[1:], strict=False)]
    assert drawn[0] == 0.4
    positive = [g for g in gaps if g > 0]
    assert statistics.median(positive) == pytest.approx(0.03, rel=0.05)
    assert sum(g == 0 for g in gaps) / len(gaps) == pytest.approx(0.1, abs=0.02)
    assert drawn == _profiles.apply(fit, [0.0] * 4001, seed=9)
    assert drawn != _profiles.apply(fit, [0.0] * 4001, seed=10)


def test_profile_source_must_be_resolved() -> None:
    with pytest.raises(ConfigError, match="not resolved"):
        _profiles.apply(Source("x"), [1.0])
    steps = _profiles.resolve(_profiles.parse("profile:x+tps:5"), lambda p: [0.5, 0.6, 0.8])
    assert isinstance(steps[0], Fit) and steps[0].ttft == 0.5 and steps[1] == Tps(5)
    with pytest.raises(ConfigError, match="without events"):
        _profiles.fit([])


def test_retime_points_for_a_recorded_response() -> None:
    headers, mapping, end = _profiles.retime_points(Ttft(0.1), 0.3, [0.5, 0.5, 0.7], 0.75)
    assert headers == pytest.approx(0.1)  # never after the first chunk
    assert mapping == pytest.approx({0.5: 0.1, 0.7: 0.3})
    assert end == pytest.approx(0.35)


def test_profile_of_a_cassette_through_the_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ssevcr import _mould
    from ssevcr.cli import main

    source = EXAMPLES / "openai-chat-text.msgpack"
    out = tmp_path / "p.msgpack"
    text = " ".join(["word"] * 300)
    r = CliRunner().invoke(
        main,
        ["synth", "--provider", "openai-chat", "--text", text, "--timing", f"profile:{source}",
         "--seed", "2", "-o", str(out)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    inter = ssevcr.load(out).interactions[0]
    recorded = ssevcr.load(source).interactions[0].response
    from ssevcr._store import profile_times

    assert inter.response.chunk_at[0] == pytest.approx(profile_times(str(source))[0], abs=1e-6)
    g_rec = [g for g in _mould.event_gaps(recorded) if g >= _profiles.ZERO_GAP]
    g_new = [g for g in _mould.event_gaps(inter.response) if g > 0]
    assert statistics.median(g_new) == pytest.approx(statistics.median(g_rec), rel=0.2)
    assert inter.meta["profile"].startswith("profile(ttft=")


def test_ttft_and_tps_observed_through_the_sdk() -> None:
    """ttft:2s+tps:20, replayed with its real timing through ReplayTransport into the openai
    SDK: the first chunk arrives ~2 s after the request, then ~20 chunks a second (tolerances
    for a loaded 2-core machine)."""
    content = _synth.Content(text=" ".join(f"w{i}" for i in range(24)))
    request = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "count"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    inter = _synth.synthesize(
        "openai-chat", content, request=request, split_by="words", profile="ttft:2s+tps:20"
    )
    transport = ssevcr.ReplayTransport(ssevcr.Cassette((inter,)), timing="original")
    client = openai.OpenAI(
        api_key="x", base_url="http://t/v1", http_client=httpx2.Client(transport=transport)
    )
    t0 = time.monotonic()
    arrivals = [time.monotonic() - t0 for _ in client.chat.completions.create(**request)]
    assert len(arrivals) == len(inter.response.chunk_sizes) - 1  # [DONE] is not a chunk object
    assert 1.95 <= arrivals[0] <= 2.4, arrivals[0]
    rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert rate == pytest.approx(20, rel=0.15), rate


# -- profiles in the --timing grammar (recordings replayed under a profile) -------------------


def test_the_timing_grammar_takes_profiles() -> None:
    from ssevcr._timing import parse_timing

    t = parse_timing("ttft:2s+tps:20")
    assert (t.mode, t.profile) == ("original", (Ttft(2.0), Tps(20.0)))
    assert str(t) == "ttft:2s+tps:20"
    t = parse_timing("ttft:1s+scale:0.5", max_gap="3s", seed=4)
    assert (t.mode, t.factor, t.profile, t.seed, t.max_gap) == ("scale", 0.5, (Ttft(1.0),), 4, 3.0)
    assert str(t) == "ttft:1s+scale:0.5 (max gap 3s)"
    # head 0.1, end 1.0, chunks 0.2 / 0.5 / 1.0: the first chunk at 1 s, then halved
    assert t.retime([0.1, 1.0, 0.2, 0.5, 1.0]) == pytest.approx(
        {0.1: 0.05, 0.2: 0.5, 0.5: 0.65, 1.0: 0.9}
    )
    assert parse_timing("scale:0.5").profile == () and parse_timing("jitter:10%", seed=3).seed == 3
    for bad, message in [
        ("instant+ttft:1s", "combines with original or scale:F, not instant"),
        ("fixed:1s+tps:3", "not fixed"),
        ("scale:2+original+ttft:1s", "at most one of original and scale:F"),
        ("ttft:soon", "bad ttft"),
        ("tps:0", "bad tps"),
        ("warp:9", "unknown timing 'warp:9'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_timing(bad)


def test_a_profile_reshapes_a_recorded_schedule_seeded() -> None:
    from ssevcr._schedule import build
    from ssevcr._timing import parse_timing

    response = ssevcr.load(EXAMPLES / "openai-chat-text.msgpack").interactions[0].response
    plain = build(response, timing=parse_timing("ttft:2s+tps:20"))
    sent = [step.at for step in plain.steps]
    assert sent[0] == pytest.approx(2.0) and plain.headers_at <= sent[0]
    assert b"".join(step.data for step in plain.steps) == response.body  # not a byte changed
    distinct = sorted(set(sent))
    assert distinct[1:] == pytest.approx([2.0 + k / 20 for k in range(1, len(distinct))])
    faulted = build(response, timing=parse_timing("ttft:2s+tps:20"), faults=[])
    assert [s.at for s in faulted.steps] == sent

    def times(seed: int) -> list[float]:
        return [s.at for s in build(response, timing=parse_timing("jitter:40%", seed=seed)).steps]

    assert times(1) == times(1) and times(1) != times(2)
    fitted = parse_timing("profile:x.msgpack").resolved(lambda _path: [0.7, 0.72, 0.8])
    assert isinstance(fitted.profile[0], Fit) and fitted.profile[0].ttft == 0.7
    assert build(response, timing=fitted).steps[0].at == pytest.approx(0.7)


def test_a_profile_through_use_cassette_and_an_httpx2_client(tmp_path: Path) -> None:
    """``timing="ttft:600ms+tps:50"`` on the recorded OpenAI stream, in process: the first chunk
    comes ~0.6 s after the request, the last ~(n - 1) / 50 s later (tolerances for a loaded
    2-core machine); ``profile:CASSETTE`` is read from the file named."""
    cassette = EXAMPLES / "openai-chat-text.msgpack"
    recorded = ssevcr.load(cassette).interactions[0]
    n = len(set(recorded.response.chunk_at))
    with ssevcr.use_cassette(cassette, timing="ttft:600ms+tps:50") as cas:
        t0 = time.monotonic()
        arrivals = []
        with (
            httpx2.Client() as client,
            client.stream("POST", recorded.request.url, content=recorded.request.body) as response,
        ):
            body = b""
            for piece in response.iter_raw():
                arrivals.append(time.monotonic() - t0)
                body += piece
    assert body == recorded.response.body and len(cas.plays) == 1
    assert 0.55 <= arrivals[0] <= 1.5, arrivals[0]
    expected_end = 0.6 + (n - 1) / 50
    assert 0.9 * expected_end <= arrivals[-1] <= expected_end + 1.5, (arrivals[-1], expected_end)
    with ssevcr.use_cassette(cassette, timing=f"profile:{cassette}", seed=5) as cas:
        assert str(cas.options.timing).startswith("profile(ttft=")
    with pytest.raises(ConfigError, match=r"timing profile:.*no such file"):
        ssevcr.use_cassette(cassette, timing=f"profile:{tmp_path / 'none.msgpack'}").__enter__()
