"""The results file of ``distsnn evaluate``: what ran, when, and compact JSON.

Besides the metrics, spikes and versions, the file records where the time went:

* ``timings_s``: rank 0's wall-clock seconds per step, in the order they ran: ``start``
  (process start to the command: interpreter, imports), ``mpi_init`` (``MPI_Init``, the
  launcher's address exchange included), ``communicators`` (distsnn's: the node's and three
  duplicates), ``conversion_wait`` (rank 0 reading or converting the model; the others
  waiting for it; ``conversion`` inside it when converting), ``broadcast`` (the
  network file's bytes to every rank, and parsing them), ``spike_norm_search``,
  ``build_and_load`` = ``build`` (GeNN code generation and compilation once per node, or
  waiting for the node's build under its lock, then preparing to load) + ``load``,
  ``ready_wait`` (for the slowest rank to load), ``journal_open``, ``first_batch`` (start of
  the evaluation to the first batch's readout, reading the first chunk included),
  ``evaluation`` (all chunks; ``journal_write`` and ``first_batch`` are part of it),
  ``reduction`` (metrics and spikes all-reduced), ``gather`` (devices), ``predictions``
  (gathering and writing ``--predictions``).
* ``timings_by_rank``: one record per rank, gathered on rank 0 at the end: ``rank``,
  ``host``, ``wall_s`` (the same steps), ``cpu_s`` (the process's CPU seconds in each, all
  threads: with more ranks than cores wall time measures contention, CPU time the work),
  ``since_start_s`` and ``cpu_since_start_s`` (wall and CPU seconds since the process
  started, when the record was taken; what follows, writing the results and exiting, is not
  in the file), ``recorded_at`` (Unix time of the record), ``bytes`` (``network_file_read``
  on rank 0 when it read a network file, ``network_received`` on the others).
"""
from __future__ import annotations

import json
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def run_record(started: datetime) -> dict:
    """The command line as typed (program name without its path) and the start time."""
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]]
    return {"command": shlex.join(argv), "started_at": started.isoformat(timespec="seconds")}


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def to_json(value: Any, indent: int = 2) -> str:
    """JSON with nested objects indented and every list of numbers on one line, so a
    confusion matrix takes one line per row."""
    return _render(json.loads(json.dumps(value, default=str)), indent, 0) + "\n"


def _render(value: Any, indent: int, level: int) -> str:
    pad, inner = " " * (indent * level), " " * (indent * (level + 1))
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {_render(v, indent, level + 1)}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [f"{inner}{_render(v, indent, level + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value)
