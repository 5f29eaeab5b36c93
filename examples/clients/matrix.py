"""What real clients do under each fault: sweeps every consumer in examples/clients/ over its
bundled cassette with ``ssevcr sweep --json`` and writes docs/clients.md, with the runs behind
every cell in docs/clients.json.

    .venv/bin/python examples/clients/matrix.py            # every client, --catalog default
    .venv/bin/python examples/clients/matrix.py --only openai-node --catalog quick --out /tmp/m.md
    .venv/bin/python examples/clients/matrix.py --render docs/clients.json  # the page from the runs

Needs node with ``npm ci`` done in examples/clients/node (./bootstrap does it), Debian's
chromium for the browser page, and ``unshare -n``: every sweep runs in a network namespace of
its own whose only interface is loopback, so no SDK's telemetry, price-list fetch or browser
background request can leave the machine. A client that cannot run stops the script with its
reason: no client is left out without a word. The page is rendered from the JSON alone, so
``--render`` gives back the committed page (tests/test_clients_sweep.py checks it).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
HERE = ROOT / "examples" / "clients"
NODE = HERE / "node"
CASSETTES = ROOT / "cassettes" / "examples"
CLI = [sys.executable, "-c", "from ssevcr.cli import main; main()"]
CLIENT_TIMEOUT_S = 5  # the timeout every consumer sets (the chat page: 2 s without a byte)


@dataclass(frozen=True)
class Client:
    key: str
    title: str
    cassette: str  # a name in cassettes/examples/
    command: tuple[str, ...]  # "python" is this interpreter; paths are relative to the repository
    packages: tuple[str, ...]  # "pypi:NAME", "npm:NAME", "node", "chromium"
    cors: bool = False


CLIENTS = (
    Client(
        "openai-python",
        "openai (Python)",
        "openai-chat-text",
        ("python", "examples/clients/openai_client.py"),
        ("pypi:openai", "pypi:httpx2"),
    ),
    Client(
        "anthropic-python",
        "anthropic (Python)",
        "anthropic-text",
        ("python", "examples/clients/anthropic_client.py"),
        ("pypi:anthropic", "pypi:httpx2"),
    ),
    Client(
        "openai-node",
        "openai (Node)",
        "openai-chat-text",
        ("node", "examples/clients/node/openai.mjs"),
        ("npm:openai", "node"),
    ),
    Client(
        "anthropic-node",
        "@anthropic-ai/sdk (Node)",
        "anthropic-text",
        ("node", "examples/clients/node/anthropic.mjs"),
        ("npm:@anthropic-ai/sdk", "node"),
    ),
    Client(
        "vercel-ai",
        "Vercel AI SDK (Node)",
        "openai-chat-text",
        ("node", "examples/clients/node/vercel-ai.mjs"),
        ("npm:ai", "npm:@ai-sdk/openai", "node"),
    ),
    Client(
        "langchain-openai",
        "langchain-openai",
        "openai-chat-text",
        ("python", "examples/clients/langchain_client.py"),
        ("pypi:langchain-openai", "pypi:openai"),
    ),
    Client(
        "litellm",
        "litellm",
        "openai-chat-text",
        ("python", "examples/clients/litellm_client.py"),
        ("pypi:litellm", "pypi:openai"),
    ),
    Client(
        "httpx-sse",
        "httpx-sse",
        "openai-chat-text",
        ("python", "examples/clients/httpx_sse_client.py"),
        ("pypi:httpx-sse", "pypi:httpx"),
    ),
    Client(
        "eventsource",
        "eventsource (Node)",
        "anthropic-text-eventsource",
        ("node", "examples/clients/node/eventsource.mjs"),
        ("npm:eventsource", "node"),
    ),
    Client(
        "browser",
        "chat page (Chromium)",
        "openai-chat-text",
        ("python", "examples/clients/browser_client.py"),
        ("chromium", "pypi:playwright"),
        cors=True,
    ),
)
BY_KEY = {c.key: c for c in CLIENTS}


class Unavailable(Exception):
    """A client that cannot run here, and why."""


# ---------------------------------------------------------------------------------------------
# running


def node_problem() -> str | None:
    """Why the Node clients cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed (CI has node 20; apt-get install nodejs npm)"
    if not (NODE / "node_modules").is_dir():
        return "the Node clients are not installed: ./bootstrap (npm ci in examples/clients/node)"
    return None


_NETNS = ("unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh")


def netns_problem() -> str | None:
    """Why commands cannot run in a network namespace of their own here, or None."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare (util-linux) or ip (iproute2) is not installed"
    probe = subprocess.run([*_NETNS, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare -n is not permitted here: {probe.stderr.strip() or probe.returncode}"
    return None


def isolated(argv: Sequence[str]) -> list[str]:
    """``argv`` in a network namespace of its own, with loopback up and nothing else."""
    return [*_NETNS, *argv]


def chromium_path() -> str | None:
    found = os.environ.get("SSEVCR_CHROMIUM") or shutil.which("chromium")
    return found if found and Path(found).exists() else None


def versions(client: Client) -> dict[str, str]:
    """The versions of what the client runs on, as installed here."""
    out: dict[str, str] = {}
    for package in client.packages:
        if package.startswith("pypi:"):
            name = package[5:]
            try:
                out[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                raise Unavailable(f"{name} is not installed (pip install {name})") from None
        elif package.startswith("npm:"):
            name = package[4:]
            problem = node_problem()
            if problem:
                raise Unavailable(problem)
            manifest = NODE / "node_modules" / name / "package.json"
            if not manifest.is_file():
                raise Unavailable(f"{name} is missing in examples/clients/node: run ./bootstrap")
            out[name] = json.loads(manifest.read_text())["version"]
        elif package == "node":
            out["node"] = _first_line(["node", "--version"]).lstrip("v")
        elif package == "chromium":
            path = chromium_path()
            if path is None:
                raise Unavailable("no chromium (apt-get install chromium, or set SSEVCR_CHROMIUM)")
            line = _first_line([path, "--version"])
            out["chromium"] = (re.findall(r"\d+(?:\.\d+)+", line) or [line])[0]
    return out


def _first_line(command: Sequence[str]) -> str:
    r = subprocess.run(list(command), capture_output=True, text=True, timeout=60)
    return (r.stdout.strip().splitlines() or ["?"])[0]


def command_of(client: Client) -> list[str]:
    first, *rest = client.command
    exe = sys.executable if first == "python" else first
    return [exe, *(str(ROOT / arg) for arg in rest)]


def ssevcr_argv(client: Client, subcommand: str, *options: str) -> list[str]:
    """``ssevcr replay|sweep CASSETTE OPTIONS -- CONSUMER`` of one client, in its own network
    namespace (run it from the repository's root)."""
    cassette = str(CASSETTES / f"{client.cassette}.msgpack")
    cors = ["--cors"] if client.cors else []
    return isolated([*CLI, subcommand, cassette, *cors, *options, "--", *command_of(client)])


def sweep(client: Client, *, catalog: str, jobs: int, timeout: str, stall: str) -> dict[str, Any]:
    """``ssevcr sweep`` of one client; its JSON report."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "sweep.json"
        options = ["--catalog", catalog, "-j", str(jobs), "--timeout", timeout, "--stall", stall]
        args = ssevcr_argv(client, "sweep", *options, "--json", str(report))
        r = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
        if r.returncode not in (0, 1) or not report.exists():
            raise Unavailable(f"the sweep failed (exit {r.returncode}): {r.stderr.strip()[-800:]}")
        data: dict[str, Any] = json.loads(report.read_text())
        return data


def slim(run: dict[str, Any]) -> dict[str, Any]:
    """A run of a sweep's JSON as kept in docs/clients.json: no timelines, short output tails."""
    return {
        "fault": run["fault"],
        "kind": run["kind"],
        "lossy": run["lossy"],
        "verdict": run["verdict"],
        "exit_code": run["exit_code"],
        "signal": run["signal"],
        "timed_out": run["timed_out"],
        "same_output": run["same_output"],
        "duration_s": round(run["duration_s"], 2),
        "fired": sorted({f for play in run["plays"] for f in play["fired"]}),
        "plays": len(run["plays"]),
        "stdout": run["stdout_tail"][-400:],
        "error": error_line(run["stderr_tail"]),
    }


_NOISE = re.compile(r"^(Node\.js v\d|\^+$|file://|\s*$)")


def error_line(stderr: str) -> str:
    """The line of a run's stderr that names the error: the last unindented line that mentions
    one (a Python traceback's last line, a Node error's first), else the last line."""
    lines = [line.rstrip() for line in stderr.splitlines()]
    for at, line in enumerate(lines):  # Python's noise at exit ("Exception ignored in: ...")
        if line.startswith("Exception ignored in") and at:
            lines = lines[:at]
            break
    named = [
        line
        for line in lines
        if line and not line[0].isspace() and re.search(r"error|exception|timeout", line, re.I)
    ]
    if named:
        return named[-1][:300]
    rest = [line for line in lines if not _NOISE.match(line)]
    return rest[-1].strip()[:300] if rest else ""


def collect(
    keys: Sequence[str], *, catalog: str, jobs: int, timeout: str, stall: str
) -> dict[str, Any]:
    from ssevcr import __version__

    problem = netns_problem()
    if problem:
        raise Unavailable(problem)
    clients = []
    for key in keys:
        client = BY_KEY[key]
        print(f"matrix: {client.title} ...", file=sys.stderr, flush=True)
        found = versions(client)
        t0 = time.monotonic()
        data = sweep(client, catalog=catalog, jobs=jobs, timeout=timeout, stall=stall)
        took = time.monotonic() - t0
        print(f"matrix: {client.title}: {data['summary']} in {took:.0f} s", file=sys.stderr)
        clients.append(
            {
                "key": client.key,
                "title": client.title,
                "versions": found,
                "cassette": f"cassettes/examples/{client.cassette}.msgpack",
                "command": " ".join(client.command),
                "cors": client.cors,
                "sweep_s": round(took, 1),
                "clean": slim(data["clean"]),
                "runs": [slim(r) for r in data["runs"]],
                "summary": data["summary"],
            }
        )
    return {
        "generated": datetime.date.today().isoformat(),
        "ssevcr": __version__,
        "python": sys.version.split()[0],
        "settings": {
            "catalog": catalog,
            "timing": "instant",
            "jobs": jobs,
            "timeout": timeout,
            "stall": stall,
            "client_timeout_s": CLIENT_TIMEOUT_S,
        },
        "clients": clients,
    }


# ---------------------------------------------------------------------------------------------
# the page (from the JSON alone)

KINDS = (
    "truncate",
    "drop",
    "duplicate",
    "corrupt",
    "error",
    "status",
    "stall",
    "rechunk",
    "slow",
    "header",
)


def outcome(run: dict[str, Any], clean: dict[str, Any]) -> str:
    """What the client did, in one word: hang, crash, error (exit non-zero), same (exit 0 and the
    clean output), partial (exit 0, less than the clean output), other (exit 0, other output)."""
    if run["verdict"] in ("hang", "crash"):
        return str(run["verdict"])
    if run["exit_code"] != 0:
        return "error"
    if run["same_output"]:
        return "same"
    got, want = run["stdout"].strip(), clean["stdout"].strip()
    return "partial" if len(got) < len(want) else "other"


def did(run: dict[str, Any], clean: dict[str, Any], timeout: str) -> str:
    """What the client did, for a cell of its table."""
    what = outcome(run, clean)
    if what == "hang":
        return f"still running at {timeout}: killed"
    if what == "crash":
        return f"killed by signal {run['signal']}"
    if what == "error":
        line = run["error"] or "(nothing on stderr)"
        return f"exit {run['exit_code']}: `{_cell(line[:110])}`"
    if what == "same":
        return "exit 0, the clean output"
    got, want = len(run["stdout"].strip()), len(clean["stdout"].strip())
    if what == "partial":
        return f"exit 0, partial output ({got} of {want} characters)"
    return f"exit 0, other output ({got} characters, clean: {want})"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'").replace("\n", " ")


def generic(spec: str) -> str:
    """A fault spec with the cassette's own numbers taken out, to group runs across cassettes:
    ``truncate:after=17,end=close`` -> ``truncate:after=k,end=close``."""
    spec = re.sub(r"\b(after|event|before|byte)=\d+", r"\1=k", spec)
    spec = re.sub(r",seed=\d+", "", spec)
    return re.sub(r"slow:bps=\d+", "slow:bps=n", spec)


def overview_cell(runs: Sequence[dict[str, Any]], clean: dict[str, Any]) -> str:
    if not runs:
        return "–"
    counts: dict[str, int] = {}
    for run in runs:
        if run["verdict"] != "ok":
            counts[run["verdict"]] = counts.get(run["verdict"], 0) + 1
        elif run["lossy"] and outcome(run, clean) == "partial":
            counts["partial"] = counts.get("partial", 0) + 1
    if not counts:
        return f"ok ({len(runs)})"
    order = ("hang", "crash", "silent", "broken", "partial")
    bad = ", ".join(f"**{counts[k]} {k}**" for k in order if k in counts)
    return f"{bad} of {len(runs)}"


def pitfalls(data: dict[str, Any]) -> list[str]:
    """The findings: per verdict that is not ok (and lossy runs that exited 0 with partial
    output), the faults grouped across cassettes and the clients they caught."""
    timeout = data["settings"]["timeout"]
    clients = data["clients"]
    total = len(clients)
    found: dict[tuple[str, str], dict[str, list[str]]] = {}
    for c in clients:
        for run in c["runs"]:
            what = outcome(run, c["clean"])
            label = run["verdict"]
            if label == "ok":
                if not (run["lossy"] and what == "partial"):
                    continue
                label = "partial"
            found.setdefault((label, generic(run["fault"])), {}).setdefault(c["title"], []).append(
                run["fault"]
            )
    texts = {
        "hang": f"still running at the sweep's {timeout} (each client set a "
        f"{data['settings']['client_timeout_s']} s timeout)",
        "crash": "killed by a signal",
        "silent": "exit 0 with the clean output: the loss is swallowed",
        "broken": "a lossless fault changed the result",
        "partial": "exit 0 with partial output: the loss is not reported",
    }
    lines = []
    for label in ("hang", "crash", "silent", "broken", "partial"):
        groups = sorted(
            ((spec, who) for (lab, spec), who in found.items() if lab == label),
            key=lambda item: (-len(item[1]), item[0]),
        )
        for spec, who in groups:
            names = ", ".join(sorted(who))
            everyone = len(who) == total
            head = f"**every client ({total} of {total})**" if everyone else names
            specs = sorted({s for faults in who.values() for s in faults})
            shown = ", ".join(f"`{s}`" for s in specs[:4]) + (" …" if len(specs) > 4 else "")
            lines.append(f"- `{spec}` — **{label}**, {texts[label]}: {head} ({shown})")
    return lines


def render(data: dict[str, Any]) -> str:
    s = data["settings"]
    clients = data["clients"]
    out = [
        "# What real clients do under each fault",
        "",
        "<!-- generated by examples/clients/matrix.py from docs/clients.json: do not edit -->",
        "",
        f"Generated {data['generated']} with ssevcr {data['ssevcr']} (Python {data['python']}) "
        f"by `examples/clients/matrix.py`: each client in [`examples/clients/`]"
        "(../examples/clients/) swept with `ssevcr sweep CASSETTE "
        f"--catalog {s['catalog']} -j {s['jobs']} --timeout {s['timeout']} --stall {s['stall']} "
        "--json …` (timing instant) over the bundled cassette it speaks to. Every run behind "
        "every cell is in [`docs/clients.json`](clients.json): the fault, the verdict, the exit "
        "code, the output and the error line.",
        "",
        "Each consumer is written the way the client's own docs teach, with no extra checks: it "
        "prints the streamed text and exits non-zero on an error the client raised (or reported "
        f"to its error callback). Each sets a {s['client_timeout_s']} s timeout where the client "
        "has one (the chat page gives up after 2 s without a byte; EventSource has no timeout), so "
        f"a long stall ({s['stall']}) must end in an error, and a run still going at "
        f"{s['timeout']} is a `hang`. Verdicts are those of [`ssevcr sweep`]"
        "(../README.md#which-faults-does-my-code-survive): `silent` is a lossy fault reported as "
        "the clean result, `broken` a lossless fault that changed it; *partial* (not a verdict) "
        "counts lossy runs that exited 0 with less than the clean output.",
        "",
        "Regenerate: `./bootstrap && .venv/bin/python examples/clients/matrix.py` (about "
        f"{max(1, round(sum(c['sweep_s'] for c in clients) / 60))} min here).",
        "",
        "## Pitfalls found",
        "",
        *pitfalls(data),
        "",
        "## Overview",
        "",
        "Runs per fault kind that were not `ok` (and lossy runs with partial output).",
        "",
        "| client | " + " | ".join(KINDS) + " |",
        "|---" * (len(KINDS) + 1) + "|",
    ]
    for c in clients:
        cells = [overview_cell([r for r in c["runs"] if r["kind"] == k], c["clean"]) for k in KINDS]
        out.append(f"| [{c['title']}](#{c['key']}) | " + " | ".join(cells) + " |")
    for c in clients:
        versions = ", ".join(f"{name} {v}" for name, v in c["versions"].items())
        clean = c["clean"]
        out += [
            "",
            f'<a id="{c["key"]}"></a>',
            "",
            f"## {c['title']}",
            "",
            f"{versions} · `{c['command']}` on `{c['cassette']}`"
            + (" (`--cors`)" if c["cors"] else "")
            + f" · clean run {clean['duration_s']} s, sweep {c['sweep_s']} s",
            "",
            "| fault | kind | lossy | verdict | what the client did |",
            "|---|---|---|---|---|",
        ]
        for run in c["runs"]:
            verdict = run["verdict"] if run["verdict"] == "ok" else f"**{run['verdict']}**"
            out.append(
                f"| `{run['fault']}` | {run['kind']} | {'yes' if run['lossy'] else 'no'} | "
                f"{verdict} | {did(run, clean, s['timeout'])} |"
            )
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=list(BY_KEY), help="repeatable")
    parser.add_argument("--catalog", default="default", choices=["quick", "default", "full"])
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--timeout", default="20s", help="per run (default 20s)")
    parser.add_argument("--stall", default="30s", help="the long stalls (default 30s)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "clients.md")
    parser.add_argument("--json", type=Path, help="default: --out with .json")
    parser.add_argument("--render", type=Path, metavar="JSON", help="only render this JSON")
    args = parser.parse_args(argv)
    if args.render:
        args.out.write_text(render(json.loads(args.render.read_text())))
        return 0
    try:
        data = collect(
            args.only or list(BY_KEY),
            catalog=args.catalog,
            jobs=args.jobs,
            timeout=args.timeout,
            stall=args.stall,
        )
    except Unavailable as e:
        print(f"matrix: {e}", file=sys.stderr)
        return 2
    json_path = args.json or args.out.with_suffix(".json")
    for path in (json_path, args.out):
        path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    args.out.write_text(render(data))
    print(f"matrix: wrote {args.out} and {json_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
