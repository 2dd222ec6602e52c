"""The C engine of the delivery benchmark's WebSocket clients (bench/wsclient_native.c), via ctypes.

``library()`` compiles the C file with the machine's C compiler (``CC``, else ``cc``) into
``bench/.build/`` the first time, keyed by the source's hash (a changed source builds anew; four
client processes starting at once race harmlessly: each writes its own file, then renames it into
place). ``Clients`` is one process's set of sockets.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from array import array
from pathlib import Path

SOURCE = Path(__file__).with_name("wsclient_native.c")
BUILD = Path(__file__).with_name(".build")

_c_int64_p = ctypes.POINTER(ctypes.c_int64)
_c_double_p = ctypes.POINTER(ctypes.c_double)
_c_ubyte_p = ctypes.POINTER(ctypes.c_ubyte)


def compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")


def library_path() -> Path:
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    return BUILD / f"wsclient-{digest}.so"


def build() -> Path:
    """The compiled library's path, compiling it first if this source has not been built yet."""
    path = library_path()
    if path.exists():
        return path
    cc = compiler()
    if cc is None:
        raise RuntimeError("bench/wsclient_native.c needs a C compiler (cc or gcc; CC=...), or BENCH_WS_CLIENT=python")
    BUILD.mkdir(exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    subprocess.run(  # noqa: S603
        [cc, "-O2", "-Wall", "-Wextra", "-shared", "-fPIC", "-o", str(tmp), str(SOURCE)],
        check=True,
        capture_output=True,
        text=True,
    )
    tmp.replace(path)
    for stale in BUILD.glob("wsclient-*.so"):  # builds of earlier sources
        if stale != path:
            stale.unlink(missing_ok=True)
    return path


def library() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(build()))
    lib.wsc_open.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_double,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
    ]
    lib.wsc_open.restype = ctypes.c_int
    lib.wsc_run.argtypes = [ctypes.c_double, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.wsc_run.restype = ctypes.c_int
    lib.wsc_recording.argtypes = [ctypes.c_int]
    for name in ("wsc_closed", "wsc_user_clock", "wsc_body_slots", "wsc_polls", "wsc_ready_events"):
        getattr(lib, name).restype = ctypes.c_long
    lib.wsc_count.restype = ctypes.c_int
    lib.wsc_lag.argtypes = [ctypes.POINTER(_c_double_p)]
    lib.wsc_lag.restype = ctypes.c_long
    lib.wsc_frames.argtypes = [
        ctypes.c_int,
        ctypes.POINTER(_c_int64_p),
        ctypes.POINTER(_c_double_p),
        ctypes.POINTER(ctypes.c_int),
    ]
    lib.wsc_frames.restype = ctypes.c_long
    lib.wsc_body.argtypes = [
        ctypes.c_long,
        _c_int64_p,
        ctypes.POINTER(_c_ubyte_p),
        ctypes.POINTER(ctypes.c_size_t),
    ]
    lib.wsc_body.restype = ctypes.c_int
    return lib


def _copy(pointer: ctypes._Pointer, n: int, typecode: str) -> array:
    out = array(typecode)
    if n:
        out.frombytes(ctypes.string_at(pointer, n * out.itemsize))
    return out


class Clients:
    """This process's sockets (the C engine keeps one set per process)."""

    def __init__(self) -> None:
        self.lib = library()

    def open(
        self,
        targets: list[str],
        host: str,
        path: str,
        count: int,
        wait_first_frame: bool,
        timeout: float,
        concurrency: int,
        read_size: int,
        batch_us: int,
    ) -> int:
        ready = self.lib.wsc_open(
            "\n".join(targets).encode(),
            host.encode(),
            path.encode(),
            count,
            int(wait_first_frame),
            timeout,
            concurrency,
            read_size,
            batch_us,
        )
        if ready < 0:
            raise RuntimeError(f"wsclient_native: could not set up sockets to {targets}")
        return int(ready)

    def read_until_line(self) -> str:
        """Read the sockets until a line comes on stdin; that line ("" when stdin ended)."""
        line = ctypes.create_string_buffer(4096)
        self.lib.wsc_run(-1.0, 1, line, len(line))
        return line.value.decode()

    def read_for(self, seconds: float) -> None:
        self.lib.wsc_run(seconds, 0, None, 0)

    def recording(self, on: bool) -> None:
        self.lib.wsc_recording(int(on))

    def clear(self) -> None:
        self.lib.wsc_clear()

    def close_all(self) -> None:
        self.lib.wsc_close_all()

    @property
    def closed(self) -> int:
        return int(self.lib.wsc_closed())

    @property
    def polls(self) -> tuple[int, int]:
        """(epoll_wait calls, sockets they found ready) while reading."""
        return int(self.lib.wsc_polls()), int(self.lib.wsc_ready_events())

    @property
    def user_clock(self) -> int:
        return int(self.lib.wsc_user_clock())

    def lag(self) -> array:
        pointer = _c_double_p()
        n = self.lib.wsc_lag(ctypes.byref(pointer))
        return _copy(pointer, n, "d")

    def sockets(self) -> list[tuple[array, array]]:
        """Per socket that upgraded: its (seqs, arrival ms), in arrival order."""
        out = []
        for i in range(self.lib.wsc_count()):
            seqs, arrivals, upgraded = _c_int64_p(), _c_double_p(), ctypes.c_int()
            n = self.lib.wsc_frames(i, ctypes.byref(seqs), ctypes.byref(arrivals), ctypes.byref(upgraded))
            if upgraded.value:
                out.append((_copy(seqs, n, "q"), _copy(arrivals, n, "d")))
        return out

    def bodies(self) -> dict[int, bytes]:
        """seq -> the first copy of that frame's JSON."""
        out: dict[int, bytes] = {}
        seq, data, size = ctypes.c_int64(), _c_ubyte_p(), ctypes.c_size_t()
        for i in range(self.lib.wsc_body_slots()):
            if self.lib.wsc_body(i, ctypes.byref(seq), ctypes.byref(data), ctypes.byref(size)):
                out[seq.value] = ctypes.string_at(data, size.value)
        return out
