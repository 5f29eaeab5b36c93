"""litellm's aiohttp path, recorded and replayed in process (run by tests/netns_cases.py inside a
network namespace, as a child process: litellm starts threads and patches logging at import).

    python tests/litellm_scenario.py TMPDIR     -> one JSON line on stdout

Records ``litellm.acompletion(..., stream=True)`` against the local upstream of
tests/upstream.py, stops it, replays against a capture server (which must see nothing), then
replays with a fault and reports the exception chain.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from client_helpers import FIXTURE, CaptureServer
from upstream import Upstream, fixture_body

import ssevcr
from ssevcr._sse import parse


def expected_text() -> str:
    parts = []
    for event in parse(fixture_body(FIXTURE)).events:
        if event.data.startswith("{"):
            choices = json.loads(event.data)["choices"]
            if choices:
                parts.append(choices[0]["delta"].get("content") or "")
    return "".join(parts)


async def chat(base_url: str) -> str:
    import litellm

    stream = await litellm.acompletion(
        model="openai/gpt-4o",
        api_base=base_url + "/v1",
        api_key="sk-test",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        num_retries=0,
        max_retries=0,
        extra_headers={"x-upstream-fixture": FIXTURE, "x-upstream-chunks": "10"},
    )
    parts = []
    async for chunk in stream:
        content = chunk.choices[0].delta.content if chunk.choices else None
        if content:
            parts.append(content)
    return "".join(parts)


def chain(error: BaseException | None) -> list[str]:
    names: list[str] = []
    while error is not None and len(names) < 20:
        names.append(type(error).__name__)
        error = error.__cause__ or error.__context__
    return names


def main() -> None:
    folder = Path(sys.argv[1])
    path = folder / "litellm.msgpack"
    started = time.monotonic()
    import litellm  # the cost map fetch happens here (no network in the namespace)

    litellm.suppress_debug_info = True
    report: dict[str, object] = {"expected_text": expected_text()}
    upstream = Upstream().start()
    with ssevcr.use_cassette(path, record="once"):
        report["recorded_text"] = asyncio.run(chat(upstream.url))
    report["upstream_requests"] = len(upstream.exchanges)
    upstream.stop()
    with CaptureServer() as capture:
        with ssevcr.use_cassette(path) as cas:
            report["replayed_text"] = asyncio.run(chat(capture.url))
        report["plays"], report["misses"] = len(cas.plays), len(cas.misses)
        report["blocked"] = cas.blocked
        with ssevcr.use_cassette(path, faults=["truncate:after=3,end=abort"]):
            try:
                asyncio.run(chat(capture.url))
                report["fault_chain"] = []
            except Exception as e:
                report["fault_chain"] = chain(e)
        report["capture_connections"] = capture.connections
    report["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
