"""The control API of ``ssevcr replay --control``: per-test sessions on one replay server.

A session is a player of its own (cassettes, timing, faults, seed) with its own plays, journal
and misses, so one server serves many tests at once without cross-talk. Everything lives under
the reserved prefix ``/__ssevcr/``::

    POST   /__ssevcr/sessions              create one: {"cassettes": [...], "timing": ...}
    GET    /__ssevcr/sessions              every session (summaries)
    GET    /__ssevcr/sessions/ID           its summary
    GET    /__ssevcr/sessions/ID/journal   its plays' delivery journal
    GET    /__ssevcr/sessions/ID/misses    its misses
    PUT    /__ssevcr/sessions/ID/faults    replace its faults: {"faults": [...]}
    DELETE /__ssevcr/sessions/ID           end it (the answer is its last summary, journal, misses)
    GET    /__ssevcr/health                {"ok": true, "sessions": N}

Control requests are answered only to loopback peers that send the token (``Authorization:
Bearer TOKEN`` or ``x-ssevcr-token: TOKEN``); others get 403/401. A session's traffic needs no
token: it reaches the session through its base URL (``/__ssevcr/s/ID`` + the recorded path) or
any path with an ``x-ssevcr-session: ID`` header; an unknown session is a miss (404). Requests
with neither go to the server's own cassettes. A session created with ``"cors"`` (true: any
origin; a list of origins; false: none) answers browsers by its own origins instead of the
server's ``--cors``, preflights included when they come to its base URL (a preflight carries no
``x-ssevcr-session`` header, so one to another path gets the server's CORS).

Bounded: at most ``max_sessions`` sessions (429 past it), control bodies up to 1 MiB (413),
each session keeps its latest ``log_limit`` plays and first misses (counts of all), and the
cassettes sessions load are cached by bytes (a cassette file unchanged on disk is read once).
This module decides what a control request gets and which player a request belongs to; the
sockets are the server's (``_server``), the client is ``_control_client``.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._cassette import Cassette, Headers
from ._errors import SsevcrError
from ._faults import parse_faults
from ._http1 import Cors
from ._matching import WS_MATCHES, MatchOptions
from ._player import Player
from ._redaction import Redaction

__all__ = [
    "MAX_CONTROL_BODY",
    "MAX_SESSIONS",
    "PREFIX",
    "SESSION_HEADER",
    "SESSION_PREFIX",
    "TOKEN_HEADER",
    "Control",
    "Reply",
    "Routed",
    "Session",
]

PREFIX = "/__ssevcr/"
SESSION_PREFIX = "/__ssevcr/s/"
SESSION_HEADER = "x-ssevcr-session"
TOKEN_HEADER = "x-ssevcr-token"
MAX_SESSIONS = 1000
MAX_CONTROL_BODY = 1024 * 1024
CASSETTE_CACHE_BYTES = 256 * 1024 * 1024
LOG_LIMIT = 1000  # plays (latest) and misses (first) a session keeps
_MAX_CASSETTES = 64
_FIELDS = (
    "cassettes",
    "timing",
    "max_gap",
    "faults",
    "seed",
    "once",
    "name",
    "match_on",
    "ws_match",
    "cors",
)
_MAX_ORIGINS = 64
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{1,200}")
_REDACTION = Redaction()


@dataclass(frozen=True, slots=True)
class Reply:
    """What a control request gets: a status and a JSON object."""

    status: int
    body: dict[str, Any]

    def encode(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Routed:
    """A request that belongs to a session: its player and the URL to match (prefix removed)."""

    session: Session
    url: str


class Session:
    """One test's player and how it was made."""

    __slots__ = ("base_url", "cors", "id", "name", "once", "player", "seed")

    def __init__(
        self,
        id: str,
        player: Player,
        base_url: str,
        name: str | None,
        once: bool,
        cors: Cors | None = None,
    ):
        self.id = id
        self.player = player
        self.base_url = base_url
        self.name = name
        self.once = once
        self.seed = player.seed
        self.cors = cors  # None: the server's CORS

    def summary(self) -> dict[str, Any]:
        player = self.player
        return {
            "id": self.id,
            "name": self.name,
            "base_url": self.base_url,
            "header": {"name": SESSION_HEADER, "value": self.id},
            "cassettes": [name for name, _ in player.cassettes],
            "interactions": len(player.interactions),
            "timing": str(player.timing),
            "ws_match": player.match.ws_match,
            "faults": [str(f) for f in player.faults],
            "seed": player.seed,
            "once": self.once,
            "cors": None if self.cors is None else self.cors.describe(),
            "plays": player.play_count,
            "misses": player.miss_count,
            "delivered": dict(player.delivery_counts),
            "unused": [n for n, _ in player.unused()],
        }

    def journal(self) -> list[dict[str, Any]]:
        return [d.to_json() for p in list(self.player.plays) if (d := p.delivered) is not None]

    def misses(self) -> list[dict[str, Any]]:
        return [
            {
                "method": m.request.method,
                "url": _REDACTION.redact_url(m.request.url),
                "message": m.message,
            }
            for m in list(self.player.misses)
        ]


def _error(status: int, message: str) -> Reply:
    return Reply(status, {"error": {"type": "ssevcr_control", "message": message}})


class Control:
    """The sessions of one server and the answers to its control requests (see the module).

    ``token``: the secret control requests must carry (default: a random one); ``base``: the
    directory relative cassette paths are read from (default: the working directory)."""

    def __init__(
        self,
        token: str | None = None,
        *,
        max_sessions: int = MAX_SESSIONS,
        log_limit: int = LOG_LIMIT,
        redaction: Redaction | None = None,
        base: str | None = None,
        ws_match: str = "type",
    ) -> None:
        if token is not None and not _TOKEN.fullmatch(token):
            raise SsevcrError(
                "the control token must be 1 to 200 of the characters A-Z a-z 0-9 . _ ~ -"
            )
        self.token = token or secrets.token_urlsafe(24)
        self._token = self.token.encode()
        self.max_sessions = max_sessions
        self.log_limit = log_limit
        self.redaction = redaction
        self.base = base if base is not None else os.getcwd()
        self.ws_match = MatchOptions(ws_match=ws_match).ws_match  # (validated: ConfigError)
        self.sessions: dict[str, Session] = {}
        self.created = 0  # sessions created in all
        self._cache: OrderedDict[tuple[str, int, int], tuple[Cassette, int]] = OrderedDict()
        self._cache_bytes = 0

    # -- routing -------------------------------------------------------------------------------

    @staticmethod
    def is_control(target: str) -> bool:
        """Whether a request target is a control request (not a session's traffic)."""
        return target.startswith(PREFIX) and not target.startswith(SESSION_PREFIX)

    def route(self, target: str, url: str, headers: Headers) -> Routed | Reply | None:
        """The session a request belongs to (None: the server's own cassettes; a Reply: an
        unknown session, answered as a miss)."""
        sid: str | None = None
        if target.startswith(SESSION_PREFIX):
            rest = target[len(SESSION_PREFIX) :]
            cut = len(rest)
            for sep in "/?":
                i = rest.find(sep)
                if 0 <= i < cut:
                    cut = i
            sid = rest[:cut]
            prefix = SESSION_PREFIX + sid
            i = url.find(prefix)
            if i >= 0:
                tail = url[i + len(prefix) :]
                if not tail.startswith("/"):
                    tail = "/" + tail
                url = url[:i] + tail
        else:
            for k, v in headers:
                if len(k) == len(SESSION_HEADER) and k.lower() == SESSION_HEADER:
                    sid = v.strip()
                    break
            if sid is None:
                return None
        session = self.sessions.get(sid)
        if session is None:
            return _error(404, f"ssevcr: no session {sid[:40]!r} (ended, or never created)")
        return Routed(session, url)

    # -- control requests ----------------------------------------------------------------------

    def handle(
        self,
        method: str,
        target: str,
        headers: Headers,
        body: bytes,
        *,
        server_url: str,
        loopback: bool,
    ) -> Reply:
        """Answer a control request (``target`` under :data:`PREFIX`)."""
        if not loopback:
            return _error(403, "ssevcr: the control API answers only loopback clients")
        if not self._authorized(headers):
            return _error(
                401,
                "ssevcr: the control API needs the token printed on the ready line "
                f"(Authorization: Bearer TOKEN or {TOKEN_HEADER}: TOKEN)",
            )
        if len(body) > MAX_CONTROL_BODY:
            return _error(413, f"ssevcr: control bodies are at most {MAX_CONTROL_BODY} bytes")
        path = target.split("?", 1)[0].rstrip("/")
        parts = path[len(PREFIX) :].split("/") if len(path) > len(PREFIX) else []
        if parts == ["health"]:
            if method != "GET":
                return _not_allowed(method, "GET")
            return Reply(200, {"ok": True, "sessions": len(self.sessions)})
        if not parts or parts[0] != "sessions" or len(parts) > 3:
            return _error(404, f"ssevcr: no control endpoint {path!r} (see /__ssevcr/sessions)")
        if len(parts) == 1:
            if method == "POST":
                return self.create(body, server_url)
            if method == "GET":
                return Reply(200, {"sessions": [s.summary() for s in self.sessions.values()]})
            return _not_allowed(method, "GET, POST")
        session = self.sessions.get(parts[1])
        if session is None:
            return _error(404, f"ssevcr: no session {parts[1][:40]!r} (ended, or never created)")
        if len(parts) == 2:
            return self._session(method, session)
        return self._part(method, session, parts[2], body, path)

    def _session(self, method: str, session: Session) -> Reply:
        if method == "GET":
            return Reply(200, session.summary())
        if method == "DELETE":
            del self.sessions[session.id]
            return Reply(
                200,
                {**session.summary(), "journal": session.journal(), "miss_list": session.misses()},
            )
        return _not_allowed(method, "GET, DELETE")

    def _part(self, method: str, session: Session, what: str, body: bytes, path: str) -> Reply:
        if what == "journal" and method == "GET":
            return Reply(200, {"journal": session.journal()})
        if what == "misses" and method == "GET":
            return Reply(200, {"misses": session.misses()})
        if what == "faults" and method == "PUT":
            return self._set_faults(session, body)
        if what in ("journal", "misses", "faults"):
            return _not_allowed(method, "PUT" if what == "faults" else "GET")
        return _error(404, f"ssevcr: no control endpoint {path!r}")

    def _authorized(self, headers: Headers) -> bool:
        given = None
        for k, v in headers:
            name = k.lower()
            if name == TOKEN_HEADER:
                given = v.strip()
            elif name == "authorization" and v[:7].lower() == "bearer ":
                given = v[7:].strip()
            if given is not None:
                break
        return given is not None and hmac.compare_digest(given.encode(), self._token)

    def create(self, body: bytes, server_url: str) -> Reply:
        """``POST /__ssevcr/sessions``: a new session from a JSON object of options."""
        if len(self.sessions) >= self.max_sessions:
            return _error(
                429,
                f"ssevcr: {len(self.sessions)} sessions are open (the most this server keeps); "
                "end some (DELETE /__ssevcr/sessions/ID)",
            )
        try:
            spec = _object(body)
            unknown = [k for k in spec if k not in _FIELDS]
            if unknown:
                raise SsevcrError(f"unknown field {unknown[0]!r} (known: {', '.join(_FIELDS)})")
            cassettes = spec.get("cassettes")
            if (
                not isinstance(cassettes, list)
                or not cassettes
                or len(cassettes) > _MAX_CASSETTES
                or not all(isinstance(c, str) and c for c in cassettes)
            ):
                raise SsevcrError(
                    f"cassettes must be a list of 1 to {_MAX_CASSETTES} cassette paths"
                )
            once = spec.get("once", False)
            name = spec.get("name")
            seed = spec.get("seed", 0)
            if not isinstance(once, bool):
                raise SsevcrError("once must be true or false")
            if name is not None and (not isinstance(name, str) or len(name) > 200):
                raise SsevcrError("name must be a string of at most 200 characters")
            if not isinstance(seed, int) or isinstance(seed, bool):
                raise SsevcrError("seed must be an integer")
            match_on = spec.get("match_on")
            if match_on is not None and (
                not isinstance(match_on, list) or not all(isinstance(m, str) for m in match_on)
            ):
                raise SsevcrError("match_on must be a list of request parts")
            ws_match = spec.get("ws_match", self.ws_match)
            if not isinstance(ws_match, str) or ws_match not in WS_MATCHES:
                raise SsevcrError(
                    f"ws_match must be one of {', '.join(WS_MATCHES)} (how a WebSocket "
                    f"client's messages are compared), got {json.dumps(ws_match)[:100]}"
                )
            match = (
                MatchOptions(ws_match=ws_match)
                if match_on is None
                else MatchOptions(on=tuple(match_on), ws_match=ws_match)
            )
            cors = _cors(spec.get("cors"))
            sid = secrets.token_hex(8)
            player = Player.create(
                [self._load(c) for c in cassettes],
                timing=_opt_str(spec, "timing"),
                max_gap=_opt_gap(spec),
                faults=_faults_list(spec.get("faults", [])),
                seed=seed,
                match=match,
                repeat=not once,
                log_limit=self.log_limit,
                redaction=self.redaction,
                session=sid,
            )
        except (SsevcrError, ValueError) as e:
            return _error(400, f"ssevcr: cannot create the session: {e}")
        session = Session(sid, player, f"{server_url}{SESSION_PREFIX}{sid}", name, once, cors)
        self.sessions[sid] = session
        self.created += 1
        return Reply(201, session.summary())

    def _set_faults(self, session: Session, body: bytes) -> Reply:
        try:
            spec = _object(body)
            if set(spec) != {"faults"}:
                raise SsevcrError('the body must be {"faults": [...]}')
            session.player.set_faults(_faults_list(spec["faults"]))
        except (SsevcrError, ValueError) as e:
            return _error(400, f"ssevcr: cannot change the faults: {e}")
        return Reply(200, session.summary())

    def _load(self, path: str) -> tuple[str, Cassette]:
        """A cassette by path (relative to ``base``), from the cache while the file is unchanged."""
        from . import _store

        full = os.path.join(self.base, path)
        try:
            st = os.stat(full)
        except OSError as e:
            raise SsevcrError(f"cannot read the cassette {path!r}: {e.strerror or e}") from None
        key = (os.path.realpath(full), st.st_mtime_ns, st.st_size)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return path, cached[0]
        _, cassette = _store.read_named(full)
        cost = st.st_size
        if cost <= CASSETTE_CACHE_BYTES // 4:
            self._cache[key] = (cassette, cost)
            self._cache_bytes += cost
            while self._cache_bytes > CASSETTE_CACHE_BYTES:
                _, (_, dropped) = self._cache.popitem(last=False)
                self._cache_bytes -= dropped
        return path, cassette


def _not_allowed(method: str, allowed: str) -> Reply:
    return _error(405, f"ssevcr: {method[:20]} is not allowed here (allowed: {allowed})")


def _object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise SsevcrError("the body is not JSON") from None
    if not isinstance(value, dict):
        raise SsevcrError("the body must be a JSON object")
    return value


def _opt_str(spec: dict[str, Any], key: str) -> str | None:
    value = spec.get(key)
    if value is not None and not isinstance(value, str):
        raise SsevcrError(f"{key} must be a string")
    return value


def _opt_gap(spec: dict[str, Any]) -> str | float | None:
    value = spec.get("max_gap")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise SsevcrError("max_gap must be a duration such as '250ms' or a number of seconds")


def _cors(value: object) -> Cors | None:
    """A session's own CORS: absent or null (the server's), true (any origin), false (none) or
    a list of origins."""
    if value is None:
        return None
    if isinstance(value, bool):
        return Cors(value)
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= _MAX_ORIGINS
        or not all(isinstance(o, str) for o in value)
    ):
        raise SsevcrError(f"cors must be true, false or a list of 1 to {_MAX_ORIGINS} origins")
    try:
        return Cors(value)
    except ValueError as e:
        raise SsevcrError(f"cors: {e}") from None


def _faults_list(value: object) -> Sequence[str]:
    if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
        raise SsevcrError("faults must be a list of fault specs")
    parse_faults(value)  # (its own message names the bad one)
    return value
