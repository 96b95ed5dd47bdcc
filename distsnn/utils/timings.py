"""Wall-clock and CPU seconds per named step of a run, and the bytes a rank moved."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Optional


@dataclass
class Timings:
    """Seconds per named step of a run (repeated steps add up): ``values`` wall-clock
    (``perf_counter``), ``cpu`` this process's CPU time (``process_time``, all threads);
    ``bytes`` counts of bytes moved (e.g. the network file read or received)."""

    values: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        start, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start, time.process_time() - cpu)

    def add(self, name: str, wall: float, cpu: Optional[float] = None) -> None:
        """Add ``wall`` (and ``cpu``, when known) seconds to step ``name``."""
        self.values[name] = self.values.get(name, 0.0) + wall
        if cpu is not None:
            self.cpu[name] = self.cpu.get(name, 0.0) + cpu

    def rank_record(self, rank: int, host: str) -> dict:
        """This rank's steps for the results file (``timings_by_rank``), with the seconds since
        the process started (None where /proc is missing), its CPU seconds so far and the
        Unix time of the record (so a launcher can place the process's start and exit)."""
        return {"rank": rank, "host": host, "wall_s": dict(self.values), "cpu_s": dict(self.cpu),
                "since_start_s": process_age(), "cpu_since_start_s": time.process_time(),
                "recorded_at": time.time(), "bytes": dict(self.bytes)}


def start_timings() -> Timings:
    """Timings whose first step, ``start``, is the time from process start to now."""
    timings = Timings()
    age = process_age()
    if age is not None:
        timings.add("start", age, time.process_time())
    return timings


def process_age() -> Optional[float]:
    """Wall seconds since this process started (Linux /proc, 10 ms resolution), or None."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
        return max(time.clock_gettime(time.CLOCK_BOOTTIME) - started, 0.0)
    except (OSError, ValueError, IndexError, AttributeError):
        return None
