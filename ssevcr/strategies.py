"""Hypothesis strategies for chunk boundaries: a recorded body, split every way a network can.

A consumer of a stream must give the same result however the bytes are cut into reads: one byte
at a time, between ``\\r`` and ``\\n``, inside a UTF-8 character, right after a field's colon,
several events in one read. These strategies draw such re-splittings of real recorded bytes and
shrink toward the simplest failing one: the fewest splits, as early as possible, at the boundary
that matters::

    from hypothesis import given
    import ssevcr, ssevcr.strategies as sst

    recorded = ssevcr.load("cassettes/examples/openai-chat-text.msgpack")

    @given(sst.rechunked(recorded))
    def test_same_text_for_every_split(cassette):
        transport = ssevcr.ReplayTransport(cassette, timing="instant")
        assert my_consumer(transport) == EXPECTED

``rechunked`` keeps every byte and the recorded timing (a new chunk goes out when the recorded
chunk carrying its last byte arrived); only the boundaries change. Needs the ``hypothesis``
package (``pip install 'ssevcr[strategies]'``).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import replace
from typing import TypeVar, overload

from hypothesis import strategies as st

from ._cassette import Cassette, Interaction, Response, with_body
from ._schedule import hostile_boundaries

__all__ = ["cut", "rechunked", "rechunkings", "splits"]

T = TypeVar("T", Cassette, Interaction, Response)


def cut(body: bytes, points: Sequence[int]) -> list[bytes]:
    """``body`` cut at ``points`` (positions strictly inside it, any order, repeats ignored)."""
    out, start = [], 0
    for p in sorted(set(points)):
        if 0 < p < len(body):
            out.append(body[start:p])
            start = p
    out.append(body[start:])
    return [piece for piece in out if piece]


def splits(body: bytes, *, max_splits: int | None = None) -> st.SearchStrategy[tuple[int, ...]]:
    """Sorted split positions inside ``body``. Shrinks toward no split at all, then toward fewer
    and earlier ones; the hostile boundaries (CR|LF, inside UTF-8, after a colon, between the two
    line ends of a blank line) are drawn often, and one example in ten also splits at every byte
    (1-byte reads), unless ``max_splits`` caps the count. A failure found with 1-byte reads may
    stay at 1-byte reads when shrunk; pass ``max_splits`` (say 16) for the tightest shrinks."""
    n = len(body)
    if n < 2:
        return st.just(())
    limit = n - 1 if max_splits is None else max(0, min(max_splits, n - 1))
    anywhere = st.integers(1, n - 1)
    hostile = hostile_boundaries(body)
    position = st.one_of(st.sampled_from(hostile), anywhere) if hostile else anywhere
    some = st.lists(position, max_size=min(limit, 64), unique=True)
    dense_allowed = limit >= n - 1

    @st.composite
    def draw(draw_from: st.DrawFn) -> tuple[int, ...]:
        points = set(draw_from(some))
        # drawn after the list and shrinking toward "no": a failure that needs only a few splits
        # shrinks to them, one that needs 1-byte reads keeps them
        if dense_allowed and draw_from(st.integers(0, 9)) == 9:
            points.update(range(1, n))
        return tuple(sorted(points))

    return draw()


def rechunkings(body: bytes, *, max_splits: int | None = None) -> st.SearchStrategy[list[bytes]]:
    """``body`` cut into reads (see :func:`splits`); joining them gives ``body`` back."""
    return splits(body, max_splits=max_splits).map(lambda points: cut(body, points))


def _resplit(response: Response, points: Sequence[int]) -> Response:
    pieces = cut(response.body, points)
    ends, acc = [], 0
    for size in response.chunk_sizes:
        acc += size
        ends.append(acc)
    ats = list(response.chunk_at)
    chunks, pos = [], 0
    for piece in pieces:
        pos += len(piece)
        owner = min(bisect.bisect_left(ends, pos), len(ats) - 1)  # the chunk with its last byte
        chunks.append((ats[owner], piece))
    return with_body(response, chunks)


def _response_strategy(response: Response, max_splits: int | None) -> st.SearchStrategy[Response]:
    if not response.body:
        return st.just(response)
    return splits(response.body, max_splits=max_splits).map(lambda p: _resplit(response, p))


@overload
def rechunked(item: Cassette, *, max_splits: int | None = None) -> st.SearchStrategy[Cassette]: ...
@overload
def rechunked(
    item: Interaction, *, max_splits: int | None = None
) -> st.SearchStrategy[Interaction]: ...
@overload
def rechunked(item: Response, *, max_splits: int | None = None) -> st.SearchStrategy[Response]: ...
def rechunked(
    item: Cassette | Interaction | Response, *, max_splits: int | None = None
) -> st.SearchStrategy[Cassette] | st.SearchStrategy[Interaction] | st.SearchStrategy[Response]:
    """The same recording with every response body re-split (bytes and timing kept)."""
    if isinstance(item, Response):
        return _response_strategy(item, max_splits)
    if isinstance(item, Interaction):
        inter = item
        return _response_strategy(inter.response, max_splits).map(
            lambda r: replace(inter, response=r)
        )
    cassette = item
    parts = [rechunked(i, max_splits=max_splits) for i in cassette.interactions]
    return st.tuples(*parts).map(lambda inters: replace(cassette, interactions=tuple(inters)))
