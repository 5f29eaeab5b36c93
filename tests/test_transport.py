"""In-process replay through the real transport API: the official openai and anthropic SDKs (on
httpx2) and plain httpx/httpx2, sync and async, stream the example cassettes; faults surface as the
client library's own errors. Expected content is derived independently from the recorded bytes
with the parser, so the SDK's view is checked against ours."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
import replay_helpers

from ssevcr import NoMatchError, ReplayTransport, _store
from ssevcr._cassette import Cassette, End, Interaction, Request, Response
from ssevcr._sse import parse

EXAMPLES = Path(__file__).resolve().parent.parent / "cassettes" / "examples"


def load(name: str) -> Cassette:
    return _store.load(EXAMPLES / f"{name}.msgpack")


def params(cassette: Cassette) -> dict[str, Any]:
    return json.loads(cassette.interactions[0].request.body)  # type: ignore[no-any-return]


def expected(cassette: Cassette) -> tuple[str, dict[int, str]]:
    """Text and tool-call arguments (by index) derived from the recorded bytes by our parser."""
    text, args, _ = replay_helpers.expected(cassette.interactions[0].response.body)
    return text, args


def openai_client(transport: ReplayTransport, *, asynchronous: bool = False, **kw: Any) -> Any:
    kw.setdefault("max_retries", 0)
    if asynchronous:
        return openai.AsyncOpenAI(
            api_key="test", http_client=httpx2.AsyncClient(transport=transport), **kw
        )
    return openai.OpenAI(api_key="test", http_client=httpx2.Client(transport=transport), **kw)


def anthropic_client(transport: ReplayTransport, *, asynchronous: bool = False, **kw: Any) -> Any:
    kw.setdefault("max_retries", 0)
    if asynchronous:
        return anthropic.AsyncAnthropic(
            api_key="test", http_client=httpx2.AsyncClient(transport=transport), **kw
        )
    return anthropic.Anthropic(api_key="test", http_client=httpx2.Client(transport=transport), **kw)


def consume(
    kind: str, stream: Any, arrivals: list[float] | None = None
) -> tuple[str, dict[int, str]]:
    text, args = "", defaultdict(str)
    for item in stream:
        if arrivals is not None:
            arrivals.append(time.monotonic())
        text_part, arg_parts = _pieces(kind, item)
        text += text_part
        for k, v in arg_parts.items():
            args[k] += v
    return text, dict(args)


async def aconsume(
    kind: str, stream: Any, arrivals: list[float] | None = None
) -> tuple[str, dict[int, str]]:
    text, args = "", defaultdict(str)
    async for item in stream:
        if arrivals is not None:
            arrivals.append(time.monotonic())
        text_part, arg_parts = _pieces(kind, item)
        text += text_part
        for k, v in arg_parts.items():
            args[k] += v
    return text, dict(args)


def _pieces(kind: str, item: Any) -> tuple[str, dict[int, str]]:
    if kind == "chat":
        text, args = "", {}
        for choice in item.choices:
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                args[call.index] = (call.function.arguments or "") if call.function else ""
        return text, args
    if kind == "responses":
        if item.type == "response.output_text.delta":
            return item.delta, {}
        if item.type == "response.function_call_arguments.delta":
            return "", {item.output_index: item.delta}
        return "", {}
    if item.type == "content_block_delta":
        if item.delta.type == "text_delta":
            return item.delta.text, {}
        if item.delta.type == "input_json_delta":
            return "", {item.index: item.delta.partial_json}
    return "", {}


OPENAI_EXAMPLES = [
    ("openai-chat-text", "chat"),
    ("openai-chat-tool-calls", "chat"),
    ("openai-responses-text", "responses"),
    ("openai-responses-function-call", "responses"),
]
ANTHROPIC_EXAMPLES = ["anthropic-text", "anthropic-tool-use"]


def create(kind: str, client: Any, body: dict[str, Any]) -> Any:
    if kind == "chat":
        return client.chat.completions.create(**body)
    if kind == "responses":
        return client.responses.create(**body)
    return client.messages.create(**body)


@pytest.mark.parametrize(
    ("name", "kind"), OPENAI_EXAMPLES + [(n, "messages") for n in ANTHROPIC_EXAMPLES]
)
def test_sdk_sync_assembles_the_recorded_content(name: str, kind: str) -> None:
    cassette = load(name)
    want_text, want_args = expected(cassette)
    assert want_text or want_args
    transport = ReplayTransport(cassette, timing="instant")
    client = (anthropic_client if kind == "messages" else openai_client)(transport)
    text, args = consume(kind, create(kind, client, params(cassette)))
    assert text == want_text
    assert args == want_args
    for value in args.values():  # tool arguments are whole JSON documents
        json.loads(value)
    assert [p.index for p in transport.player.plays] == [0]


@pytest.mark.parametrize(
    ("name", "kind"), OPENAI_EXAMPLES + [(n, "messages") for n in ANTHROPIC_EXAMPLES]
)
async def test_sdk_async_assembles_the_recorded_content(name: str, kind: str) -> None:
    cassette = load(name)
    transport = ReplayTransport(cassette, timing="instant")
    client = (anthropic_client if kind == "messages" else openai_client)(
        transport, asynchronous=True
    )
    got = await aconsume(kind, await create(kind, client, params(cassette)))
    assert got == expected(cassette)


def test_anthropic_stream_helper_gets_the_tool_inputs() -> None:
    cassette = load("anthropic-tool-use")
    body = params(cassette)
    body.pop("stream")
    client = anthropic_client(ReplayTransport(cassette, timing="instant"))
    with client.messages.stream(**body) as stream:
        message = stream.get_final_message()
    inputs = [b.input for b in message.content if b.type == "tool_use"]
    _, args = expected(cassette)
    assert message.stop_reason == "tool_use"
    assert inputs[-1] == json.loads(args[max(args)])


def event_times(cassette: Cassette) -> list[float]:
    """When each event's last byte was recorded."""
    resp = cassette.interactions[0].response
    ends, acc = [], 0
    for size in resp.chunk_sizes:
        acc += size
        ends.append(acc)
    out = []
    for e in parse(resp.body).events:
        i = next(i for i, end in enumerate(ends) if end >= e.end)
        out.append(resp.chunk_at[i])
    return out


def assert_on_time(arrivals: list[float], start: float, deadlines: list[float]) -> None:
    """Each event reaches the SDK no earlier than its recorded time after the request (exact:
    deadlines are absolute; a burst would be up to 1.3 s early), and on time: late by about the
    same (the SDK's own time before the request reaches the transport), give or take a loaded
    machine's scheduling delays. The tight figures are measured in bench/bench_core.py."""
    assert len(arrivals) == len(deadlines)
    lateness = [a - start - d for a, d in zip(arrivals, deadlines, strict=True)]
    assert min(lateness) > -0.001  # never early
    assert statistics.median([x - min(lateness) for x in lateness]) < 0.015


def test_sync_sdk_observes_the_recorded_gaps() -> None:
    cassette = load("openai-chat-text")
    arrivals: list[float] = []
    recorded = event_times(cassette)[:-1]  # the SDK does not yield [DONE]
    client = openai_client(ReplayTransport(cassette, timing="original"))
    start = time.monotonic()
    consume("chat", create("chat", client, params(cassette)), arrivals)
    assert_on_time(arrivals, start, recorded)


async def test_async_sdk_observes_the_recorded_gaps_and_scale() -> None:
    cassette = load("anthropic-tool-use")
    recorded = [
        t
        for t, e in zip(
            event_times(cassette), parse(cassette.interactions[0].response.body).events, strict=True
        )
        if e.type != "ping"
    ]
    for scale in (1.0, 0.5):
        arrivals: list[float] = []
        client = anthropic_client(
            ReplayTransport(cassette, timing=f"scale:{scale}"), asynchronous=True
        )
        start = time.monotonic()
        await aconsume("messages", await create("messages", client, params(cassette)), arrivals)
        assert_on_time(arrivals, start, [t * scale for t in recorded])


# ------------------------------------------------------------------ faults, as the SDK sees them


def test_truncate_abort_raises_the_sdk_connection_error_after_three_events() -> None:
    cassette = load("openai-chat-text")
    client = openai_client(
        ReplayTransport(cassette, timing="instant", faults=["truncate:after=3,end=abort"])
    )
    seen = 0
    with pytest.raises(openai.APIConnectionError) as info:
        for _ in create("chat", client, params(cassette)):
            seen += 1
    assert seen == 3
    assert isinstance(info.value.__cause__, httpx2.RemoteProtocolError)


def chain(exc: BaseException | None) -> list[type[BaseException]]:
    out = []
    while exc is not None:
        out.append(type(exc))
        exc = exc.__cause__ or exc.__context__
    return out


def test_truncate_reset_raises_read_error() -> None:
    # the anthropic SDK lets the transport's ReadError through mid-stream (openai wraps it)
    cassette = load("anthropic-text")
    client = anthropic_client(
        ReplayTransport(cassette, timing="instant", faults=["truncate:after=2,end=reset"])
    )
    seen = 0
    with pytest.raises(Exception) as info:
        for _ in create("messages", client, params(cassette)):
            seen += 1
    assert httpx2.ReadError in chain(info.value)
    assert seen == 2


def test_drop_last_ends_an_openai_stream_without_done() -> None:
    cassette = load("openai-chat-text")
    with (
        httpx2.Client(
            transport=ReplayTransport(cassette, timing="instant", faults=["drop:event=last"])
        ) as c,
        c.stream(
            "POST",
            "https://api.openai.com/v1/chat/completions",
            content=cassette.interactions[0].request.body,
        ) as r,
    ):
        lines = list(r.iter_lines())
    assert "data: [DONE]" not in lines
    assert (
        sum(line.startswith("data: ") for line in lines)
        == len(parse(cassette.interactions[0].response.body).events) - 1
    )


def test_corrupt_json_makes_the_sdk_raise_a_decode_error() -> None:
    cassette = load("openai-chat-text")
    client = openai_client(
        ReplayTransport(cassette, timing="instant", faults=["corrupt:event=2,how=json"])
    )
    seen = 0
    with pytest.raises(json.JSONDecodeError):
        for _ in create("chat", client, params(cassette)):
            seen += 1
    assert seen == 1


def test_stall_forever_times_out_at_the_read_timeout() -> None:
    cassette = load("openai-chat-text")
    client = openai_client(
        ReplayTransport(cassette, timing="instant", faults=["stall:before=2,for=forever"]),
        timeout=httpx2.Timeout(10, read=0.5),
    )
    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        list(create("chat", client, params(cassette)))
    assert 0.45 < time.monotonic() - start < 2.0


async def test_async_stall_longer_than_the_read_timeout_times_out() -> None:
    cassette = load("anthropic-text")
    client = anthropic_client(
        ReplayTransport(cassette, timing="instant", faults=["stall:before=3,for=5s"]),
        asynchronous=True,
        timeout=httpx2.Timeout(10, read=0.3),
    )
    start = time.monotonic()
    with pytest.raises(Exception) as info:
        await aconsume("messages", await create("messages", client, params(cassette)))
    assert httpx2.ReadTimeout in chain(info.value)
    assert 0.25 < time.monotonic() - start < 2.0


def test_injected_provider_errors_raise_the_sdk_api_errors() -> None:
    cassette = load("openai-chat-text")
    client = openai_client(ReplayTransport(cassette, timing="instant", faults=["error:after=4"]))
    with pytest.raises(openai.APIError, match="server had an error"):
        list(create("chat", client, params(cassette)))
    cassette = load("anthropic-text")
    client = anthropic_client(ReplayTransport(cassette, timing="instant", faults=["error:after=2"]))
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        list(create("messages", client, params(cassette)))


def test_recorded_midstream_error_is_raised_by_the_sdk() -> None:
    cassette = load("groq-error-midstream")
    client = openai_client(
        ReplayTransport(cassette, timing="instant"), base_url="https://api.groq.com/openai/v1"
    )
    with pytest.raises(openai.APIError, match="Tool choice is required"):
        list(create("chat", client, params(cassette)))


def test_status_429_is_a_rate_limit_error_and_times_lets_the_retry_succeed() -> None:
    cassette = load("openai-chat-text")
    client = openai_client(ReplayTransport(cassette, timing="instant", faults=["status:429"]))
    with pytest.raises(openai.RateLimitError):
        create("chat", client, params(cassette))
    transport = ReplayTransport(
        cassette, timing="instant", faults=["status:429,times=1,retry_after=50ms"]
    )
    client = openai_client(transport, max_retries=1)
    text, _ = consume("chat", create("chat", client, params(cassette)))
    assert text == expected(cassette)[0]
    assert [p.schedule.status for p in transport.player.plays] == [429, 200]


@pytest.mark.parametrize("spec", ["rechunk:size=1", "rechunk:hostile", "rechunk:random"])
def test_rechunked_streams_still_assemble_exactly(spec: str) -> None:
    for name, kind in (("openai-chat-tool-calls", "chat"), ("anthropic-tool-use", "messages")):
        cassette = load(name)
        transport = ReplayTransport(cassette, timing="instant", faults=[spec])
        client = (anthropic_client if kind == "messages" else openai_client)(transport)
        assert consume(kind, create(kind, client, params(cassette))) == expected(cassette)


# ------------------------------------------------------------------ plain httpx and httpx2, bytes


@pytest.mark.parametrize("mod", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_plain_clients_get_the_exact_bytes_status_and_headers(mod: Any) -> None:
    cassette = load("gemini-text")
    inter = cassette.interactions[0]
    with (
        mod.Client(transport=ReplayTransport(cassette, timing="instant")) as client,
        client.stream(inter.request.method, inter.request.url, content=inter.request.body) as r,
    ):
        raw = b"".join(r.iter_raw())
    assert raw == inter.response.body
    assert r.status_code == inter.response.status
    assert r.headers["content-type"] == inter.response.header("content-type")
    assert r.http_version == "HTTP/1.1"


@pytest.mark.parametrize("mod", [httpx, httpx2], ids=["httpx", "httpx2"])
async def test_plain_async_clients_and_their_exceptions(mod: Any) -> None:
    cassette = load("openai-chat-text")
    inter = cassette.interactions[0]
    transport = ReplayTransport(
        cassette, timing="instant", faults=["truncate:after=2,end=abort"], repeat=True
    )
    async with mod.AsyncClient(transport=transport) as client:
        async with client.stream("POST", inter.request.url, content=inter.request.body) as r:
            got = b""
            with pytest.raises(mod.RemoteProtocolError):
                async for part in r.aiter_raw():
                    got += part
        assert got == inter.response.body[: parse(inter.response.body).events[1].end]


# ------------------------------------------------------------------ matching


def test_a_miss_names_the_closest_request_and_what_differed() -> None:
    cassette = load("openai-chat-text")
    body = params(cassette)
    body["messages"][0]["content"] = "Something else entirely"
    transport = ReplayTransport(cassette, timing="instant")
    with httpx2.Client(transport=transport) as client, pytest.raises(NoMatchError) as info:
        client.post("http://localhost:9/v1/chat/completions", json=body)
    message = str(info.value)
    assert "closest: #1 POST https://api.openai.com/v1/chat/completions" in message
    assert "body $.messages[0].content" in message and "Something else entirely" in message
    assert transport.player.misses and transport.player.plays == []


def test_each_interaction_plays_once_in_a_test_unless_repeats_are_allowed() -> None:
    cassette = load("gemini-text")
    inter = cassette.interactions[0]
    once = ReplayTransport(cassette, timing="instant")
    with httpx2.Client(transport=once) as client:
        client.post(inter.request.url, content=inter.request.body)
        with pytest.raises(NoMatchError, match="already played"):
            client.post(inter.request.url, content=inter.request.body)
    again = ReplayTransport(cassette, timing="instant", repeat=True)
    with httpx2.Client(transport=again) as client:
        for _ in range(3):
            assert (
                client.post(inter.request.url, content=inter.request.body).content
                == inter.response.body
            )


def test_concurrent_async_streams_share_one_transport() -> None:
    cassette = load("openai-chat-text")
    transport = ReplayTransport(cassette, timing="scale:0.05", repeat=True)

    async def main() -> list[str]:
        client = openai_client(transport, asynchronous=True)
        results = await asyncio.gather(
            *[aconsume("chat", await create("chat", client, params(cassette))) for _ in range(20)]
        )
        return [text for text, _ in results]

    texts = asyncio.run(main())
    assert texts == [expected(cassette)[0]] * 20


# ----------------------------------------------------------- the stream loop, on a fake clock


class FakeClock:
    """A clock that only the replay's sleeps and the consumer's work move."""

    def __init__(self) -> None:
        self.now, self.reads, self.sleeps = 1000.0, 0, []

    def read(self) -> float:
        self.reads += 1
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def replay_on(
    fake: FakeClock,
    cassette: Cassette,
    timing: str,
    work: float = 0.0,
    read_timeout: float | None = None,
) -> tuple[list[tuple[float, bytes]], Any]:
    """Each chunk with the fake time it was handed over; ``work``: the consumer's time per chunk."""
    from ssevcr._transport import handle_sync

    inter = cassette.interactions[0]
    player = ReplayTransport(cassette, timing=timing).player
    request = httpx2.Request(
        inter.request.method,
        inter.request.url,
        content=inter.request.body,
        extensions={"timeout": {"read": read_timeout}},
    )
    response = handle_sync(player, request, clock=fake.read, sleep=fake.sleep)
    got = []
    for data in response.stream:
        got.append((fake.now, data))
        fake.now += work
    return got, player.plays[0].schedule


@pytest.mark.parametrize("name", ["openai-chat-text", "gemini-text"])
def test_instant_replay_never_waits_whatever_the_length(name: str) -> None:
    cassette = load(name)
    fake = FakeClock()
    got, _ = replay_on(fake, cassette, "instant", work=0.001)
    assert [d for _, d in got] == [c.data for c in cassette.interactions[0].response.chunks]
    assert fake.sleeps == [] and fake.reads == 1  # when the request arrived: nothing is ever late


@pytest.mark.parametrize("work", [0.0, 0.004, 0.05])
@pytest.mark.parametrize("timing", ["original", "scale:0.5"])
def test_every_chunk_goes_out_at_its_deadline_or_at_once_when_late(
    timing: str, work: float
) -> None:
    cassette = load("openai-chat-text")
    fake = FakeClock()
    t0 = fake.now
    got, schedule = replay_on(fake, cassette, timing, work=work)
    assert [d for _, d in got] == [s.data for s in schedule.steps]
    # each chunk is handed over at its absolute deadline, or as soon as the consumer asks for it
    # when that is later (a slow consumer): never early, never a wait it did not need
    ready = t0 + schedule.headers_at
    late = 0
    for (at, _), step in zip(got, schedule.steps, strict=True):
        assert at == pytest.approx(max(t0 + step.at, ready), abs=1e-9)
        late += ready > t0 + step.at
        ready = at + work
    assert late == 0 if work == 0 else late > 0  # the cassette's gaps are 0.9-65 ms
    assert fake.now == pytest.approx(max(t0 + schedule.end.at, ready), abs=1e-9)


@pytest.mark.parametrize("timing", ["instant", "original"])
async def test_the_async_stream_follows_the_same_deadlines(timing: str) -> None:
    from ssevcr._transport import handle_async

    cassette = load("openai-chat-text")
    inter = cassette.interactions[0]
    fake = FakeClock()

    async def sleep(seconds: float) -> None:
        fake.sleep(seconds)

    sync_clock = FakeClock()
    sync_got, _ = replay_on(sync_clock, cassette, timing)
    sync_sleeps = sync_clock.sleeps
    player = ReplayTransport(cassette, timing=timing).player
    request = httpx2.Request(inter.request.method, inter.request.url, content=inter.request.body)
    response = await handle_async(player, request, clock=fake.read, sleep=sleep)
    got = [(fake.now, data) async for data in response.stream]
    assert got == sync_got
    assert fake.sleeps == ([] if timing == "instant" else [pytest.approx(x) for x in sync_sleeps])


def test_a_gap_longer_than_the_read_timeout_times_out_after_the_read_timeout() -> None:
    cassette = load("openai-chat-text")
    fake = FakeClock()
    with pytest.raises(httpx2.ReadTimeout):
        replay_on(fake, cassette, "scale:100", read_timeout=0.5)
    assert fake.sleeps[-1] == pytest.approx(0.5)


def far_cassette(first: float, then: float) -> Cassette:
    """One SSE event at ``first``, a second at ``then`` (seconds after the request)."""
    resp = Response.from_chunks(
        200,
        [(first, b"data: 1\n\n"), (then, b"data: 2\n\n")],
        headers=(("content-type", "text/event-stream"),),
        headers_at=first,
        end=End(then),
    )
    return Cassette((Interaction(Request("GET", "http://api.test/s", (), b""), resp),))


def test_a_hang_times_out_one_read_timeout_after_the_client_began_to_wait() -> None:
    # the stall begins when event 3 would have been sent; the client's read began after event 2
    cassette = load("openai-chat-text")
    fake = FakeClock()
    got: list[tuple[float, bytes]] = []
    with pytest.raises(httpx2.ReadTimeout):
        inter = cassette.interactions[0]
        player = ReplayTransport(
            cassette, timing="original", faults=["stall:before=3,for=forever"]
        ).player
        request = httpx2.Request(
            "POST",
            inter.request.url,
            content=inter.request.body,
            extensions={"timeout": {"read": 2.0}},
        )
        from ssevcr._transport import handle_sync

        for data in handle_sync(player, request, clock=fake.read, sleep=fake.sleep).stream:
            got.append((fake.now, data))
    assert (
        b"".join(d for _, d in got)
        == inter.response.body[: parse(inter.response.body).events[1].end]
    )
    assert fake.now - got[-1][0] == pytest.approx(2.0)


def test_a_hang_without_a_read_timeout_ends_when_the_client_closes_the_stream() -> None:
    from ssevcr._transport import handle_sync

    cassette = load("openai-chat-text")
    inter = cassette.interactions[0]
    player = ReplayTransport(
        cassette, timing="instant", faults=["stall:before=2,for=forever"]
    ).player
    fake = FakeClock()
    request = httpx2.Request("POST", inter.request.url, content=inter.request.body)
    stream = handle_sync(player, request, clock=fake.read, sleep=fake.sleep).stream
    got = []
    for data in stream:
        got.append(data)
        stream.close()  # the client gives up while the replay hangs
    assert len(got) == 1 and fake.sleeps == []


@pytest.mark.parametrize("far", [1e10, 1e300, 1.7e308])
def test_far_times_wait_in_bounded_sleeps(far: float) -> None:
    """Any time a cassette can hold replays (issue: headers_at=1e300 overflowed time.sleep)."""
    from ssevcr._transport import MAX_SLEEP, handle_sync

    class GivesUp(Exception):
        pass

    fake = FakeClock()

    def sleep(seconds: float) -> None:
        assert 0 < seconds <= MAX_SLEEP
        fake.sleep(seconds)
        if len(fake.sleeps) == 50:
            raise GivesUp

    player = ReplayTransport(far_cassette(far, far), timing="original").player
    with pytest.raises(GivesUp):
        handle_sync(
            player, httpx2.Request("GET", "http://api.test/s"), clock=fake.read, sleep=sleep
        )
    assert fake.sleeps == [MAX_SLEEP] * 50


@pytest.mark.parametrize("mod", [httpx, httpx2], ids=["httpx", "httpx2"])
@pytest.mark.parametrize("first", [0.0, 1e300])
def test_far_times_time_out_cleanly_through_real_clients(mod: Any, first: float) -> None:
    with mod.Client(
        transport=ReplayTransport(far_cassette(first, 1e300)), timeout=mod.Timeout(5, read=0.2)
    ) as client:
        start = time.monotonic()
        with pytest.raises(mod.ReadTimeout), client.stream("GET", "http://api.test/s") as r:
            assert r.status_code == 200
            for _ in r.iter_raw():
                pass
        assert 0.15 < time.monotonic() - start < 3.0


async def test_far_times_without_a_read_timeout_wait_until_cancelled() -> None:
    async with httpx2.AsyncClient(
        transport=ReplayTransport(far_cassette(1e300, 1e300)), timeout=None
    ) as client:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.get("http://api.test/s"), 0.2)
