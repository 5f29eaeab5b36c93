"""Synthesis and configured-response benchmarks.

    .venv/bin/python bench/bench_synth.py [--tokens 10000] [--rules 1000] [--json FILE]

1. ``synth`` of an answer of N tokens (the ``tokens`` split): the whole interaction, stream bytes,
   ids and timing profile included, per provider template; median of repeated runs.
   Target: under 50 ms for 10,000 tokens.
2. Configured responses: one request matched against R rules (a mix of exact, contains, regex
   and model matchers), the request a miss (every rule looked at) and a hit on the last rule;
   the indexed match against a plain scan of every rule (the baseline). Target: under 1 ms.

Prints figures (``--json FILE`` also writes them); asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ssevcr import _configured, _synth
from ssevcr._cassette import Request


def _median_ms(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def bench_synth(tokens: int) -> dict[str, float]:
    words = (" stream", " token", " by", " token", ",", " the", " answer", " arrives", " now")
    text = "".join(words[i % len(words)] for i in range(tokens))
    assert abs(len(_synth.split(text)) - tokens) <= tokens // 10
    content = _synth.Content(text=text)
    pieces = _synth.split(text)

    def naive() -> None:  # baseline: one json.dumps per chunk, what a hand-written mock does
        for p in pieces:
            json.dumps({"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1,
                        "model": "m", "choices": [{"index": 0, "delta": {"content": p},
                        "logprobs": None, "finish_reason": None}]},
                       separators=(",", ":"))  # fmt: skip

    out = {"baseline_json_dumps_per_chunk": _median_ms(naive, 7)}
    for name in ("openai-chat", "openai-responses", "anthropic", "gemini"):
        out[name] = _median_ms(lambda n=name: _synth.synthesize(n, content, seed=1), 7)
    return out


def _rules(n: int) -> str:
    kinds = [
        lambda i: f"{{exact: 'question number {i}'}}",
        lambda i: f"{{contains: 'topic{i}'}}",
        lambda i: f"{{regex: '^ask{i} .*$'}}",
        lambda i: f"{{model: 'model-{i}-*', contains: 'x{i}'}}",
    ]
    lines = [f"  - {{name: r{i}, match: {kinds[i % 4](i)}, content: ok}}" for i in range(n - 1)]
    lines.append("  - {name: last, match: {contains: 'needle'}, content: ok}")
    return "responses:\n" + "\n".join(lines) + "\n"


def bench_match(n: int) -> dict[str, float]:
    cfg = _configured.parse(_rules(n))
    messages = [
        {"role": "user", "content": "earlier question"},
        {"role": "assistant", "content": "ok"},
    ]

    def request(text: str) -> Request:
        body = {"model": "gpt-4o", "messages": [*messages, {"role": "user", "content": text}]}
        return Request("POST", "http://x/v1/chat/completions", (), json.dumps(body).encode())

    miss, hit = request("a question nobody configured, " * 4), request("find the needle please")
    vm, vh = _configured.view(miss), _configured.view(hit)
    assert cfg.match(vm) is None and cfg.match(vh) is not None
    out = {
        "view_ms": _median_ms(lambda: _configured.view(miss), 200),
        "miss_indexed_ms": _median_ms(lambda: cfg.match(vm), 200),
        "miss_scan_ms": _median_ms(lambda: cfg.match(vm, index=False), 200),
        "hit_last_indexed_ms": _median_ms(lambda: cfg.match(vh), 200),
        "hit_last_scan_ms": _median_ms(lambda: cfg.match(vh, index=False), 200),
        "miss_explained_ms": _median_ms(lambda: cfg.answer(miss), 50),
    }
    out["per_request_ms"] = out["view_ms"] + out["miss_indexed_ms"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tokens", type=int, default=10_000)
    ap.add_argument("--rules", type=int, default=1_000)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    synth = bench_synth(args.tokens)
    print(f"synth of a {args.tokens}-token answer (median ms, target < 50):")
    for name, ms in synth.items():
        print(f"  {name:18s} {ms:7.1f} ms")
    match = bench_match(args.rules)
    print(f"configured responses, {args.rules} rules (median ms, target < 1 per request):")
    for key, ms in match.items():
        print(f"  {key:22s} {ms:7.3f} ms")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"tokens": args.tokens, "rules": args.rules, "synth_ms": synth, "match_ms": match},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
