"""realtime/heap.py: live sockets' objects are frozen out of full collections every N connects, and
the garbage closed sockets leave among frozen objects is collected once as many have closed as are open."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from prometheus_client import REGISTRY

from realtime import heap as heap_module
from realtime.heap import SocketHeap


class Node:
    def __init__(self) -> None:
        self.other: Any = None


def cycle() -> tuple[Node, weakref.ref[Node]]:
    """Two objects referring to each other: freed only by a collection that sees them."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a, weakref.ref(a)


def visible(obj: object) -> bool:
    """Whether the collector's generations hold ``obj`` (frozen objects are in none of them)."""
    return any(o is obj for o in gc.get_objects())


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


@pytest.fixture(autouse=True)
def _thawed() -> Iterator[None]:
    # No automatic collection meanwhile: only the ones under test decide what is collected or frozen.
    gc.disable()
    yield
    gc.enable()
    gc.unfreeze()  # the rest of the test session is not frozen by these tests
    gc.collect()


def test_every_n_connects_the_garbage_is_collected_and_the_survivors_frozen() -> None:
    heap = SocketHeap(freeze_every=3)
    garbage, garbage_ref = cycle()
    del garbage
    live = Node()
    freezes = metric("scoreboard_realtime_gc_freezes_total")
    tokens = [heap.opened(), heap.opened()]
    assert visible(live) and garbage_ref() is not None  # nothing yet
    tokens.append(heap.opened())
    assert garbage_ref() is None  # collected first, not frozen with the rest
    assert not visible(live)
    assert metric("scoreboard_realtime_gc_freezes_total") == freezes + 1
    # All three were frozen by the third's freeze (its own objects too); one opened after it is not yet.
    assert tokens == [0, 0, 0]
    assert heap.opened() == 1 and heap.unfrozen == 1


def test_a_thaw_collects_the_frozen_garbage_and_freezes_the_rest_again() -> None:
    heap = SocketHeap(freeze_every=2, thaw_min_closes=2)
    held, held_ref = cycle()
    live = Node()
    tokens = [heap.opened() for _ in range(4)]
    del held
    thaws = metric("scoreboard_realtime_gc_thaws_total")
    heap.closed(tokens[0])  # 1 closed, 3 open
    assert held_ref() is not None
    heap.closed(tokens[1])  # 2 closed, 2 open: thaw
    assert held_ref() is None
    assert metric("scoreboard_realtime_gc_thaws_total") == thaws + 1
    assert not visible(live)  # frozen again after the full pass
    assert heap.closed_frozen == 0 and heap.epoch == 3


def test_a_socket_closed_before_any_freeze_counts_as_still_in_sight() -> None:
    heap = SocketHeap(freeze_every=3, thaw_min_closes=1)
    token = heap.opened()
    heap.closed(token)
    assert (heap.open, heap.unfrozen, heap.closed_frozen, heap.epoch) == (0, 0, 0, 0)


def test_zero_never_freezes() -> None:
    heap = SocketHeap(freeze_every=0)
    frozen = gc.get_freeze_count()
    tokens = [heap.opened() for _ in range(50)]
    for token in tokens:
        heap.closed(token)
    assert gc.get_freeze_count() == frozen and heap.epoch == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.embedded
async def test_the_live_board_socket_is_counted_when_it_opens_and_when_it_closes(monkeypatch: Any) -> None:
    from scoreboard.asgi import application

    heap = SocketHeap(freeze_every=1, thaw_min_closes=1)
    monkeypatch.setattr(heap_module, "_heap", heap)
    ws = WebsocketCommunicator(application, "/v1/realtime")
    ok, _ = await ws.connect()
    assert ok
    await ws.receive_json_from(timeout=5)
    assert (heap.open, heap.epoch) == (1, 1)  # its open froze it (every 1)
    await ws.disconnect()
    assert heap.open == 0 and heap.epoch == 2  # its close thawed (1 closed >= max(1, 0 open))
