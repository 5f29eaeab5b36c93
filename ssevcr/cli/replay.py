"""``ssevcr replay``: serve cassettes as a base URL (and, with ``--proxy``, as a forward proxy)
until stopped, or around one command.

Prints one ready line with the URL (stdout; stderr when running a command, whose output stays its
own), misses as they happen and a short summary on exit (stderr): plays, misses, faults, and how
each play was delivered (taken to the end, or left early: how). ``--journal FILE`` writes the
delivery journal of every play, one JSON object per line, within 10 ms of each play's end.
With ``-- CMD`` the command runs with ``OPENAI_BASE_URL``/``ANTHROPIC_BASE_URL`` (and dummy API
keys where none are set) pointing at the server, and ssevcr exits with its exit code;
``--strict`` also fails the run on misses and on interactions never played. Ctrl-C / SIGTERM
stop it cleanly.

It only parses options and supervises: serving is :mod:`ssevcr._server`, the proxy child
:mod:`ssevcr.mitm.driver` with :mod:`ssevcr.mitm.replay_proxy`, supervision
:mod:`ssevcr.cli._supervise`.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

from .. import _store
from .._content import parse_size
from .._errors import ConfigError, SsevcrError
from .._faults import Fault, parse_fault
from .._journal_file import JournalError, JournalFile
from .._matching import PARTS, WS_MATCHES, MatchOptions
from .._player import Player
from .._providers import dummy_keys
from .._secrets import safe
from .._server import IDLE_TIMEOUT, MAX_BODY, ReplayServer
from .._timer import new_event_loop
from .._timing import format_duration, parse_duration, parse_timing
from . import not_an_input
from ._supervise import (
    Stop,
    SupervisingCommand,
    exposure_warning,
    parse_listen,
    proxy_env,
    run_command,
    wait_until_stopped,
)

if TYPE_CHECKING:  # the control API is imported by --control only (start-up time)
    from .._control import Control

__all__ = ["command_env", "replay_command"]

PLAY_LOG_LIMIT = (
    1000  # plays (most recent) and misses (first) the server keeps; counts are kept for all
)


def _match_on(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...] | None:
    """``--match-on method,path`` (repeatable, comma-separated): the parts compared."""
    parts = tuple(p.strip() for v in value for p in v.split(",") if p.strip())
    if value and not parts:
        raise click.BadParameter(f"name at least one of {', '.join(PARTS)}")
    try:
        MatchOptions(on=parts)
    except ConfigError as e:
        raise click.BadParameter(str(e)) from None
    return parts or None


def _body_keys(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    for key in value:
        if not key.strip() or any(not part for part in key.split(".")):
            raise click.BadParameter(
                f"{key!r}: a dotted path into the JSON body, e.g. metadata.user_id"
            )
    return value


def _timing(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            parse_timing(value)
        except ConfigError as e:
            raise click.BadParameter(str(e)) from None
    return value


def _max_gap(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value, what="--max-gap")
    except ConfigError as e:
        raise click.BadParameter(str(e)) from None


def _idle_timeout(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return IDLE_TIMEOUT
    if value.strip().lower() == "forever":
        return None
    try:
        seconds = parse_duration(value, what="--idle-timeout")
    except ConfigError as e:
        raise click.BadParameter(str(e)) from None
    if seconds <= 0:
        raise click.BadParameter("must be longer than 0 (or forever)")
    return seconds


_Decorated = TypeVar("_Decorated", bound=Callable[..., Any] | click.Command)


def cors_option(help: str) -> Callable[[_Decorated], _Decorated]:
    """The `--cors` option (replay, sweep): origins, or `*` for any (``--cors`` alone)."""
    return click.option(
        "--cors",
        multiple=True,
        is_flag=False,
        flag_value="*",
        callback=_cors,
        metavar="[ORIGIN]",
        help=help,
    )


def _cors(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    for origin in value:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise click.BadParameter(
                f"takes an origin such as http://localhost:5173, or '*' (any, no credentials); "
                f"got {origin!r} (write --cors='*' or put --cors after the cassettes)"
            )
    return value


_ORIGIN = re.compile(r"https?://[-A-Za-z0-9.\[\]:]+/?")


def _max_body(ctx: click.Context, param: click.Parameter, value: str | None) -> int:
    if value is None:
        return MAX_BODY
    size = parse_size(value)
    if size is None:
        raise click.BadParameter(f"expected a size such as 64MiB, 512K or 1048576, got {value!r}")
    return size


def _faults(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[Fault, ...]:
    out = []
    for spec in value:
        try:
            out.append(parse_fault(spec))
        except ConfigError as e:
            raise click.BadParameter(str(e)) from None
    return tuple(out)


def command_env(url: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for ``-- CMD``: SDK base URLs pointing at the server, dummy API keys where
    none are set (the replay never checks them), and ``SSEVCR_URL``."""
    env = dict(os.environ if base is None else base)
    env["SSEVCR_URL"] = url
    env["OPENAI_BASE_URL"] = f"{url}/v1"
    env["ANTHROPIC_BASE_URL"] = url
    env.update(dummy_keys(env))
    return env


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def summary(player: Player) -> list[str]:
    """The lines printed on exit: plays, misses, faults fired and skipped (from the player's
    counters: its log of plays is capped)."""
    fired, skipped = player.fired_counts, player.skipped_counts
    lines = [
        f"ssevcr replay: {_plural(player.play_count, 'play')}, "
        f"{_plural(player.miss_count, 'miss', 'misses')}"
    ]
    if fired:
        lines.append(
            "  faults fired: " + ", ".join(f"{f} ({_plural(n, 'time')})" for f, n in fired.items())
        )
    if skipped:
        lines.append(
            "  faults skipped: "
            + "; ".join(f"{s} ({_plural(n, 'time')})" for s, n in skipped.items())
        )
    if player.faults and not fired and not skipped:
        lines.append("  faults never applied: " + ", ".join(str(f) for f in player.faults))
    delivered = delivery_line(player)
    if delivered:
        lines.append(delivered)
    return lines


def delivery_line(player: Player) -> str:
    """How the plays were delivered: ``delivered: 3 completed, 2 left early (fin 1, rst 1)``
    (empty before any play ended)."""
    counts = dict(player.delivery_counts)
    completed = counts.pop("completed", 0)
    if not completed and not counts:
        return ""
    line = f"  delivered: {completed} completed"
    if counts:
        left = sum(counts.values())
        line += f", {left} left early (" + ", ".join(f"{h} {n}" for h, n in counts.items()) + ")"
    return line


def strict_problems(player: Player) -> list[str]:
    """What ``--strict`` fails on: each miss and each interaction never played."""
    problems = []
    for miss in player.misses:
        problems.append(f"  miss: {miss.message.splitlines()[0].removeprefix('ssevcr: ')}")
    if player.miss_count > len(player.misses):
        more = player.miss_count - len(player.misses)
        problems.append(f"  ... and {_plural(more, 'more miss', 'more misses')}")
    names = [name for name, c in player.cassettes for _ in c.interactions]
    for n, interaction in player.unused():
        r = interaction.request
        problems.append(
            f"  never played: #{n + 1} {safe(r.method)} {safe(r.url)} (from {names[n]})"
        )
    return problems


def _local(url: str, host: str) -> str:
    """The server's URL as clients on this machine reach it (not 0.0.0.0 or ::)."""
    if host in ("", "0.0.0.0"):
        return url.replace(f"//{host}:", "//127.0.0.1:", 1)
    if host == "::":
        return url.replace("//[::]:", "//[::1]:", 1)
    return url


def _controller(
    answers: bool, control: bool, token: str | None, ws_match: str = "type"
) -> Control | None:
    """The control API of ``--control`` (None without it). ``answers``: a CASSETTE or --config
    was given; ``ws_match``: the sessions' default (``--ws-match``)."""
    if not answers and not control:
        raise click.UsageError(
            "give a CASSETTE, --config FILE, or --control (sessions bring their cassettes)"
        )
    source = click.get_current_context().get_parameter_source("control_token")
    if token is not None and not control and source is not ParameterSource.ENVIRONMENT:
        # (from the environment it is only a default: a command run by `replay --control -- CMD`
        # inherits SSEVCR_CONTROL_TOKEN and may start a plain `ssevcr replay` of its own)
        raise click.UsageError("--control-token needs --control")
    if not control:
        return None
    from .._control import Control

    try:
        return Control(token, log_limit=PLAY_LOG_LIMIT, ws_match=ws_match)
    except SsevcrError as e:
        raise click.BadParameter(str(e), param_hint="--control-token") from None


def _refused(prefix: str, info: dict[str, Any]) -> None:
    """A line of the proxy addon: something it refused to pass on (nothing is forwarded)."""
    click.echo(
        f"ssevcr replay --proxy: refused {info.get('what', 'traffic')} from {info.get('peer', '?')}"
        f" to {info.get('target', '?')}: {info.get('reason', '')} (nothing is forwarded in "
        "replay mode)",
        err=True,
    )


async def _serve(
    player: Player,
    host: str,
    port: int,
    *,
    cors: Sequence[str],
    allow_hosts: Sequence[str] = (),
    max_body: int = MAX_BODY,
    command: Sequence[str],
    proxy: bool,
    proxy_listen: tuple[str, int],
    mitmdump: str | None,
    confdir: str | None,
    idle_timeout: float | None = IDLE_TIMEOUT,
    journal: JournalFile | None = None,
    control: Control | None = None,
) -> int:
    loop = asyncio.get_running_loop()
    with Stop() as stop:  # before the ready line: a signal right after it stops us cleanly
        async with ReplayServer(
            player,
            host,
            port,
            cors=cors,
            allow_hosts=allow_hosts,
            idle_timeout=idle_timeout,
            max_body=max_body,
            journal=journal,
            control=control,
        ) as server:
            details = [
                f"{_plural(len(player.interactions), 'interaction')} from {player.names}",
                f"timing {player.timing}",
            ]
            if player.config is not None:
                details.insert(
                    1,
                    f"{_plural(len(player.config), 'configured response')} from "
                    f"{player.config.source!r}",
                )
            if not player.cassettes:
                del details[0]
            if player.faults:
                details.append("faults " + " ".join(str(f) for f in player.faults))
            local = _local(server.url, server.host)
            env = command_env(local)
            if control is not None:
                from .._control import PREFIX

                details.append(f"control {local}{PREFIX} token {control.token}")
                env["SSEVCR_CONTROL_URL"] = local
                env["SSEVCR_CONTROL_TOKEN"] = control.token
            mitm = None
            exposed = [server.host]
            if proxy:
                from ..mitm.driver import REPLAY_PROXY_ADDON, Mitmdump
                from ..mitm.protocol import REPLAY_URL

                mitm = Mitmdump(
                    REPLAY_PROXY_ADDON,
                    mode="regular",
                    listen_host=proxy_listen[0],
                    listen_port=proxy_listen[1],
                    options={
                        REPLAY_URL: local,
                        "upstream_cert": False,
                        "connection_strategy": "lazy",
                    },
                    confdir=confdir,
                    mitmdump=mitmdump,
                    on_line=_refused,
                )

            def watch() -> str | None:
                return None if mitm is None or mitm.running else "mitmdump stopped unexpectedly"

            try:
                if mitm is not None:
                    proxy_ready = await loop.run_in_executor(None, mitm.start)
                    exposed.append(proxy_ready.host)
                    details.append(f"proxy {proxy_ready.bound_url}, CA {proxy_ready.ca_cert}")
                    env = proxy_env(proxy_ready.url, proxy_ready.ca_cert, env)
                    no_proxy = [
                        v
                        for v in (env.get("NO_PROXY") or env.get("no_proxy") or "").split(",")
                        if v.strip()
                    ]
                    env["NO_PROXY"] = env["no_proxy"] = ",".join([*no_proxy, server.host])
                warning = exposure_warning("the replay server", exposed)
                if warning:
                    click.echo(warning, err=True)
                click.echo(
                    f"ssevcr replay: serving {server.url} ({'; '.join(details)})", err=bool(command)
                )
                sys.stdout.flush()
                if command:
                    return await run_command(command, env, stop, watch)
                await wait_until_stopped(stop, watch)
                return 0
            finally:
                if mitm is not None:
                    await loop.run_in_executor(None, mitm.stop)


@click.command(
    "replay", cls=SupervisingCommand, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.argument(
    "cassettes",
    nargs=-1,
    required=False,
    type=click.Path(exists=True, dir_okay=False),
    metavar="CASSETTE...",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Configured responses (YAML or TOML: rules with matchers, each answered by synthesized "
    "content, a cassette's interaction or an HTTP error); they answer what no cassette "
    "interaction matches.",
)
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Address to serve on; port 0 picks a free port. [default: 127.0.0.1:8080; 127.0.0.1:0 "
    "with -- CMD]",
)
@click.option(
    "--timing",
    callback=_timing,
    metavar="T",
    help="original (default) | instant | scale:F | fixed:DUR, or a profile: ttft:DUR, tps:N, "
    "jitter:PCT, profile:CASSETTE, joined by + (with original or scale:F).",
)
@click.option(
    "--max-gap", callback=_max_gap, metavar="DUR", help="Cap every pause at DUR (250ms, 1.5s)."
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    callback=_faults,
    metavar="F",
    help="A fault, e.g. truncate:after=3,end=abort or status:429,times=1; scope with on=N or "
    "on=/path. Repeatable.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of every random choice (faults)."
)
@click.option(
    "--match-on",
    "match_on",
    multiple=True,
    callback=_match_on,
    metavar="PARTS",
    help=f"The request parts that must match, comma-separated (repeatable): {', '.join(PARTS)}. "
    "[default: method,path,query,body]",
)
@click.option(
    "--ws-match",
    "ws_match",
    type=click.Choice(WS_MATCHES),
    default="type",
    show_default=True,
    help="How a WebSocket client's messages are compared with the recorded ones: type (their "
    "type/event field), json (canonical JSON; a recorded REDACTED matches any value) or exact "
    "(bytes).",
)
@click.option(
    "--ignore-body-key",
    "ignore_body_keys",
    multiple=True,
    callback=_body_keys,
    metavar="KEY",
    help="A dotted path into a JSON request body left out of matching (e.g. metadata.user_id). "
    "Repeatable.",
)
@cors_option(
    "Answer CORS preflights and let web pages read the responses: --cors alone (or '*') any "
    "origin, without credentials; --cors ORIGIN (repeatable) only those, with credentials."
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="HOST",
    help="Also answer requests whose Host header names HOST ('*': any). By default only loopback "
    "addresses and localhost are answered (a guard against DNS rebinding). Repeatable.",
)
@click.option(
    "--max-body",
    callback=_max_body,
    metavar="SIZE",
    help="Largest request body read (64MiB, 512K, bytes); larger ones get a 413. [default: 64MiB]",
)
@click.option(
    "--idle-timeout",
    callback=_idle_timeout,
    metavar="DUR",
    help="Close a keep-alive connection that sends no new request for DUR (a clean close: "
    f"clients reconnect), or forever. [default: {format_duration(IDLE_TIMEOUT)}]",
)
@click.option(
    "--journal",
    "journal_path",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Write the delivery journal: one JSON object per play per line (request headers as "
    "received, what was handed to the client and when, how it ended or how the client left), "
    "redacted, written and flushed within 10 ms of each play's end (all of them on exit).",
)
@click.option(
    "--control",
    is_flag=True,
    help="Turn on the control API under /__ssevcr/ (loopback clients with the token printed on "
    "the ready line): per-test sessions with their own cassettes, timing and faults, their "
    "journals and misses. See docs/control.md.",
)
@click.option(
    "--control-token",
    envvar="SSEVCR_CONTROL_TOKEN",
    metavar="TOKEN",
    help="The control API's token [default: $SSEVCR_CONTROL_TOKEN, else a random one].",
)
@click.option(
    "--once",
    is_flag=True,
    help="Play each interaction once; a request too many is a miss (default: start the sequence "
    "over).",
)
@click.option(
    "--strict", is_flag=True, help="Fail (exit 1) on misses and on interactions never played."
)
@click.option(
    "--proxy",
    is_flag=True,
    help="Also serve as a forward proxy (HTTPS_PROXY; HTTPS intercepted with the mitmproxy CA).",
)
@click.option(
    "--proxy-listen",
    default="127.0.0.1:0",
    show_default=True,
    metavar="HOST:PORT",
    help="Address of the --proxy proxy.",
)
@click.option(
    "--mitmdump",
    metavar="PATH",
    help="The mitmdump for --proxy [default: $SSEVCR_MITMDUMP, then mitmproxy in this Python, "
    "then PATH].",
)
@click.option(
    "--confdir",
    type=click.Path(file_okay=False),
    help="mitmproxy configuration directory holding the CA [default: ~/.mitmproxy].",
)
def replay_command(
    cassettes: tuple[str, ...],
    config_path: str | None,
    listen: str | None,
    timing: str | None,
    max_gap: float | None,
    faults: tuple[Fault, ...],
    seed: int,
    match_on: tuple[str, ...] | None,
    ws_match: str,
    ignore_body_keys: tuple[str, ...],
    cors: tuple[str, ...],
    allow_hosts: tuple[str, ...],
    max_body: int,
    idle_timeout: float | None,
    journal_path: str | None,
    control: bool,
    control_token: str | None,
    once: bool,
    strict: bool,
    proxy: bool,
    proxy_listen: str,
    mitmdump: str | None,
    confdir: str | None,
) -> None:
    """Serve CASSETTE... over HTTP with the recorded timing (or a changed one) and optional
    faults, byte-exact. Clients use the printed URL as their base URL (OpenAI: URL/v1).

    \b
    ssevcr replay c.msgpack --listen 127.0.0.1:8080 --timing scale:0.5
    ssevcr replay c.msgpack --fault truncate:after=3,end=abort --strict -- pytest tests/
    ssevcr replay --config examples/mock.yaml -- python app.py
    """
    ctx = click.get_current_context()
    command: list[str] = ctx.meta.get("ssevcr_command", [])
    controller = _controller(
        bool(cassettes) or config_path is not None, control, control_token, ws_match
    )
    host, port = parse_listen(
        listen if listen is not None else ("127.0.0.1:0" if command else "127.0.0.1:8080")
    )
    proxy_address = parse_listen(proxy_listen)
    not_an_input(journal_path, [*cassettes, config_path], "--journal")  # it is truncated
    try:
        shaped = parse_timing(timing, max_gap=max_gap, seed=seed).resolved(_store.profile_times)
        config = None
        if config_path is not None:
            from .._config_file import load as load_config

            config = load_config(config_path)
    except SsevcrError as e:
        raise click.ClickException(str(e)) from None
    player = Player.create(
        list(cassettes),
        timing=shaped,
        faults=faults,
        seed=seed,
        match=MatchOptions(
            on=match_on or MatchOptions().on,
            ignore_body_keys=tuple(dict.fromkeys(ignore_body_keys)),
            ws_match=ws_match,
        ),
        repeat=not once,
        log_limit=PLAY_LOG_LIMIT,
        config=config,
    )
    journal: JournalFile | None = None
    try:
        if journal_path is not None:
            journal = JournalFile(journal_path)
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            code = runner.run(
                _serve(
                    player,
                    host,
                    port,
                    cors=cors,
                    allow_hosts=allow_hosts,
                    max_body=max_body,
                    command=command,
                    proxy=proxy,
                    proxy_listen=proxy_address,
                    mitmdump=mitmdump,
                    confdir=confdir,
                    idle_timeout=idle_timeout,
                    journal=journal,
                    control=controller,
                )
            )
    except OSError as e:
        raise click.ClickException(f"cannot serve on {host}:{port}: {e.strerror or e}") from None
    except JournalError as e:
        raise click.ClickException(str(e)) from None
    finally:
        if journal is not None:
            journal.flush()  # the lines still waiting, on every way out (close reports errors)
    for line in summary(player):
        click.echo(line, err=True)
    if controller is not None:
        click.echo(
            f"  control: {_plural(controller.created, 'session')} created, "
            f"{len(controller.sessions)} still open",
            err=True,
        )
    if journal is not None:
        try:
            journal.close()
        except JournalError as e:
            click.echo(f"ssevcr replay: {e}", err=True)
            code = code or 1
    problems = strict_problems(player) if strict else []
    if problems:
        click.echo("ssevcr replay --strict: the run fails:", err=True)
        for line in problems:
            click.echo(line, err=True)
        code = code or 1
    if code:
        ctx.exit(code)
