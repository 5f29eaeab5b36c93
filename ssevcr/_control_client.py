"""A Python client for the control API of ``ssevcr replay --control`` (see ``_control``)::

    control = ControlClient("http://127.0.0.1:8080", token)   # or ControlClient.from_env()
    with control.session(["cassettes/a.msgpack"], timing="instant") as session:
        httpx.get(session.base_url + "/v1/models")              # or any path + session.headers
        session.set_faults(["truncate:after=3"])
        session.journal()   -> [{...one play's journal...}, ...]
        session.misses()    -> [{"method", "url", "message"}, ...]
    # the session ends with the block (session.end() returns its last summary)

It speaks plain HTTP/1.1 through the standard library (``http.client``): no client library, so
nothing ssevcr intercepts in process, and it works inside ``use_cassette`` too. Errors the
server reports raise :class:`ControlError` (with ``status``).
"""

from __future__ import annotations

import http.client
import json
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from ._errors import SsevcrError

__all__ = ["READY_LINE", "ControlClient", "ControlError", "ControlSession"]

READY_LINE = re.compile(r"control (?P<url>http://\S+?)/__ssevcr/ token (?P<token>[A-Za-z0-9._~-]+)")
"""Finds the control URL and token in ``ssevcr replay --control``'s ready line."""
_TIMEOUT = 30.0


class ControlError(SsevcrError):
    """The control API refused a request (``status``: its HTTP status; 0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ControlClient:
    """The control API of one ``ssevcr replay --control`` server at ``url`` (its base URL)."""

    def __init__(self, url: str, token: str, *, timeout: float = _TIMEOUT) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ControlError(f"the control URL must be http://HOST:PORT, got {url!r}")
        self.url = f"http://{parts.netloc}"
        self.token = token
        self.timeout = timeout
        self._host = parts.hostname
        self._port = parts.port or 80

    @classmethod
    def from_ready_line(cls, line: str) -> ControlClient:
        """The client for the server that printed ``line`` (its ready line)."""
        match = READY_LINE.search(line)
        if match is None:
            raise ControlError(f"no control URL and token in {line[:200]!r} (is --control on?)")
        return cls(match["url"], match["token"])

    @classmethod
    def from_env(cls) -> ControlClient:
        """From ``SSEVCR_CONTROL_URL`` and ``SSEVCR_CONTROL_TOKEN`` (set for ``-- CMD``)."""
        url, token = os.environ.get("SSEVCR_CONTROL_URL"), os.environ.get("SSEVCR_CONTROL_TOKEN")
        if not url or not token:
            raise ControlError("SSEVCR_CONTROL_URL and SSEVCR_CONTROL_TOKEN are not both set")
        return cls(url, token)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One control request (``path`` under ``/__ssevcr/``); the JSON answer."""
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        headers = {"authorization": f"Bearer {self.token}", "accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        try:
            conn.request(method, f"/__ssevcr/{path}", body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            status = response.status
        except OSError as e:
            raise ControlError(f"cannot reach the control API at {self.url}: {e}") from None
        finally:
            conn.close()
        try:
            answer = json.loads(raw)
        except ValueError:
            raise ControlError(
                f"the control API answered {status} without JSON (is --control on?)", status
            ) from None
        if status >= 400:
            message = answer.get("error", {}).get("message") if isinstance(answer, dict) else None
            raise ControlError(str(message or f"the control API answered {status}"), status)
        return answer

    def create_session(
        self,
        cassettes: Iterable[str | os.PathLike[str]],
        *,
        timing: str | None = None,
        max_gap: str | float | None = None,
        faults: Iterable[str] = (),
        seed: int = 0,
        once: bool = False,
        name: str | None = None,
        match_on: Iterable[str] | None = None,
        ws_match: str | None = None,
        cors: bool | Iterable[str] | None = None,
    ) -> ControlSession:
        """A new session; relative cassette paths are the server's (its working directory).
        ``ws_match``: how a WebSocket client's messages are compared (``type``, ``json``,
        ``exact``); None keeps the server's ``--ws-match``. ``cors``: the origins whose pages
        may read it (True: any; False: none) instead of the server's ``--cors``; None keeps the
        server's."""
        body: dict[str, Any] = {
            "cassettes": [os.fspath(c) for c in cassettes],
            "faults": list(faults),
            "seed": seed,
            "once": once,
        }
        for key, value in (
            ("timing", timing),
            ("max_gap", max_gap),
            ("name", name),
            ("ws_match", ws_match),
        ):
            if value is not None:
                body[key] = value
        if match_on is not None:
            body["match_on"] = list(match_on)
        if cors is not None:
            body["cors"] = cors if isinstance(cors, bool) else list(cors)
        return ControlSession(self, self.request("POST", "sessions", body))

    @contextmanager
    def session(
        self, cassettes: Iterable[str | os.PathLike[str]], **options: Any
    ) -> Iterator[ControlSession]:
        """A session for the ``with`` block, ended after it."""
        session = self.create_session(cassettes, **options)
        try:
            yield session
        finally:
            session.end()

    def sessions(self) -> list[dict[str, Any]]:
        """The summary of every open session."""
        answer: list[dict[str, Any]] = self.request("GET", "sessions")["sessions"]
        return answer

    def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.request("GET", "health")
        return answer


class ControlSession:
    """One session: ``id``, ``base_url`` (the server URL + ``/__ssevcr/s/ID``) and ``headers``
    (``{"x-ssevcr-session": ID}``, for clients that keep the server's own base URL)."""

    def __init__(self, client: ControlClient, summary: dict[str, Any]) -> None:
        self.client = client
        self.id: str = summary["id"]
        self.base_url: str = summary["base_url"]
        header = summary["header"]
        self.headers: dict[str, str] = {header["name"]: header["value"]}
        self.created = summary
        self.ended: dict[str, Any] | None = None

    def info(self) -> dict[str, Any]:
        """Its summary: plays, misses, faults, delivery counts, interactions never played."""
        answer: dict[str, Any] = self.client.request("GET", f"sessions/{self.id}")
        return answer

    def journal(self) -> list[dict[str, Any]]:
        """The delivery journal of its plays (the latest 1,000), in flight ones included."""
        answer: list[dict[str, Any]] = self.client.request("GET", f"sessions/{self.id}/journal")[
            "journal"
        ]
        return answer

    def misses(self) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = self.client.request("GET", f"sessions/{self.id}/misses")[
            "misses"
        ]
        return answer

    def set_faults(self, faults: Iterable[str]) -> dict[str, Any]:
        """Replace its faults for the requests to come."""
        answer: dict[str, Any] = self.client.request(
            "PUT", f"sessions/{self.id}/faults", {"faults": list(faults)}
        )
        return answer

    def end(self) -> dict[str, Any]:
        """End it; its last summary with ``journal`` and ``miss_list`` (once: again returns the
        same)."""
        if self.ended is None:
            self.ended = self.client.request("DELETE", f"sessions/{self.id}")
        return self.ended

    def __enter__(self) -> ControlSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end()
