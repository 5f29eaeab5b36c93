"""Real clients under ``ssevcr sweep``: the consumers in examples/clients/ (the official SDKs,
the Vercel AI SDK, langchain-openai, litellm, httpx-sse, ``eventsource``, the chat page in
Chromium), each a real process reading a real replay server over a socket, inside a network
namespace whose only interface is loopback (``unshare -n``: no telemetry leaves the machine).

- Every consumer, on a clean replay (``--strict``: its request still matches the cassette),
  prints the text the cassette's bytes hold.
- The Node openai SDK waits through a stalled body despite ``timeout: 5000``: the sweep shows the
  long stalls as ``hang`` at ``--timeout 10s``; the Python SDK, same fault, raises at 5 s.
- The chat page swept in Chromium (Playwright): every lossy fault the page can see ends in the
  page's error state for that fault, every lossless one in the full text.
- docs/clients.md is what examples/clients/matrix.py renders from docs/clients.json.

A consumer whose runtime is missing (node and the npm packages of examples/clients/node, Debian's
chromium) skips locally and FAILS when ``CI`` is set: these tests must never vanish there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from replay_helpers import expected, interaction

from ssevcr._catalogue import catalogue
from ssevcr._store import read_any
from ssevcr._timing import parse_duration

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _load_matrix() -> Any:
    path = ROOT / "examples" / "clients" / "matrix.py"
    spec = importlib.util.spec_from_file_location("client_matrix", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


matrix = _load_matrix()


def _missing(reason: str) -> None:
    """A runtime is missing: skip locally, fail in CI (where node 20 and chromium are set up)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)", pytrace=False)
    pytest.skip(reason)


def need(client: Any) -> None:
    problem = matrix.netns_problem()
    if problem:
        _missing(f"the consumers run in a network namespace of their own: {problem}")
    if "node" in client.command[0]:
        problem = matrix.node_problem()
        if problem:
            _missing(problem)
    if client.cors and matrix.chromium_path() is None:
        _missing("no chromium (apt-get install chromium, or set SSEVCR_CHROMIUM)")


def sweep(tmp_path: Path, key: str, *args: str) -> tuple[int, dict[str, Any], str]:
    """``ssevcr sweep`` of one consumer: its exit code, its JSON report, its stdout."""
    client = matrix.BY_KEY[key]
    need(client)
    report = tmp_path / f"{key}.json"
    r = subprocess.run(
        matrix.ssevcr_argv(client, "sweep", "--json", str(report), *args),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert "Traceback" not in r.stderr, r.stderr
    assert report.exists(), r.stdout + r.stderr
    return r.returncode, json.loads(report.read_text()), r.stdout


def by_fault(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {run["fault"]: run for run in data["runs"]}


def text_of(client: Any) -> str:
    return str(expected(interaction(client.cassette).response.body)[0])


# ---------------------------------------------------------------------------------------------
# every consumer still speaks to its cassette


@pytest.mark.slow
@pytest.mark.parametrize("key", [c.key for c in matrix.CLIENTS])
def test_every_consumer_prints_the_cassettes_text(key: str) -> None:
    client = matrix.BY_KEY[key]
    need(client)
    r = subprocess.run(
        matrix.ssevcr_argv(client, "replay", "--timing", "instant", "--strict"),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "1 play, 0 misses" in r.stderr
    want = text_of(client) + "\n"
    assert r.stdout == ("done\n" + want if key == "browser" else want)


# ---------------------------------------------------------------------------------------------
# the Node SDKs' timeout does not cover the body


@pytest.mark.slow
def test_the_node_openai_sdk_hangs_on_a_stalled_body(tmp_path: Path) -> None:
    code, data, out = sweep(
        tmp_path, "openai-node", "--catalog", "quick", "-j", "2", "--timeout", "10s"
    )
    assert code == 1, out
    runs = by_fault(data)
    long_stalls = [f for f in runs if f.startswith("stall:") and f.endswith("for=30s")]
    assert sorted(long_stalls) == ["stall:before=1,for=30s", "stall:before=17,for=30s"]
    for fault in long_stalls:
        run = runs[fault]
        # the consumer set timeout: 5000, yet it was still waiting when the sweep killed it
        assert run["verdict"] == "hang" and run["timed_out"], run
        assert 9.5 < run["duration_s"] < 30, run
        assert [play["fired"] for play in run["plays"]] == [[fault]]  # the replay did stall
    hangs = sorted(f for f, run in runs.items() if run["verdict"] == "hang")
    assert hangs == sorted(long_stalls)  # nothing else outlived the timeout
    short = runs["stall:before=17,for=1s"]
    assert short["verdict"] == "ok" and short["exit_code"] == 0 and short["same_output"]
    assert "hang" in out and "stall:before=17,for=30s" in out


@pytest.mark.slow
def test_the_python_openai_sdk_raises_at_its_timeout_on_the_same_stall(tmp_path: Path) -> None:
    code, data, _ = sweep(
        tmp_path,
        "openai-python",
        "--catalog",
        "none",
        "--fault",
        "stall:before=17,for=30s",
        "--timeout",
        "25s",
    )
    assert code == 0
    (run,) = data["runs"]
    # its read timeout (5 s) fired long before the 30 s stall was over; the sweep's timeout is
    # wide because importing the SDK alone takes seconds on a loaded machine
    assert run["verdict"] == "ok" and run["exit_code"] == 1 and not run["timed_out"], run
    assert run["duration_s"] < 25 and "APITimeoutError" in run["stderr_tail"], run
    assert [play["fired"] for play in run["plays"]] == [["stall:before=17,for=30s"]]


# ---------------------------------------------------------------------------------------------
# the chat page in Chromium: its error state under lossy faults, the full text under lossless


def page_state(fault: str) -> str | None:
    """The error state the chat page (examples/chat-ui/chat.js) must end in under a lossy fault
    of the quick catalogue, or None when it cannot tell (a middle event dropped or doubled: an
    OpenAI stream carries no sequence number)."""
    name, _, args = fault.partition(":")
    if name == "truncate":
        return "aborted" if "end=abort" in args or "end=reset" in args else "incomplete"
    return {
        "drop": "incomplete" if args == "event=last" else None,
        "duplicate": None,
        "corrupt": "bad-event",
        "error": "provider",
        "status": "http",
        "stall": "timeout",
        "header": "bad-type",  # (the quick catalogue's header fault: content-type text/plain)
    }.get(name, "?")


@pytest.mark.slow
def test_the_chat_page_shows_its_error_state_under_lossy_faults(tmp_path: Path) -> None:
    code, data, out = sweep(tmp_path, "browser", "--catalog", "quick", "-j", "2")
    client = matrix.BY_KEY["browser"]
    full = "done\n" + text_of(client) + "\n"
    assert data["clean"]["exit_code"] == 0 and data["clean"]["stdout_tail"] == full
    runs = by_fault(data)
    assert len(runs) >= 20
    for fault, run in runs.items():
        state = run["stdout_tail"].split("\n", 1)[0]
        if fault == "truncate:after=last,end=abort":
            # [DONE] was sent, then the connection closed without the last chunk. When the
            # bytes and the unclean end reach Chromium in one read (instant timing), fetch's
            # body errors before the page reads them: "aborted", no text (else: done)
            assert (run["verdict"], state) in (("ok", "done"), ("broken", "aborted")), run
        elif not run["lossy"]:
            assert run["verdict"] == "ok" and run["stdout_tail"] == full, (fault, run)
        elif page_state(fault) is None:
            assert state == "done" and run["verdict"] == "ok" and not run["same_output"], run
        else:
            assert (state, run["exit_code"]) == (page_state(fault), 1), (fault, run)
            assert run["verdict"] == "ok"
    broken = any(run["verdict"] != "ok" for run in runs.values())
    assert code == (1 if broken else 0), out  # only the race above can make one


# ---------------------------------------------------------------------------------------------
# the Node openai SDK's Realtime client against a replayed WebSocket conversation

REALTIME = ROOT / "cassettes" / "examples" / "websocket" / "openai-realtime-text.msgpack"
REALTIME_CLIENT = ROOT / "examples" / "clients" / "node" / "realtime.mjs"


def realtime_node(*options: str) -> subprocess.CompletedProcess[str]:
    """``ssevcr replay`` of the Realtime cassette (instant) to examples/clients/node/realtime.mjs
    (the SDK's OpenAIRealtimeWS over ``ws``), in a network namespace of its own."""
    problem = matrix.netns_problem() or matrix.node_problem()
    if problem:
        _missing(problem)
    argv = [*matrix.CLI, "replay", str(REALTIME), "--timing", "instant", *options]
    return subprocess.run(
        matrix.isolated([*argv, "--", "node", str(REALTIME_CLIENT)]),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def realtime_server_messages() -> list[str]:
    ws = read_any(REALTIME).interactions[0].websocket
    assert ws is not None
    return [m.data.decode() for m in ws.server_messages]


@pytest.mark.slow
def test_the_node_realtime_client_reads_the_recorded_messages() -> None:
    r = realtime_node()
    assert r.returncode == 0, r.stderr
    *lines, text = r.stdout.splitlines()
    assert lines == realtime_server_messages()  # every message as recorded, in order
    events = [json.loads(line) for line in lines]
    assert text == "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == next(e["text"] for e in events if e["type"] == "response.output_text.done")
    assert "1 play, 0 misses" in r.stderr  # both client messages matched the recording


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "seen"),
    [
        ("close:after=6,code=4000,reason=going away", "closed: 4000 going away"),
        ("close:after=6,code=1006", "closed: 1006"),
        ("close:after=6,code=1011", "closed: 1011"),
        ("error:after=6,message=Overloaded", "error: Overloaded code=server_error"),
    ],
    ids=["close-4000", "close-1006", "close-1011", "error"],
)
def test_the_node_realtime_client_sees_each_fault_as_its_own_close_or_error(
    fault: str, seen: str
) -> None:
    """A close fault is the ``ws`` socket's close with that code (1006: the TCP connection
    dropped, no close frame); ``error:`` is the API's error event, which the SDK turns into its
    own ``error`` (OpenAIRealtimeError). Either way the client stops after message 6."""
    r = realtime_node("--fault", fault)
    assert r.returncode == 1, (r.stdout, r.stderr)
    said = [line for line in r.stderr.splitlines() if not line.startswith(("ssevcr", "  "))]
    assert len(said) == 1 and said[0].startswith(seen), r.stderr  # the client's one line
    lines = r.stdout.splitlines()
    assert lines[:6] == realtime_server_messages()[:6]
    if fault.startswith("error"):
        assert [json.loads(line)["type"] for line in lines[6:]] == ["error"]
    else:
        assert len(lines) == 6
    assert f"faults fired: {fault} (1 time)" in r.stderr


@pytest.mark.slow
def test_a_sweep_of_the_node_realtime_client_finds_it_has_no_timeout(tmp_path: Path) -> None:
    """``ssevcr sweep`` of the WebSocket cassette (quick) to the same client: a close, the API's
    error and fragmented frames are each seen; but the SDK's Realtime client has no timeout, so
    a dropped ``response.done`` waits forever (``hang`` at the sweep's timeout) and a stall past
    any sane timeout (2 s here) is waited through and reported as a success (``silent``)."""
    problem = matrix.netns_problem() or matrix.node_problem()
    if problem:
        _missing(problem)
    report = tmp_path / "realtime.json"
    options = ["--catalog", "quick", "--stall", "2s", "--timeout", "8s", "-j", "2"]
    argv = [*matrix.CLI, "sweep", str(REALTIME), *options, "--json", str(report)]
    r = subprocess.run(
        matrix.isolated([*argv, "--", "node", str(REALTIME_CLIENT)]),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 1 and report.exists(), r.stdout + r.stderr
    runs = by_fault(json.loads(report.read_text()))
    assert {f: run["verdict"] for f, run in runs.items()} == {
        "close:after=8,code=1006": "ok",
        "close:after=8,code=1011": "ok",
        "drop:event=last": "hang",
        "error:after=8": "ok",
        "stall:before=8,for=2s": "silent",
        "rechunk:size=16": "ok",
    }, runs
    assert all(run["exit_code"] == 1 for f, run in runs.items() if f.startswith(("close", "error")))


# ---------------------------------------------------------------------------------------------
# the docs page


def test_the_clients_page_is_rendered_from_its_runs() -> None:
    data = json.loads((DOCS / "clients.json").read_text())
    assert (DOCS / "clients.md").read_text() == matrix.render(data), (
        "docs/clients.md is not what examples/clients/matrix.py renders from docs/clients.json: "
        "rerun it (or --render docs/clients.json after changing the page's layout)"
    )
    assert [c["key"] for c in data["clients"]] == [c.key for c in matrix.CLIENTS]
    settings = data["settings"]
    pinned = json.loads((ROOT / "examples" / "clients" / "node" / "package.json").read_text())
    for c in data["clients"]:
        assert c["clean"]["exit_code"] == 0 and c["runs"], c["key"]
        assert c["versions"] and all(c["versions"].values())
        for package in matrix.BY_KEY[c["key"]].packages:  # the versions the lockfile installs
            if package.startswith("npm:"):
                name = package[4:]
                assert c["versions"][name] == pinned["dependencies"][name], (c["key"], name)
        # every fault today's catalogue has for the cassette, and each one fired in its run
        cassette = read_any(ROOT / c["cassette"])
        entries = catalogue(
            cassette,
            level=settings["catalog"],
            stall=parse_duration(settings["stall"]),
        )
        assert [run["fault"] for run in c["runs"]] == [e.spec for e in entries], c["key"]
        for run in c["runs"]:
            assert run["verdict"] in ("ok", "silent", "broken", "hang", "crash")
            assert run["fired"] == [run["fault"]], (c["key"], run)


def test_error_lines_and_generic_specs() -> None:
    python = 'Traceback (most recent call last):\n  File "x.py"\nopenai.APIError: boom\n'
    assert matrix.error_line(python) == "openai.APIError: boom"
    node = "file:///x.mjs:3\n\nAPIError: nope\n    at f (x.mjs:1)\n  status: 500,\n\nNode.js v20\n"
    assert matrix.error_line(node) == "APIError: nope"
    noisy = python + "Exception ignored in: <generator>\nImportError: sys.meta_path is None\n"
    assert matrix.error_line(noisy) == "openai.APIError: boom"
    assert matrix.error_line("just a line\n") == "just a line"
    assert matrix.generic("truncate:after=17,end=close") == "truncate:after=k,end=close"
    assert matrix.generic("rechunk:random,seed=12") == "rechunk:random"
    assert matrix.generic("drop:event=last") == "drop:event=last"
