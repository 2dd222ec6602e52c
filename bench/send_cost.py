"""CPU of one pre-framed write per socket, by frame size: what a snapshot diff could save in the fan-out.

    .venv/bin/python -m bench.send_cost --sockets 500 --sizes 200 1024 --rounds 20

One process, uvloop, N loopback TCP connections (as one ASGI process holds its share of the
sockets); each round writes one unmasked text frame of each size to every socket (alternating
which size goes first) and reports the median thread CPU per socket write. The peers are drained
between rounds, so every write finds room in its buffer (the fan-out's fast path). On loopback the
write also runs the receiving side's TCP processing and the receiver's wake-up, as it does for the
benchmark's clients on the same box.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time
from typing import Any

from bench.topology import raise_nofile
from realtime.wire import text_frame


async def measure(sockets: int, sizes: list[int], rounds: int) -> dict[int, float]:
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0), backlog=8192)
    listener.setblocking(False)
    transports: list[Any] = []

    class Accepted(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            transports.append(transport)

    server = await loop.create_server(Accepted, sock=listener, backlog=8192)
    peers = [socket.create_connection(listener.getsockname()) for _ in range(sockets)]
    for peer in peers:
        peer.setblocking(False)
    while len(transports) < sockets:
        await asyncio.sleep(0.05)
    per_write: dict[int, list[float]] = {size: [] for size in sizes}
    for rnd in range(rounds):
        for size in sizes if rnd % 2 == 0 else list(reversed(sizes)):
            wire = text_frame(b"x" * size)
            started = time.thread_time()
            for transport in transports:
                transport.write(wire)
            per_write[size].append((time.thread_time() - started) * 1e6 / sockets)
            await asyncio.sleep(0.02)
            for peer in peers:
                try:
                    while peer.recv(1 << 16):
                        pass
                except BlockingIOError:
                    pass
    for peer in peers:
        peer.close()
    server.close()
    return {size: statistics.median(values) for size, values in per_write.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1024])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    raise_nofile()
    import uvloop

    result = uvloop.run(measure(args.sockets, args.sizes, args.rounds))
    for size, micros in result.items():
        print(
            f"{size} B payload: {micros:.2f} µs of CPU per socket write",
            f"(median of {args.rounds}, {args.sockets} sockets)",
        )


if __name__ == "__main__":
    main()
