"""Per-socket cost of the hub's fan-out with the sockets spread over 1 or many boards (in-process).

    .venv/bin/python -m bench.fanout_boards --sockets 10000 --boards 1 10 --rounds 5

Each socket's pre-framed writer only counts its bytes (no I/O), so this is the hub's own cost:
decoding what Redis delivered (``Hub._on_messages``), finding the board's sockets and offering each
the frame. Every board gets one snapshot per round; a board-frame for a board nobody here watches
is published alongside (it must cost nothing). Reported: microseconds per delivered frame, and per
round; alternating 1 and N boards in one run, as the box's speed drifts.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from realtime.hub import Hub, Mailbox


class CountingWriter:
    __slots__ = ("bytes",)

    def __init__(self) -> None:
        self.bytes = 0

    def __call__(self, wire: bytes) -> bool:
        self.bytes += len(wire)
        return True


async def _ignored_send(message: object) -> None:  # never used: the counting writer takes every frame
    raise AssertionError("the ASGI send was used")


async def measure(sockets: int, boards: int, rounds: int, frame_bytes: int) -> float:
    hub = Hub()
    names = [f"board{b}" for b in range(boards)]
    for i in range(sockets):
        box = Mailbox(names[i % boards])
        hub._boards[box.board].add(box)  # registered as attach() would, without a Redis subscription
        box.start_push(_ignored_send, CountingWriter())
    pad = b"x" * frame_bytes
    channel = b"bench:board:"  # the boards' channel prefix (board_channel below)
    delivered = 0
    spent = 0.0
    for r in range(1, rounds + 1):
        messages = [(channel + n.encode(), b'%d\n{"seq":%d,"pad":"%s"}' % (r, r, pad)) for n in names]
        messages.append((channel + b"nobody-here", b"%d\n{}" % r))  # (Redis would not send it: not subscribed)
        started = time.perf_counter()
        hub._on_messages(messages)
        spent += time.perf_counter() - started
        delivered += sockets
    return spent / delivered * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--boards", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5, help="alternating repetitions of every board count")
    parser.add_argument("--frame-bytes", type=int, default=1024)
    args = parser.parse_args()

    import django
    from django.conf import settings

    django.setup()
    settings.REDIS_URL = ""  # board_channel() is only compared against: name it without a server
    import realtime.hub as hub_module

    hub_module.board_channel = lambda board="": b"bench:board:" + board.encode()
    results: dict[int, list[float]] = {b: [] for b in args.boards}
    for rep in range(args.repeat):
        order = args.boards if rep % 2 == 0 else list(reversed(args.boards))
        for boards in order:
            results[boards].append(asyncio.run(measure(args.sockets, boards, args.rounds, args.frame_bytes)))
    print(f"| boards | sockets | µs per delivered frame (median of {args.repeat}) | vs 1 board |")
    print("|---|---|---|---|")
    base = sorted(results[args.boards[0]])[args.repeat // 2]
    for boards, values in results.items():
        median = sorted(values)[args.repeat // 2]
        print(f"| {boards} | {args.sockets} | {median:.3f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
