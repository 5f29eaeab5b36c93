"""The replay server after 10,000 misbehaving clients: leaked tasks, sockets, connection objects and
memory, and whether it still serves.

    .venv/bin/python bench/bench_hardening.py [--clients 10000] [--round 500] [--misses 1000]
                                              [--json FILE]

The clients and the server process are tests/soak.py's (the same as tests/test_hardening.py, which
runs 700 of them): clients that vanish mid-stream (FIN or RST), stall with full socket buffers on
an 8 MiB body, send half a request, connect and leave, or pipeline and leave, ``--round`` at a time
on 127.0.0.1. The server (the replay server on the CLI's precise loop, log of plays capped at 1,000
like ``ssevcr replay``) runs in its own process and reports from inside its loop: tasks, open
connections and fds, live connection objects, RSS, and at each stall how many writes wait and the
largest buffer held for one client.

The baseline is the server after a warm-up round (caches filled, the 8 MiB body framed once):
leaks are what is left over it after every round. Then the server's memory after 1,000 distinct
1 MB misses, and after a 10 GB upload attempt (declared, and streamed chunked) against the default
64 MiB body limit. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from replay_helpers import raw_request  # noqa: E402
from soak import KINDS, Soak, SoakServer, distinct_misses, soak_cassette, upload  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--round", type=int, default=500, help="clients at once")
    parser.add_argument("--misses", type=int, default=1000, help="distinct 1 MB misses")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))

    print(
        f"# bench_hardening  {time.strftime('%Y-%m-%d')}  {os.cpu_count()} cores  "
        f"Python {platform.python_version()}  load average {os.getloadavg()[0]:.2f} at start"
    )
    cassette = soak_cassette()
    with SoakServer() as server:
        soak = Soak(server.host, server.port, cassette, seed=11)
        at_stall: list[tuple[int, dict[str, Any]]] = []

        async def on_stalled(stallers: int) -> None:
            at_stall.append(
                (stallers, await asyncio.get_running_loop().run_in_executor(None, server.stats))
            )

        def one_round(n: int) -> dict[str, Any]:
            asyncio.run(soak.round(n, on_stalled))
            stats: dict[str, Any] = server.idle()
            return stats

        before = one_round(min(args.round, 200))  # warm-up
        warm = sum(soak.stats.started.values())
        curve = [(0, before["rss_kib"])]
        started = time.monotonic()
        done = 0
        after = before
        while done < args.clients:
            n = min(args.round, args.clients - done)
            after = one_round(n)
            done += n
            curve.append((done, after["rss_kib"]))
        elapsed = time.monotonic() - started
        stream = cassette.interactions[0]
        answer = raw_request(server.url, stream.request)
        serves = (
            answer.status == 200
            and answer.end == "complete"
            and answer.body == stream.response.body
        )
        final = server.stats()

    kinds = {k: soak.stats.started[k] for k in KINDS}
    blocked = [s["paused"] >= n for n, s in at_stall]
    largest = max((s["largest_buffer"] for _, s in at_stall), default=0)
    results = {
        "clients": done,
        "warm_up": warm,
        "seconds": elapsed,
        "kinds": kinds,
        "client_errors": len(soak.stats.errors),
        "first_client_error": soak.stats.errors[0] if soak.stats.errors else "",
        "stalls": len(at_stall),
        "stalls_blocking_every_staller": sum(blocked),
        "largest_buffer_bytes": largest,
        "tasks_before": before["tasks"],
        "tasks_after": after["tasks"],
        "leaked_tasks": len(after["tasks"]) - len(before["tasks"]),
        "fds_before": before["fds"],
        "fds_after": after["fds"],
        "leaked_fds": after["fds"] - before["fds"],
        "open_connections_after": after["connections"],
        "live_connection_objects_after": after["live_connections"],
        "rss_before_kib": before["rss_kib"],
        "rss_after_kib": after["rss_kib"],
        "hwm_kib": final["hwm_kib"],
        "rss_curve_kib": curve,
        "server_errors": after["errors"],
        "requests": final["requests"],
        "serves_after": serves,
    }
    print(
        f"{done:,} clients in rounds of {args.round} ({elapsed:.1f} s, after a warm-up of {warm}; "
        "kinds incl. the warm-up): " + ", ".join(f"{k} {v}" for k, v in kinds.items())
    )
    print(
        f"  client-side errors (refused, reset before leaving): {len(soak.stats.errors)}"
        + (f"  first: {soak.stats.errors[0]}" if soak.stats.errors else "")
    )
    print(
        f"  stalls: {sum(blocked)} of {len(at_stall)} rounds had the server's writes waiting on "
        f"every staller; largest buffer held for one client {largest / 1024:.0f} KiB"
    )
    print(
        f"  tasks on the server's loop: {len(before['tasks'])} before, "
        f"{len(after['tasks'])} after; open fds {before['fds']} before, {after['fds']} after; "
        f"open connections after {after['connections']}; "
        f"live connection objects after {after['live_connections']}"
    )
    print(
        f"  server RSS: {before['rss_kib'] / 1024:.1f} MiB after the warm-up, "
        f"{after['rss_kib'] / 1024:.1f} MiB after {done:,} clients "
        f"({(after['rss_kib'] - before['rss_kib']) / 1024:+.1f} MiB), "
        f"peak {final['hwm_kib'] / 1024:.1f} MiB"
    )
    step = max(1, len(curve) // 5)
    print(
        "  RSS curve (clients: MiB): "
        + ", ".join(f"{n:,}: {kib / 1024:.1f}" for n, kib in curve[::step])
    )
    print(
        f"  server errors logged: {len(after['errors'])}; "
        f"serves a normal request afterwards: {serves}; requests answered: {final['requests']:,}"
    )
    results["misses"] = bench_misses(args.misses)
    results["upload"] = bench_upload()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def bench_misses(count: int) -> dict[str, Any]:
    """The server's memory after ``count`` distinct 1 MB misses (bodies a cache must not keep)."""
    with SoakServer(timing="instant") as server:
        distinct_misses(server.host, server.port, 30, 1 << 20)
        before = server.stats()
        started = time.monotonic()
        distinct_misses(server.host, server.port, count, 1 << 20, first=30)
        seconds = time.monotonic() - started
        after = server.stats()
    grown = (after["rss_kib"] - before["rss_kib"]) / 1024
    print(
        f"{count:,} distinct 1 MB misses ({seconds:.1f} s): "
        f"server RSS {before['rss_kib'] / 1024:.1f} -> {after['rss_kib'] / 1024:.1f} MiB "
        f"({grown:+.1f} MiB), peak {after['hwm_kib'] / 1024:.1f} MiB"
    )
    return {
        "count": count,
        "seconds": seconds,
        "rss_before_kib": before["rss_kib"],
        "rss_after_kib": after["rss_kib"],
        "hwm_kib": after["hwm_kib"],
    }


def bench_upload() -> dict[str, Any]:
    """A 10 GB upload, declared (Content-Length) and streamed (chunked), against the default
    64 MiB body limit: bytes taken before the 413, and the server's memory."""
    out: dict[str, Any] = {}
    with SoakServer(timing="instant") as server:
        before = server.stats()
        for kind in ("declared", "chunked"):
            started = time.monotonic()
            sent, reply = upload(server.host, server.port, 10 << 30, chunked=kind == "chunked")
            stats = server.idle()
            out[kind] = {
                "sent": sent,
                "seconds": time.monotonic() - started,
                "status": reply[:12].decode("latin-1"),
                "rss_kib": stats["rss_kib"],
                "hwm_kib": stats["hwm_kib"],
            }
            print(
                f"10 GB upload, {kind}: refused after {sent / 2**20:.0f} MiB ({reply[:12]!r}); "
                f"server RSS {before['rss_kib'] / 1024:.1f} -> {stats['rss_kib'] / 1024:.1f} MiB, "
                f"peak {stats['hwm_kib'] / 1024:.1f} MiB"
            )
    out["rss_before_kib"] = before["rss_kib"]
    return out


if __name__ == "__main__":
    main()
