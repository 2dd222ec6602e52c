"""Where the machine's CPU goes during a benchmark step: the whole box and each group of processes.

The update ladder measures every step with a :class:`CpuMeter`: CPU seconds (user + system) used by
the gunicorn workers, the ASGI servers, the Celery worker, PostgreSQL, Redis, nginx and the load
generator, and the whole box's busy time from ``/proc/stat``. Divided by the requests answered, that
says what one request costs the machine and which process pays for it; the box's CPUs divided by
that cost is the ceiling no tuning of the server count can pass on this machine.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.topology import process_cpu_seconds

# Processes found by name (they are not the benchmark's children): every process of each server.
NAMED_GROUPS = {"postgres": "postgres", "redis": "redis-server", "nginx": "nginx"}
LOADGEN = "loadgen"
OTHER = "other"


def box_busy_seconds() -> float:
    """CPU seconds all CPUs spent not idle since boot (user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def pids_named(name: str) -> list[int]:
    """Every process whose command name is ``name``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    out.append(int(entry.name))
    return out


def children_cpu_seconds() -> float:
    """CPU seconds of this process's children that have exited and been waited for (the load generator)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """Measures CPU seconds per group over a block: ``with meter.measure() as used: ...``.

    ``groups`` maps a name to a function returning the pids to count (their children count too).
    ``used`` is filled when the block ends: one entry per group, ``loadgen`` (children of this
    process that exited during the block), ``box`` (the whole machine) and ``other`` (the box minus
    everything named: this process, the kernel's own work, anything else running).
    Each process counts from the block's start, or from zero if it started during the block; one
    that exited during the block drops out (its last moments are lost, never subtracted).
    """

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = dict(groups)
        for group, comm in NAMED_GROUPS.items():
            self.groups.setdefault(group, lambda comm=comm: pids_named(comm))  # type: ignore[misc]

    def _sample(self) -> tuple[dict[str, dict[int, float]], float, float]:
        processes = {name: process_cpu_seconds(pids()) for name, pids in self.groups.items()}
        return processes, children_cpu_seconds(), box_busy_seconds()

    @contextlib.contextmanager
    def measure(self) -> Iterator[dict[str, float]]:
        used: dict[str, float] = {}
        before, loadgen0, box0 = self._sample()
        yield used
        after, loadgen1, box1 = self._sample()
        for name, now in after.items():
            then = before.get(name, {})
            used[name] = sum(max(0.0, seconds - then.get(pid, 0.0)) for pid, seconds in now.items())
        used[LOADGEN] = loadgen1 - loadgen0
        used["box"] = box1 - box0
        named = sum(v for name, v in used.items() if name != "box")
        used[OTHER] = max(0.0, used["box"] - named)


def per_request_ms(used: dict[str, float], requests: int) -> dict[str, float] | None:
    """CPU milliseconds per answered request for each entry of a :meth:`CpuMeter.measure` result."""
    if not requests:
        return None
    return {name: round(seconds * 1000 / requests, 2) for name, seconds in used.items()}


def ceiling_per_s(box_ms_per_request: float | None, cpus: int | None = None) -> float | None:
    """Requests/s the whole machine could answer at this cost per request with every CPU busy."""
    if not box_ms_per_request:
        return None
    return round((cpus or os.cpu_count() or 1) * 1000 / box_ms_per_request, 1)
