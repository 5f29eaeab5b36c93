"""The control API (``ssevcr replay --control``): per-test sessions on one server, over real
sockets, from the Python client and from curl: isolation of plays and journals between 20
concurrent sessions with different cassettes and faults, faults changed between requests,
the token and loopback guards, and clean errors for every bad request."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from stream_helpers import CliReplay, event_bytes, save_stream, texts

import ssevcr
from ssevcr._control import Control, Reply, Routed, Session
from ssevcr._player import Player
from ssevcr._server_thread import ServerThread


@pytest.fixture
def cli() -> Iterator[CliReplay]:
    replay = CliReplay("--control", "--timing", "instant")
    yield replay
    replay.kill()


@pytest.fixture
def control(cli: CliReplay) -> ssevcr.ControlClient:
    return ssevcr.ControlClient.from_ready_line(cli.ready)


def test_the_ready_line_names_the_control_url_and_token(cli: CliReplay) -> None:
    client = ssevcr.ControlClient.from_ready_line(cli.ready)
    assert client.url == cli.url
    assert len(client.token) >= 20 and client.token in cli.ready
    assert client.health() == {"ok": True, "sessions": 0}


def test_twenty_concurrent_sessions_with_their_own_cassettes_and_faults_are_isolated(
    tmp_path: Path, control: ssevcr.ControlClient
) -> None:
    sessions = []
    for i in range(20):
        # session i: a cassette of i + 3 events whose texts name the session; odd sessions cut
        # their stream after 2 events
        path = tmp_path / f"s{i}.msgpack"
        cassette = ssevcr.Cassette(
            interactions=(
                ssevcr.Interaction(
                    ssevcr.Request("GET", "http://x/events"),
                    ssevcr.Response.from_chunks(
                        200,
                        [(0.001 * k, b"data: s%d-e%d\n\n" % (i, k)) for k in range(i + 3)],
                        headers=(("content-type", "text/event-stream"),),
                    ),
                ),
            )
        )
        ssevcr.save(cassette, path)
        faults = ["truncate:after=2,end=close"] if i % 2 else []
        sessions.append(control.create_session([str(path)], timing="instant", faults=faults))
    assert len({s.id for s in sessions}) == 20
    bodies: dict[int, list[bytes]] = {i: [] for i in range(20)}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        s = sessions[i]
        try:
            with httpx.Client() as client:
                for n in range(3):  # by path prefix, then by header on the server's own URL
                    if n < 2:
                        r = client.get(f"{s.base_url}/events")
                    else:
                        r = client.get(f"{control.url}/events", headers=s.headers)
                    assert r.status_code == 200, r.text
                    bodies[i].append(r.content)
        except BaseException as e:  # (reported below)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for i, s in enumerate(sessions):
        n = 2 if i % 2 else i + 3
        expected = b"".join(b"data: s%d-e%d\n\n" % (i, k) for k in range(n))
        assert bodies[i] == [expected] * 3, i
        journal = s.journal()
        assert len(journal) == 3
        assert {d["session"] for d in journal} == {s.id}
        assert all(d["state"] == "completed" and d["events"] == n for d in journal)
        assert all(d["fired"] == (["truncate:after=2,end=close"] if i % 2 else []) for d in journal)
        info = s.info()
        assert (info["plays"], info["misses"], info["delivered"]) == (3, 0, {"completed": 3})
    # the server's own cassettes (none here) saw nothing: a request without a session misses
    r = httpx.get(f"{control.url}/events")
    assert r.status_code == 404 and r.headers["x-ssevcr-miss"] == "true"
    for s in sessions:
        ended = s.end()
        assert len(ended["journal"]) == 3
    assert control.sessions() == []


def test_faults_change_between_requests_and_an_ended_session_is_gone(
    tmp_path: Path, control: ssevcr.ControlClient
) -> None:
    path = save_stream(tmp_path, n=5)
    session = control.create_session([path], timing="instant")
    url = f"{session.base_url}/events"
    assert texts(httpx.get(url).content) == [f"w{i} " for i in range(1, 6)]
    assert session.set_faults(["drop:event=2"])["faults"] == ["drop:event=2"]
    assert texts(httpx.get(url).content) == ["w1 ", "w3 ", "w4 ", "w5 "]
    session.set_faults([])
    assert texts(httpx.get(url).content) == [f"w{i} " for i in range(1, 6)]
    with pytest.raises(ssevcr.ControlError, match="fault") as info:
        session.set_faults(["truncate:after=x"])
    assert info.value.status == 400
    r = httpx.post(f"{session.base_url}/nowhere", json={"a": 1})
    assert r.status_code == 404 and r.headers["x-ssevcr-miss"] == "true"
    (miss,) = session.misses()
    assert miss["method"] == "POST" and miss["url"].endswith("/nowhere")  # (prefix removed)
    ended = session.end()
    assert ended["plays"] == 3 and len(ended["miss_list"]) == 1
    r = httpx.get(url)
    assert r.status_code == 404 and "no session" in r.text
    with pytest.raises(ssevcr.ControlError) as info:
        session.info()
    assert info.value.status == 404


def test_each_session_answers_browsers_by_its_own_origins(
    tmp_path: Path, control: ssevcr.ControlClient
) -> None:
    """The server has no --cors; a session's own ``cors`` decides what pages may read its
    answers and whether its preflights are answered: one origin, any origin, or the server's
    (none). A page's preflight to another session's URL gets that session's answer."""
    path = save_stream(tmp_path, n=3)
    only_a = control.create_session([path], timing="instant", cors=["http://a.test/"])
    anyone = control.create_session([path], timing="instant", cors=True)
    server_s = control.create_session([path], timing="instant")
    assert (only_a.info()["cors"], anyone.info()["cors"], server_s.info()["cors"]) == (
        ["http://a.test"],
        True,
        None,
    )

    def allowed(session: ssevcr.ControlSession, origin: str) -> tuple[int, str | None, str | None]:
        r = httpx.get(f"{session.base_url}/events", headers={"origin": origin})
        assert texts(r.content) == ["w1 ", "w2 ", "w3 "]
        h = r.headers
        return (
            r.status_code,
            h.get("access-control-allow-origin"),
            h.get("access-control-allow-credentials"),
        )

    def preflight(session: ssevcr.ControlSession, origin: str) -> tuple[int, str | None]:
        r = httpx.options(
            f"{session.base_url}/events",
            headers={"origin": origin, "access-control-request-method": "GET"},
        )
        return r.status_code, r.headers.get("access-control-allow-origin")

    assert allowed(only_a, "http://a.test") == (200, "http://a.test", "true")
    assert allowed(only_a, "http://b.test") == (200, None, None)
    assert allowed(anyone, "http://b.test") == (200, "http://b.test", None)
    assert allowed(server_s, "http://a.test") == (200, None, None)
    assert preflight(only_a, "http://a.test") == (204, "http://a.test")
    assert preflight(anyone, "http://b.test") == (204, "http://b.test")
    # not answered as a preflight: an OPTIONS the cassette lacks (a miss), no CORS headers
    assert preflight(only_a, "http://b.test") == (404, None)
    assert preflight(server_s, "http://a.test") == (404, None)
    with pytest.raises(ssevcr.ControlError, match="not an origin") as info:
        control.create_session([path], cors=["http://a.test\r\nx: y"])
    assert info.value.status == 400


def test_curl_creates_a_session_reads_it_and_ends_it(
    tmp_path: Path, cli: CliReplay, control: ssevcr.ControlClient
) -> None:
    if shutil.which("curl") is None:
        pytest.fail("curl is needed for the documented examples", pytrace=False)
    path = save_stream(tmp_path, n=3)
    auth = f"Authorization: Bearer {control.token}"

    def curl(*args: str) -> str:
        out = subprocess.run(
            ["curl", "-sS", "--fail-with-body", *args], capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    created = json.loads(
        curl(
            "-H",
            auth,
            "-H",
            "content-type: application/json",
            "-d",
            json.dumps({"cassettes": [path], "timing": "instant", "faults": ["drop:event=1"]}),
            f"{cli.url}/__ssevcr/sessions",
        )
    )
    sid, base = created["id"], created["base_url"]
    assert base == f"{cli.url}/__ssevcr/s/{sid}"
    body = curl(f"{base}/events")
    assert body.encode() == event_bytes(2) + event_bytes(3)
    body = curl("-H", f"x-ssevcr-session: {sid}", f"{cli.url}/events")
    assert body.encode() == event_bytes(2) + event_bytes(3)
    journal = json.loads(curl("-H", auth, f"{cli.url}/__ssevcr/sessions/{sid}/journal"))
    assert [d["events"] for d in journal["journal"]] == [2, 2]
    ended = json.loads(curl("-X", "DELETE", "-H", auth, f"{cli.url}/__ssevcr/sessions/{sid}"))
    assert ended["id"] == sid
    code, summary = cli.stop()
    assert code == 0 and "control: 1 session created, 0 still open" in summary


def test_control_requests_need_the_token(cli: CliReplay, control: ssevcr.ControlClient) -> None:
    for headers in ({}, {"authorization": "Bearer nope"}, {"x-ssevcr-token": control.token + "x"}):
        r = httpx.get(f"{cli.url}/__ssevcr/sessions", headers=headers)
        assert r.status_code == 401 and "token" in r.json()["error"]["message"]
    r = httpx.get(f"{cli.url}/__ssevcr/sessions", headers={"x-ssevcr-token": control.token})
    assert r.status_code == 200 and r.json() == {"sessions": []}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"cassettes": []}', "cassettes must be"),
        (b'{"cassettes": ["no/such.msgpack"]}', "cannot read the cassette"),
        (b'{"cassettes": ["C"], "colour": 1}', "unknown field 'colour'"),
        (b'{"cassettes": ["C"], "faults": ["explode"]}', "explode"),
        (b'{"cassettes": ["C"], "timing": "warp:9"}', "warp"),
        (b'{"cassettes": ["C"], "seed": "x"}', "seed"),
        (b'{"cassettes": ["C"], "cors": "yes"}', "cors must be true, false or a list"),
        (b'{"cassettes": ["C"], "cors": []}', "cors must be true, false or a list"),
        (b'{"cassettes": ["C"], "cors": ["a b"]}', "not an origin"),
    ],
)
def test_a_bad_session_request_is_a_clean_400(
    tmp_path: Path, cli: CliReplay, control: ssevcr.ControlClient, body: bytes, message: str
) -> None:
    path = save_stream(tmp_path, n=2)
    r = httpx.post(
        f"{cli.url}/__ssevcr/sessions",
        content=body.replace(b'"C"', json.dumps(path).encode()),
        headers={"authorization": f"Bearer {control.token}"},
    )
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]["message"]
    assert "Traceback" not in r.text


def test_unknown_endpoints_and_methods(cli: CliReplay, control: ssevcr.ControlClient) -> None:
    auth = {"authorization": f"Bearer {control.token}"}
    assert httpx.get(f"{cli.url}/__ssevcr/nope", headers=auth).status_code == 404
    assert httpx.put(f"{cli.url}/__ssevcr/sessions", headers=auth).status_code == 405
    assert httpx.get(f"{cli.url}/__ssevcr/sessions/0123/journal", headers=auth).status_code == 404
    r = httpx.post(f"{cli.url}/__ssevcr/sessions", headers=auth, content=b"x" * (1024 * 1024 + 1))
    assert r.status_code == 413


def test_without_control_the_prefix_is_an_ordinary_miss(tmp_path: Path) -> None:
    replay = CliReplay(save_stream(tmp_path, n=2))
    try:
        r = httpx.post(f"{replay.url}/__ssevcr/sessions", json={"cassettes": []})
        assert r.status_code == 404 and r.headers["x-ssevcr-miss"] == "true"
        assert "token" not in replay.ready
    finally:
        replay.kill()


def test_a_session_needs_control_and_cassettes_are_optional_only_with_it() -> None:
    from stream_helpers import SSEVCR

    out = subprocess.run([SSEVCR, "replay"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--control" in out.stderr and "Traceback" not in out.stderr


def test_sessions_are_bounded_and_a_chosen_token_is_used(tmp_path: Path) -> None:
    path = save_stream(tmp_path, n=2)
    with ServerThread(Player.create([]), control=Control("my-token", max_sessions=2)) as server:
        client = ssevcr.ControlClient(server.url, "my-token")
        a = client.create_session([path])
        client.create_session([path])
        with pytest.raises(ssevcr.ControlError, match="sessions are open") as info:
            client.create_session([path])
        assert info.value.status == 429
        a.end()
        client.create_session([path])


def test_a_peer_that_is_not_loopback_is_refused() -> None:
    control = Control("t")
    reply = control.handle(
        "GET",
        "/__ssevcr/sessions",
        (("authorization", "Bearer t"),),
        b"",
        server_url="http://127.0.0.1:1",
        loopback=False,
    )
    assert reply.status == 403 and "loopback" in reply.body["error"]["message"]


def test_session_plays_go_to_the_journal_file_named_by_session(tmp_path: Path) -> None:
    path = save_stream(tmp_path, n=3)
    journal = tmp_path / "journal.jsonl"
    replay = CliReplay(path, "--control", "--timing", "instant", "--journal", str(journal))
    try:
        control = ssevcr.ControlClient.from_ready_line(replay.ready)
        session = control.create_session([path], timing="instant")
        assert httpx.get(f"{session.base_url}/events").status_code == 200
        assert httpx.get(f"{replay.url}/events").status_code == 200  # the server's own cassette
        code, _ = replay.stop()
    finally:
        replay.kill()
    assert code == 0
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert sorted((d["session"] or "", d["url"]) for d in lines) == sorted(
        [(session.id, f"{replay.url}/events"), ("", f"{replay.url}/events")]
    )


def test_the_session_prefix_is_removed_before_matching() -> None:
    control = Control("t")
    player = Player.create([])
    control.sessions["0123456789abcdef"] = Session("0123456789abcdef", player, "b", None, False)
    for target, url in [
        ("/__ssevcr/s/0123456789abcdef/v1/x?q=1", "http://h/v1/x?q=1"),
        ("/__ssevcr/s/0123456789abcdef?q=1", "http://h/?q=1"),
        ("/__ssevcr/s/0123456789abcdef", "http://h/"),
    ]:
        routed = control.route(target, "http://h" + target, ())
        assert isinstance(routed, Routed) and routed.url == url
    assert control.route("/v1/x", "http://h/v1/x", (("X-Ssevcr-Session", "0123456789abcdef"),))
    assert control.route("/v1/x", "http://h/v1/x", ()) is None
    unknown = control.route("/__ssevcr/s/nope/v1", "http://h/__ssevcr/s/nope/v1", ())
    assert isinstance(unknown, Reply) and unknown.status == 404


PEER_SCRIPT = """
import json, sys, urllib.request
from ssevcr._control import Control
from ssevcr._player import Player
from ssevcr._server_thread import ServerThread

with ServerThread(Player.create([]), "0.0.0.0", allow_hosts=["*"], control=Control("t")) as s:
    out = {}
    for name, host in (("far", "192.0.2.10"), ("near", "127.0.0.1")):
        req = urllib.request.Request(
            f"http://{host}:{s.port}/__ssevcr/sessions", headers={"authorization": "Bearer t"}
        )
        try:
            out[name] = urllib.request.urlopen(req, timeout=10).status
        except urllib.error.HTTPError as e:
            out[name] = e.code
    print(json.dumps(out))
"""


def test_a_peer_that_is_not_loopback_is_refused_over_a_real_socket() -> None:
    """In a network namespace of its own (``unshare -rn``, nothing leaves it), a documentation
    address on its loopback interface: a client connecting from 192.0.2.10 is not a loopback
    peer, even with the token."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2)")
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -rn is not permitted here: {probe.stderr.strip()}")
    script = 'ip link set lo up && ip addr add 192.0.2.10/32 dev lo && exec "$0" -c "$1"'
    out = subprocess.run(
        ["unshare", "-rn", "sh", "-c", script, sys.executable, PEER_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout) == {"far": 403, "near": 200}


def test_a_command_run_by_replay_control_finds_the_api_in_its_environment(tmp_path: Path) -> None:
    from stream_helpers import SSEVCR

    path = save_stream(tmp_path, n=2)
    code = (
        "import httpx, ssevcr\n"
        "c = ssevcr.ControlClient.from_env()\n"
        f"with c.session([{path!r}], timing='instant') as s:\n"
        "    print(httpx.get(s.base_url + '/events').status_code, c.health()['sessions'])\n"
    )
    out = subprocess.run(
        [SSEVCR, "replay", "--control", "--", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["200", "1"]
    assert "control: 1 session created, 0 still open" in out.stderr
