"""``ssevcr replay`` as users run it: a real process, its ready line, real clients, signals,
``-- CMD`` with only the environment it sets, ``--strict``, usage errors and ``--proxy``."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import click
import httpx2
import pytest
from click.testing import CliRunner
from replay_helpers import ANTHROPIC, OPENAI_CHAT, example_path, expected, interaction, params

from ssevcr._errors import SsevcrError
from ssevcr.cli import main
from ssevcr.mitm.driver import locate_mitmdump

SSEVCR = [str(Path(sys.executable).parent / "ssevcr")]  # the installed console script
URL = re.compile(r"serving (http://127\.0\.0\.1:\d+)")


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "ANTHROPIC_"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update(extra)
    return env


class Replay:
    """A running ``ssevcr replay`` (no command): its URL from the ready line; stop() -> exit
    code."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*SSEVCR, "replay", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env()
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline().decode() if ready else ""
        match = URL.search(line)
        if not match:
            self.proc.kill()
            raise AssertionError(f"no ready line: {line!r} {self.proc.communicate()[1].decode()!r}")
        self.line = line
        self.url = match.group(1)
        self.stderr = ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=30)
        self.stderr = err.decode()
        return self.proc.returncode


@pytest.fixture
def replays() -> Iterator[list[Replay]]:
    started: list[Replay] = []
    yield started
    for r in started:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SSEVCR, "replay", *args], capture_output=True, text=True, env=_env(), timeout=timeout
    )


def test_ready_line_port_0_miss_log_summary_and_sigterm(replays: list[Replay]) -> None:
    recorded = interaction(OPENAI_CHAT)
    r = Replay(example_path(OPENAI_CHAT), "--listen", "127.0.0.1:0", "--timing", "instant")
    replays.append(r)
    assert r.line.count("\n") == 1 and "1 interaction" in r.line and "timing instant" in r.line
    ok = httpx2.post(r.url + recorded.request.path, content=recorded.request.body)
    assert ok.status_code == 200 and ok.content == recorded.response.body
    miss = httpx2.post(r.url + "/v1/nothing", json={})
    assert miss.status_code == 404 and miss.headers["x-should-retry"] == "false"
    assert r.stop(signal.SIGTERM) == 0
    assert (
        "closest: #1 POST https://api.openai.com/v1/chat/completions" in r.stderr
    )  # the miss, logged
    assert "1 play, 1 miss" in r.stderr
    assert "Traceback" not in r.stderr


def test_ctrl_c_stops_cleanly(replays: list[Replay]) -> None:
    r = Replay(example_path(ANTHROPIC), "--listen", "127.0.0.1:0")
    replays.append(r)
    assert r.stop(signal.SIGINT) == 0
    assert "0 plays, 0 misses" in r.stderr and "Traceback" not in r.stderr


def test_faults_repeatable_and_scoped_once_and_summary(replays: list[Replay]) -> None:
    chat, msgs = interaction(OPENAI_CHAT), interaction(ANTHROPIC)
    r = Replay(
        example_path(OPENAI_CHAT),
        example_path(ANTHROPIC),
        "--listen",
        "127.0.0.1:0",
        "--timing",
        "instant",
        "--fault",
        "truncate:after=1,end=close,on=2",
        "--fault",
        "status:429,times=1,on=/v1/chat/*",
        "--once",
    )
    replays.append(r)
    first = httpx2.post(r.url + chat.request.path, content=chat.request.body)
    assert first.status_code == 429 and first.headers["retry-after"]
    assert (
        httpx2.post(r.url + chat.request.path, content=chat.request.body).content
        == chat.response.body
    )
    short = httpx2.post(r.url + msgs.request.path, content=msgs.request.body).content
    events = [e for e in short.split(b"\n\n") if e]
    assert len(events) == 1 and short == msgs.response.body[: len(short)]
    assert (
        httpx2.post(r.url + msgs.request.path, content=msgs.request.body).status_code == 404
    )  # --once
    assert r.stop() == 0
    assert "3 plays, 1 miss" in r.stderr
    assert (
        "truncate:after=1,end=close,on=2 (1 time)" in r.stderr
        and "status:429,times=1,on=/v1/chat/* (1 time)" in r.stderr
    )


SCRIPT = textwrap.dedent("""
    import json, os, sys
    import anthropic, openai

    want = json.loads(sys.argv[1])
    text = ""
    # no configuration at all
    for chunk in openai.OpenAI().chat.completions.create(**want["openai"]):
        for choice in chunk.choices:
            text += choice.delta.content or ""
    for event in anthropic.Anthropic().messages.create(**want["anthropic"]):
        if event.type == "content_block_delta":
            text += event.delta.text
    print("base", os.environ["OPENAI_BASE_URL"], os.environ["ANTHROPIC_BASE_URL"])
    print("keys", os.environ["OPENAI_API_KEY"], os.environ["ANTHROPIC_API_KEY"])
    sys.exit(3 if text == want["text"] else 9)
""")


def test_command_runs_with_the_environment_and_its_exit_code_comes_back(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    want = {
        "openai": params(OPENAI_CHAT),
        "anthropic": params(ANTHROPIC),
        "text": expected(interaction(OPENAI_CHAT).response.body)[0]
        + expected(interaction(ANTHROPIC).response.body)[0],
    }
    out = run(
        example_path(OPENAI_CHAT),
        example_path(ANTHROPIC),
        "--timing",
        "scale:0.2",
        "--strict",
        "--",
        sys.executable,
        str(script),
        json.dumps(want),
    )
    assert out.returncode == 3, out.stderr
    base = re.search(r"base (http://127\.0\.0\.1:\d+)/v1 (http://127\.0\.0\.1:\d+)\n", out.stdout)
    assert base and base.group(1) == base.group(2)
    assert "keys sk-ssevcr-replay-dummy sk-ant-ssevcr-replay-dummy" in out.stdout
    assert (
        "serving http://127.0.0.1:" in out.stderr
    )  # the ready line stays out of the command's stdout
    assert "2 plays, 0 misses" in out.stderr and "--strict" not in out.stderr


def test_command_killed_by_a_signal_is_128_plus_n(tmp_path: Path) -> None:
    out = run(
        example_path(OPENAI_CHAT),
        "--",
        sys.executable,
        "-c",
        "import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
    )
    assert out.returncode == 128 + signal.SIGTERM


def test_strict_fails_on_a_miss() -> None:
    code = (
        "import httpx2, os; "
        "r = httpx2.post(os.environ['SSEVCR_URL'] + '/v1/chat/completions', json={'model': 'x'}); "
        "print(r.status_code)"
    )
    out = run(example_path(OPENAI_CHAT), "--strict", "--", sys.executable, "-c", code)
    assert out.stdout.strip() == "404"
    assert out.returncode == 1
    assert "--strict: the run fails" in out.stderr
    assert "miss: no recorded interaction" in out.stderr
    assert "never played: #1 POST https://api.openai.com/v1/chat/completions" in out.stderr
    lenient = run(example_path(OPENAI_CHAT), "--", sys.executable, "-c", code)
    assert lenient.returncode == 0 and "0 plays, 1 miss" in lenient.stderr


def test_strict_fails_on_an_unused_interaction(tmp_path: Path) -> None:
    chat = interaction(OPENAI_CHAT)
    body = tmp_path / "body.json"
    body.write_bytes(chat.request.body)
    code = (
        f"import httpx2, os; r = httpx2.post(os.environ['OPENAI_BASE_URL'] + '/chat/completions', "
        f"content=open({str(body)!r}, 'rb').read()); assert r.status_code == 200"
    )
    strict = ["--strict", "--timing", "instant", "--", sys.executable, "-c", code]
    both = run(example_path(OPENAI_CHAT), example_path(ANTHROPIC), *strict)
    assert both.returncode == 1
    assert "never played: #2 POST https://api.anthropic.com/v1/messages" in both.stderr
    assert "miss:" not in both.stderr
    one = run(example_path(OPENAI_CHAT), *strict)
    assert one.returncode == 0, one.stderr


IDLE_CHECK = textwrap.dedent("""
    import http.client, os, select, sys, time
    host, port = os.environ["SSEVCR_URL"].removeprefix("http://").split(":")
    body = open(sys.argv[1], "rb").read()
    conn = http.client.HTTPConnection(host, int(port))
    for _ in range(2):
        conn.request(
            "POST", "/v1/chat/completions", body=body, headers={"content-type": "application/json"}
        )
        response = conn.getresponse()
        response.read()
        answered = time.monotonic()
        readable, _, _ = select.select([conn.sock], [], [], float(sys.argv[2]))  # the server's FIN
        closed = bool(readable) and conn.sock.recv(1) == b""
        print(response.status, closed, round(time.monotonic() - answered, 2))
        # as a connection pool does when it finds the FIN: the next request connects again
        if closed:
            conn.close()
""")


@pytest.mark.parametrize(("flag", "closed"), [("300ms", True), ("forever", False)])
def test_idle_timeout_closes_an_idle_connection_and_the_next_request_opens_one(
    tmp_path: Path, flag: str, closed: bool
) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(interaction(OPENAI_CHAT).request.body)
    out = run(
        example_path(OPENAI_CHAT),
        "--timing",
        "instant",
        "--idle-timeout",
        flag,
        "--",
        sys.executable,
        "-c",
        IDLE_CHECK,
        str(body),
        "3" if closed else "0.6",
    )
    assert out.returncode == 0, out.stderr
    lines = [line.split() for line in out.stdout.splitlines()]
    assert [line[:2] for line in lines] == [["200", str(closed)]] * 2, out.stdout
    if closed:
        assert all(0.2 < float(line[2]) < 3 for line in lines), out.stdout
    assert "2 plays, 0 misses" in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fault", "truncate:after=x"], "Invalid value for '--fault'"),
        (["--fault", "explode"], "unknown fault 'explode'"),
        (["--timing", "fast"], "Invalid value for '--timing'"),
        (["--max-gap", "soon"], "Invalid value for '--max-gap'"),
        (["--listen", "localhost:http"], "Invalid value for --listen"),
        (["--seed", "abc"], "Invalid value for '--seed'"),
        (["--idle-timeout", "soon"], "Invalid value for '--idle-timeout'"),
        (["--idle-timeout", "0"], "must be longer than 0 (or forever)"),
        (
            [
                "--",
            ],
            "nothing to run after --",
        ),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["replay", example_path(OPENAI_CHAT), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_and_damaged_cassettes(tmp_path: Path) -> None:
    missing = CliRunner().invoke(main, ["replay", str(tmp_path / "nope.msgpack")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    damaged = tmp_path / "bad.msgpack"
    damaged.write_bytes(b"\x00not msgpack")
    result = CliRunner().invoke(main, ["replay", str(damaged)])
    assert result.exit_code == 1 and result.output.startswith("Error: cassette")


def test_unknown_command_is_a_clear_error() -> None:
    out = run(example_path(OPENAI_CHAT), "--", "/nonexistent/program")
    assert out.returncode == 1 and "cannot run '/nonexistent/program'" in out.stderr


def _mitmdump() -> str | None:
    """The mitmdump ssevcr would run (SSEVCR_MITMDUMP, an importable mitmproxy, PATH), if any."""
    try:
        return " ".join(locate_mitmdump())
    except SsevcrError:
        return None


@pytest.mark.skipif(_mitmdump() is None, reason="no mitmdump (bootstrap creates .venv-mitmproxy)")
def test_proxy_mode_serves_forward_proxy_clients_without_network(
    replays: list[Replay], tmp_path: Path
) -> None:
    chat = interaction(OPENAI_CHAT)
    r = Replay(
        example_path(OPENAI_CHAT),
        "--listen",
        "127.0.0.1:0",
        "--proxy",
        "--timing",
        "scale:0.2",
        "--fault",
        "truncate:after=2,end=abort,times=1",
        "--confdir",
        str(tmp_path / "mitm"),
    )
    replays.append(r)
    match = re.search(r"proxy (http://127\.0\.0\.1:\d+), CA (\S+?)\)", r.line)
    assert match, r.line
    proxy, ca = match.groups()
    assert Path(ca).is_file()
    with httpx2.Client(
        proxy=proxy, verify=ssl.create_default_context(cafile=ca), timeout=20
    ) as client:
        # the fault behaves as without the proxy: an incomplete chunked read after two events
        with (
            pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"),
            client.stream("POST", chat.request.url, content=chat.request.body) as response,
        ):  # https://api.openai.com
            for _ in response.iter_raw():
                pass
        pieces: list[tuple[float, bytes]] = []
        with client.stream("POST", chat.request.url, content=chat.request.body) as response:
            assert response.status_code == 200
            pieces += [(time.monotonic(), piece) for piece in response.iter_raw()]
        assert b"".join(p for _, p in pieces) == chat.response.body
        # streamed, not buffered by the proxy: at scale 0.2 the last chunk comes ~0.2 s after the
        # first
        assert pieces[-1][0] - pieces[0][0] > 0.1
        miss = client.post("https://api.openai.com/v1/embeddings", json={"input": "x"})
        assert miss.status_code == 404
        # the miss names the URL the client asked for (the proxy passes it on)
        assert (
            "matches POST https://api.openai.com/v1/embeddings" in miss.json()["error"]["message"]
        )
    assert r.stop() == 0
    assert (
        "2 plays, 1 miss" in r.stderr and "truncate:after=2,end=abort,times=1 (1 time)" in r.stderr
    )


@pytest.mark.skipif(_mitmdump() is None, reason="no mitmdump (bootstrap creates .venv-mitmproxy)")
def test_proxy_mode_command_gets_proxy_and_ca_variables(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import json, os, ssl, sys, openai, httpx2
        want = json.loads(sys.argv[1])
        # a client that cannot change its base URL: the real API URL, through HTTPS_PROXY,
        # trusting SSL_CERT_FILE
        client = openai.OpenAI(base_url="https://api.openai.com/v1",
                               http_client=httpx2.Client(verify=ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])))
        n = sum(1 for _ in client.chat.completions.create(**want))
        same_ca = os.environ["REQUESTS_CA_BUNDLE"] == os.environ["NODE_EXTRA_CA_CERTS"]
        print("chunks", n, os.environ["HTTPS_PROXY"], same_ca)
    """)
    out = run(
        example_path(OPENAI_CHAT),
        "--proxy",
        "--timing",
        "instant",
        "--strict",
        "--confdir",
        str(tmp_path / "mitm"),
        "--",
        sys.executable,
        "-c",
        code,
        json.dumps(params(OPENAI_CHAT)),
    )
    assert out.returncode == 0, out.stderr
    n = expected(interaction(OPENAI_CHAT).response.body)[2]
    assert re.search(rf"chunks {n} http://127\.0\.0\.1:\d+ True", out.stdout), out.stdout


# ---------------------------------------------------------------------------------------------
# the command line itself: lazy commands, one way to take `-- CMD`


def test_help_imports_no_command_and_says_what_each_command_says() -> None:
    code = (
        "import json, sys\n"
        "from ssevcr.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('ssevcr.'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    *help_lines, last = out.stdout.splitlines()
    loaded = json.loads(last)
    assert not [m for m in loaded if m.startswith("ssevcr.cli.") or m.startswith("ssevcr.mitm")]
    assert not [m for m in ("ssevcr._server", "ssevcr._player", "ssevcr._schedule") if m in loaded]
    help_text = " ".join(" ".join(help_lines).split())
    from ssevcr.cli import COMMANDS

    context = click.Context(main)
    for name, (_, short) in COMMANDS.items():
        command = main.get_command(context, name)
        assert command is not None, name
        # the table says what the command's own help starts with
        assert " ".join((command.help or "").split()).startswith(short.rstrip(".")), name
        assert f"{name} {short}" in help_text


def test_record_takes_the_command_after_double_dash_as_replay_does(tmp_path: Path) -> None:
    for command in ("record", "replay"):
        args = [command, example_path(OPENAI_CHAT) if command == "replay" else str(tmp_path / "c")]
        result = CliRunner().invoke(main, [*args, "--"])
        assert result.exit_code == 2 and "nothing to run after --" in result.output, result.output
        usage = CliRunner().invoke(main, [command, "--help"]).output
        assert "[-- CMD ...]" in usage.splitlines()[0], usage


class _Target:
    """A loopback TCP server standing in for a real host: it records whether anything arrived."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.connections = 0
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.settimeout(2)
            with conn:
                try:
                    while data := conn.recv(65536):
                        self.received.append(data)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.mark.skipif(_mitmdump() is None, reason="no mitmdump (bootstrap creates .venv-mitmproxy)")
def test_proxy_mode_forwards_nothing_that_is_not_http(
    replays: list[Replay], tmp_path: Path
) -> None:
    """Bytes after CONNECT that are neither HTTP nor TLS used to reach the CONNECT target (which
    mitmproxy passes through as raw TCP). In replay mode nothing is forwarded, ever."""
    target = _Target()
    try:
        r = Replay(
            example_path(OPENAI_CHAT),
            "--listen",
            "127.0.0.1:0",
            "--proxy",
            "--confdir",
            str(tmp_path / "mitm"),
        )
        replays.append(r)
        match = re.search(r"proxy http://(127\.0\.0\.1):(\d+)", r.line)
        assert match, r.line
        proxy = (match.group(1), int(match.group(2)))
        with socket.create_connection(proxy, timeout=10) as s:
            s.sendall(f"CONNECT 127.0.0.1:{target.port} HTTP/1.1\r\n\r\n".encode())
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            s.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01 neither HTTP nor TLS\r\n")
            assert s.recv(4096) == b""  # the proxy closes: nothing was relayed back either
        # a plain HTTP request for that host goes to the replay server (a miss), not to it
        with socket.create_connection(proxy, timeout=10) as s:
            s.sendall(
                f"GET http://127.0.0.1:{target.port}/secret HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{target.port}\r\nConnection: close\r\n\r\n".encode()
            )
            answer = b""
            while data := s.recv(65536):
                answer += data
        assert answer.startswith(b"HTTP/1.1 404"), answer[:200]
        time.sleep(0.5)  # anything relayed would have arrived by now
        assert target.connections == 0 and target.received == []
        assert r.stop() == 0
        assert "refused raw TCP (neither HTTP nor TLS)" in r.stderr, r.stderr
        assert f"to 127.0.0.1:{target.port}" in r.stderr and "nothing is forwarded" in r.stderr
    finally:
        target.close()


def _isolated(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run in a network namespace of its own (loopback only): nothing here can reach, or be
    reached from, another machine while it listens on every interface."""
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare -n (a network namespace)")
    script = 'ip link set lo up && exec "$@"'
    return subprocess.run(
        ["unshare", "-n", "sh", "-c", script, "sh", *argv],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )


def test_listening_beyond_loopback_is_a_warning_and_the_ready_line_says_where() -> None:
    code = (
        "import httpx2, os; "
        "print(os.environ['SSEVCR_URL'], httpx2.get(os.environ['SSEVCR_URL'] + '/x').status_code)"
    )
    out = _isolated(
        [
            *SSEVCR,
            "replay",
            example_path(OPENAI_CHAT),
            "--listen",
            "0.0.0.0:0",
            "--",
            sys.executable,
            "-c",
            code,
        ]
    )
    assert out.returncode == 0, out.stderr
    assert re.search(r"serving http://0\.0\.0\.0:\d+ ", out.stderr), (
        out.stderr
    )  # the real bound address
    assert "Warning: the replay server listens on every network interface" in out.stderr
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+ 404\n", out.stdout), (
        out.stdout
    )  # CMD gets a local URL
    quiet = run(example_path(OPENAI_CHAT), "--", sys.executable, "-c", "pass")
    assert quiet.returncode == 0 and "Warning" not in quiet.stderr


def test_match_on_and_ignore_body_key(replays: list[Replay]) -> None:
    """The marker's matching on the command line: a client that sends another ``model`` misses
    by default, matches with ``--ignore-body-key model`` or ``--match-on method,path``."""
    recorded = interaction(OPENAI_CHAT)
    other = json.loads(recorded.request.body)
    other["model"] = "gpt-4o-mini"
    body = json.dumps(other).encode()
    for args, status in [
        ((), 404),
        (("--ignore-body-key", "model"), 200),
        (("--ignore-body-key", "stream_options.include_usage", "--ignore-body-key", "model"), 200),
        (("--ignore-body-key", "messages"), 404),
        (("--match-on", "method,path"), 200),
        (("--match-on", "method", "--match-on", "path,body"), 404),
    ]:
        r = Replay(
            example_path(OPENAI_CHAT), "--listen", "127.0.0.1:0", "--timing", "instant", *args
        )
        replays.append(r)
        answer = httpx2.post(r.url + recorded.request.path, content=body)
        assert answer.status_code == status, (args, answer.text)
        if status == 200:
            assert answer.content == recorded.response.body
        else:
            assert "model" in answer.text  # the miss says what differed
        assert r.stop() == 0
    for args, message in [
        (["--match-on", "colour"], "unknown match part(s) colour"),
        (["--match-on", ","], "name at least one of method"),
        (["--ignore-body-key", "a..b"], "a dotted path into the JSON body"),
    ]:
        result = CliRunner().invoke(main, ["replay", example_path(OPENAI_CHAT), *args])
        assert result.exit_code == 2 and message in result.output, result.output


def test_timing_profiles_on_the_server(replays: list[Replay], tmp_path: Path) -> None:
    """``--timing ttft:700ms+tps:40``: the first chunk ~0.7 s after the request, the stream
    then at 40 events a second (tolerances for a loaded 2-core machine), the bytes unchanged;
    a ``profile:`` file that is not there is a clean error."""
    recorded = interaction(OPENAI_CHAT)
    n = len(set(recorded.response.chunk_at))
    r = Replay(
        example_path(OPENAI_CHAT), "--listen", "127.0.0.1:0", "--timing", "ttft:700ms+tps:40"
    )
    replays.append(r)
    assert "timing ttft:700ms+tps:40" in r.line
    arrivals, body = [], b""
    t0 = time.monotonic()
    with httpx2.stream("POST", r.url + recorded.request.path, content=recorded.request.body) as s:
        for piece in s.iter_raw():
            arrivals.append(time.monotonic() - t0)
            body += piece
    assert body == recorded.response.body
    assert 0.65 <= arrivals[0] <= 1.7, arrivals[0]
    end = 0.7 + (n - 1) / 40
    assert 0.9 * end <= arrivals[-1] <= end + 1.5, (arrivals[-1], end)
    assert r.stop() == 0
    missing = run(example_path(OPENAI_CHAT), "--timing", f"profile:{tmp_path / 'x.msgpack'}")
    assert missing.returncode == 1, missing.stderr
    assert "timing profile:" in missing.stderr and "no such file" in missing.stderr
    assert "Traceback" not in missing.stderr


MOCK_APP = textwrap.dedent("""
    import json, sys
    import openai

    client = openai.OpenAI(max_retries=0)   # OPENAI_BASE_URL and a stand-in key from ssevcr
    out = {}
    for prompt in ["Tell me a story", "Hi", "Show me some CODE"]:
        stream = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": prompt}], stream=True,
            stream_options={"include_usage": True})
        chunks = list(stream)
        out[prompt] = ["".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
                       chunks[-1].usage.completion_tokens]
    done = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    out["plain"] = done.choices[0].message.content
    try:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hello"}])
    except openai.NotFoundError as e:
        out["miss"] = str(e)
    print(json.dumps(out))
""")


def test_config_serves_configured_responses_to_the_openai_sdk(tmp_path: Path) -> None:
    """``ssevcr replay --config examples/mock.yaml -- CMD``: the seed's example, streamed to the
    official openai SDK (and its non-streaming form); a miss names the closest rule."""
    import yaml

    mock = Path(__file__).resolve().parent.parent / "examples" / "mock.yaml"
    spec = {r["name"]: r["content"] for r in yaml.safe_load(mock.read_text())["responses"]}
    app = tmp_path / "app.py"
    app.write_text(MOCK_APP)
    out = run("--config", str(mock), "--timing", "instant", "--", sys.executable, str(app))
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    for prompt, rule in [
        ("Tell me a story", "story"), ("Hi", "short-stream"), ("Show me some CODE", "code-stream")
    ]:  # fmt: skip
        assert got[prompt] == [spec[rule]["text"], spec[rule]["usage"]["output"]], prompt
    assert got["plain"] == spec["short-stream"]["text"]
    assert "closest: 'story'" in got["miss"]
    assert "contains 'story': the last user message is 'Hello'" in got["miss"]
    assert "configured response" in out.stderr and "4 plays, 1 miss" in out.stderr, out.stderr
    # a cassette first, the configuration for what it does not answer
    chat = interaction(OPENAI_CHAT)
    body = tmp_path / "body.json"
    body.write_bytes(chat.request.body)
    code = (
        "import httpx2, os; base = os.environ['OPENAI_BASE_URL']; "
        f"r = httpx2.post(base + '/chat/completions', content=open({str(body)!r}, 'rb').read()); "
        "s = httpx2.post(base + '/chat/completions', json={'model': 'm', 'stream': True, "
        "'messages': [{'role': 'user', 'content': 'Hi'}]}); "
        "print(r.status_code, r.content == open(os.environ['RECORDED'], 'rb').read(), "
        "s.status_code, '\"Hello\"' in s.text and '[DONE]' in s.text)"
    )
    recorded = tmp_path / "recorded.bin"
    recorded.write_bytes(chat.response.body)
    both = subprocess.run(
        [*SSEVCR, "replay", example_path(OPENAI_CHAT), "--config", str(mock), "--timing",
         "instant", "--", sys.executable, "-c", code],
        capture_output=True, text=True, env=_env(RECORDED=str(recorded)), timeout=60,
    )  # fmt: skip
    assert both.stdout.split() == ["200", "True", "200", "True"], both.stdout + both.stderr
    for args, message in [
        ([], "give a CASSETTE, --config FILE, or --control"),
        (["--config", str(tmp_path / "none.yaml")], "cannot read configuration"),
    ]:
        result = CliRunner().invoke(main, ["replay", *args])
        assert result.exit_code in (1, 2) and message in result.output, result.output


NODE_MOCK_APP = """
import OpenAI from "openai";
const client = new OpenAI({ maxRetries: 0 }); // OPENAI_BASE_URL and a stand-in key from ssevcr
const out = {};
for (const prompt of ["Tell me a story", "Hi", "Show me some CODE"]) {
  const stream = await client.chat.completions.create({
    model: "gpt-4o", messages: [{ role: "user", content: prompt }], stream: true,
    stream_options: { include_usage: true },
  });
  let text = "", usage = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? "";
    if (chunk.usage) usage = chunk.usage.completion_tokens;
  }
  out[prompt] = [text, usage];
}
console.log(JSON.stringify(out));
"""


def test_config_serves_configured_responses_to_the_node_openai_sdk(tmp_path: Path) -> None:
    """The seed's example (examples/mock.yaml) streamed to the official Node openai SDK (the one
    examples/clients/node pins), inside a network namespace with loopback only."""
    import yaml

    root = Path(__file__).resolve().parent.parent
    node_dir = root / "examples" / "clients" / "node"
    node = shutil.which("node")
    problem = (
        "node is not installed"
        if node is None
        else None
        if (node_dir / "node_modules" / "openai").is_dir()
        else "examples/clients/node has no node_modules (./bootstrap runs npm ci)"
    )
    if problem is None and subprocess.run(["unshare", "-n", "true"]).returncode != 0:
        problem = "unshare -n is not available"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"{problem} (CI is set, so this fails instead of skipping)", pytrace=False)
        pytest.skip(problem)
    app = node_dir / f".mock-{os.getpid()}.mjs"  # beside node_modules, so "openai" resolves
    app.write_text(NODE_MOCK_APP)
    try:
        mock = root / "examples" / "mock.yaml"
        spec = {r["name"]: r["content"] for r in yaml.safe_load(mock.read_text())["responses"]}
        netns = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
        out = subprocess.run(
            [*netns, *SSEVCR, "replay", "--config", str(mock), "--timing", "instant", "--",
             str(node), str(app)],
            capture_output=True, text=True, env=_env(), timeout=120,
        )  # fmt: skip
    finally:
        app.unlink()
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    for prompt, rule in [
        ("Tell me a story", "story"), ("Hi", "short-stream"), ("Show me some CODE", "code-stream")
    ]:  # fmt: skip
        assert got[prompt] == [spec[rule]["text"], spec[rule]["usage"]["output"]], prompt
