"""HTTP/1.1 exchanges in memory, sans-IO, for the adapters of clients that parse HTTP themselves
(aiohttp, requests/urllib3): those adapters give the library's own parser the bytes a server
would send, so its framing, decompression, flow control, timeouts and errors are the real ones.

Replay (the answer to a request the adapter read with :class:`ssevcr._http1.RequestReader`)::

    answer = Answer(play.schedule, incoming.head)   # http1.BadHead: a head HTTP/1.1 cannot carry
    data, then = answer.next(elapsed)               # the bytes due at ``elapsed`` (seconds after
                                                    # the request arrived), then what follows:
    # Wait(until)  nothing more before ``until``    # None     more is due: call again once the
    # Finish(end)  the end (a Close's bytes given)  #          client took these

An answer given in parts (a recording's live replay, :class:`ssevcr._recording.Batches`) is one
``Answer`` per part: ``Answer(part, head, after=previous, last=...)`` goes on with the previous
part's framing (its head sent once); a part that is not ``last`` finishes without an end.

The bytes are the replay server's: :func:`ssevcr._http1.framed` (chunked, one HTTP chunk per
recorded chunk, so the library reads the recorded boundaries), driven by the one schedule
follower. The adapter owns the clock, the sleeps and how each end is delivered (EOF, reset, hang).

Recording (the raw bytes of a real response, as they arrive)::

    reader = ResponseReader(recording, "POST")      # the head, then each de-framed body piece
    reader.feed(data); reader.eof(); reader.lost(error_text)

h11 (as a client) takes the framing off; each body piece goes to the recording still
content-encoded, timed when it was fed. ``ResponseReader.body_only`` reads a body whose head the
library has already parsed. No sockets, clocks or asyncio here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import h11

from . import _http1 as http1
from ._cassette import Headers, Outcome, Request
from ._follower import BATCH_BYTES, Finish, Follower, Head, Wait, Write
from ._schedule import Abort, Close, Schedule

if TYPE_CHECKING:
    from ._intercept import AdapterRecording

__all__ = ["Answer", "ResponseReader", "to_request"]


def to_request(incoming: http1.Request, scheme: str) -> Request:
    """The cassette's request for one read off an in-memory connection: the absolute URL with
    the connection's scheme (the reader assumes ``http``)."""
    head = incoming.head
    url = head.url
    if scheme != "http" and url.startswith("http://"):
        url = f"{scheme}://{url[7:]}"
    return Request(head.method, url, head.headers, incoming.body)


class Answer:
    """One played schedule as the bytes of an HTTP/1.1 response to ``request`` (see the module)."""

    __slots__ = (
        "_finished",
        "_headed",
        "_whole",
        "_whole_sent",
        "follower",
        "framed",
        "last",
        "writer",
    )

    def __init__(
        self,
        schedule: Schedule,
        request: http1.Head,
        *,
        after: Answer | None = None,
        last: bool = True,
    ) -> None:
        self.framed = http1.framed(schedule)
        self.writer: http1.ResponseWriter = (
            http1.ResponseWriter(request) if after is None else after.writer
        )
        self.follower = Follower(schedule, batch_bytes=BATCH_BYTES)
        self.last = last
        self._headed = after is not None
        self._finished: Finish | None = None
        self._whole_sent = False
        plain = request.keep_alive and request.method != "HEAD" and request.http_version == "1.1"
        self._whole = self.framed.whole if plain and last and after is None else None

    def next(self, elapsed: float) -> tuple[bytes, Wait | Finish | None]:
        if self._finished is not None:
            return b"", self._finished
        follower, writer, framed = self.follower, self.writer, self.framed
        whole = self._whole
        if whole is not None and follower.position == 0 and follower.all_due(elapsed):
            self._finished = Finish(framed.schedule.end)  # instant replay: one buffer made once
            self._whole_sent = True
            return whole, self._finished
        self._whole = None
        out: list[bytes | memoryview] = []
        size = 0
        while True:
            action = follower.next(elapsed)
            kind = type(action)
            if kind is Write:
                assert isinstance(action, Write)
                piece = writer.steps(framed, action.start, action.stop)
                out.append(piece)
                size += len(piece)
                if size >= BATCH_BYTES:
                    return b"".join(out), None
            elif kind is Head:
                if not self._headed:
                    out.append(writer.head(framed.head))
            elif kind is Wait:
                assert isinstance(action, Wait)
                return b"".join(out), action
            else:
                assert isinstance(action, Finish)
                self._finished = self._finish(action, out)
                return b"".join(out), self._finished

    @property
    def done(self) -> bool:
        """Whether ``next`` gave its ``Finish`` (of a part: the next part's turn)."""
        return self._finished is not None

    @property
    def body_sent(self) -> int:
        """Body bytes in what ``next`` has returned so far (for the play's journal)."""
        ends = self.framed.timeline.ends
        if self._whole_sent:
            return ends[-1] if ends else 0
        position = self.follower.position
        return ends[position - 1] if position else 0

    def _finish(self, action: Finish, out: list[bytes | memoryview]) -> Finish:
        if not self.last:
            return action  # the answer goes on (its ``Close``: the next part's turn)
        writer, end = self.writer, action.end
        if type(end) is Close or writer.no_body:
            try:
                out.append(writer.end())
            except ValueError:  # a sized body the faults cut short: it ends without its end
                writer.abort()
                return Finish(Abort(end.at))
            return action
        writer.abort()
        return action


class ResponseReader:
    """The raw bytes of one response, as they arrive, into a recording (see the module). The
    first end wins: complete (the message ended), an upstream error, or the client gone (told
    by the recording's owner)."""

    __slots__ = ("_conn", "_head_seen", "done", "recording")

    def __init__(self, recording: AdapterRecording, method: str) -> None:
        self.recording = recording
        self.done = False
        self._head_seen = False
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=64 * 1024)
        conn.send(h11.Request(method=method, target="/", headers=[("host", "ssevcr")]))
        conn.send(h11.EndOfMessage())
        self._conn = conn

    @classmethod
    def body_only(
        cls, recording: AdapterRecording, method: str, status: int, headers: Headers
    ) -> ResponseReader:
        """A reader for a body alone: the library parsed the head (and told the recording);
        only its framing headers are fed to h11, and that head is not reported again."""
        reader = cls(recording, method)
        framing = b"".join(
            b"%s: %s\r\n" % (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in headers
            if k.lower() in ("transfer-encoding", "content-length")
        )
        reader._head_seen = True
        reader._conn.receive_data(b"HTTP/1.1 %d -\r\n%s\r\n" % (status, framing))
        reader._drain()
        return reader

    def feed(self, data: bytes) -> None:
        if not self.done and data:
            self._conn.receive_data(bytes(data))
            self._drain()

    def eof(self) -> None:
        """The connection closed after the bytes fed (a body cut short is an upstream error)."""
        if not self.done:
            self._conn.receive_data(b"")
            self._drain()
            if not self.done:
                self._end(Outcome.UPSTREAM_ERROR, "connection closed before the response ended")

    def lost(self, error: str) -> None:
        """The connection failed (reset, TLS error, timeout)."""
        self._end(Outcome.UPSTREAM_ERROR, error)

    def _end(self, outcome: Outcome, error: str | None = None) -> None:
        if not self.done:
            self.done = True
            self.recording.finish(outcome, error)

    def _drain(self) -> None:
        conn, recording = self._conn, self.recording
        try:
            while not self.done:
                event = conn.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return
                if isinstance(event, h11.Data):
                    recording.chunk(bytes(event.data))
                elif isinstance(event, h11.Response):
                    if not self._head_seen:
                        self._head_seen = True
                        recording.head(
                            event.status_code,
                            reason=event.reason.decode("latin-1"),
                            headers=tuple(
                                (k.decode("latin-1"), v.decode("latin-1"))
                                for k, v in event.headers.raw_items()
                            ),
                            http_version="HTTP/" + event.http_version.decode("ascii"),
                        )
                elif isinstance(event, h11.EndOfMessage):
                    self._end(Outcome.COMPLETE)
                elif isinstance(event, h11.ConnectionClosed):
                    self._end(Outcome.UPSTREAM_ERROR, "connection closed before the response")
        except h11.RemoteProtocolError as e:
            text = str(e) or "malformed response"
            self._end(Outcome.UPSTREAM_ERROR, f"RemoteProtocolError: {text}")
