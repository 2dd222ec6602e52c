#!/usr/bin/env python3
"""Start an ASGI server on a listening socket of its own that shares its port with its siblings.

    deploy/reuseport.py --host 127.0.0.1 --port 8002 -- uvicorn scoreboard.asgi:application ...

Binds ``host:port`` with ``SO_REUSEPORT``, then replaces itself with the given command plus
``--fd N`` (uvicorn's "bind to this file descriptor"). Started several times on one port, each
process has its own accept queue and the kernel spreads new connections across them (a hash of
the peer's address and port): WebSocket frames go from the process straight to the client's
socket, with no proxy reading and writing each frame once more. The client address each process
sees is the real peer's.

``--processes N`` (a container's single command): starts N such servers itself, passes SIGTERM and
SIGINT on to them, and exits as soon as one of them does (the orchestrator then restarts the lot).

Only the standard library: it runs before anything else is imported.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys

DEFAULT_BACKLOG = 8192  # a reconnect storm of thousands of sockets must not overflow the queue


def reuseport_socket(host: str, port: int, backlog: int = DEFAULT_BACKLOG) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backlog", type=int, default=DEFAULT_BACKLOG)
    parser.add_argument("--processes", type=int, default=1, help="start this many servers and supervise them")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the server's command line")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the server's command after --")
    if args.processes <= 1:
        sock = reuseport_socket(args.host, args.port, args.backlog)
        os.execvp(command[0], [*command, "--fd", str(sock.fileno())])  # noqa: S606 - our own argv
    sys.exit(supervise(args.host, args.port, args.backlog, args.processes, command))


def supervise(host: str, port: int, backlog: int, processes: int, command: list[str]) -> int:
    """N servers, each on its own SO_REUSEPORT listener; returns when the first one exits."""
    children: list[int] = []
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:  # the child: its own listener, then the server in its place
            sock = reuseport_socket(host, port, backlog)
            os.execvp(command[0], [*command, "--fd", str(sock.fileno())])  # noqa: S606 - our own argv
        children.append(pid)

    asked: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if _frame is not None:
            asked.append(signum)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    _pid, status = os.wait()
    forward(signal.SIGTERM, None)  # one is gone: stop the others, the orchestrator restarts the group
    for child in children:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    # Asked to stop: a server that ended by that signal (uvicorn re-raises it after its graceful
    # shutdown) stopped as it should.
    return 0 if asked and code in (0, *(-s for s in asked)) else code


if __name__ == "__main__":
    main()
