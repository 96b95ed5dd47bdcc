"""The progress journal of a long evaluation, for resuming it after a stop or a crash.

A journal is a directory (by default next to the results file, ``results.json.journal``):

* ``header.json`` -- what the run evaluates (network hash, dataset identity, options);
  a journal for anything else is refused.
* ``run-<k>-rank-<r>.jsonl`` -- one line per chunk evaluated by rank r during run k: the
  examples done (global index ranges) and their local counts (metric counts stored sparsely,
  spikes per population, synaptic operations) and, with ``--predictions``, each example's
  label, predicted classes and readout values. Each line goes out in one ``write`` on an
  ``O_APPEND`` file and is fsynced; a line cut short by a crash does not parse and is ignored,
  so its examples are simply evaluated again.

On resume rank 0 sums every line (from any number of ranks of any earlier runs), and the
examples not yet done are split between the current ranks. Metric and spike counts are
integers and Poisson streams are hashes of the example index, so the final results equal
those of an uninterrupted run on any number of ranks.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path
from typing import Optional

import numpy as np

from distsnn.compilers.chunks import ChunkResult, PredictionRows, merge_ranges
from distsnn.errors import UserError
from distsnn.parallel.agreement import on_root
from distsnn.parallel.communicator import Communicator

HEADER = "header.json"


class JournalError(UserError):
    """A journal that does not belong to this run, or cannot be written."""


def default_journal_path(output: Optional[Path], fingerprint: dict) -> Path:
    """``<output>.journal``, or ``distsnn-<hash>.journal`` in the working directory."""
    if output is not None:
        return Path(str(output) + ".journal")
    return Path(f"distsnn-{fingerprint_hash(fingerprint)}.journal")


def fingerprint_hash(fingerprint: dict) -> str:
    import hashlib
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class Journal:
    """One rank's handle on a journal directory (see the module docstring)."""

    def __init__(self, path: Path, run: int, rank: int):
        self.path = Path(path)
        self.run = run
        self.rank = rank
        self._fd: Optional[int] = None

    # opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, fingerprint: dict, comm: Communicator,
             must_exist: bool = False) -> tuple["Journal", Optional[ChunkResult]]:
        """Every rank's journal for this run, and (on rank 0) the counts already done."""
        path = Path(path)

        def rank0():
            header = path / HEADER
            if not header.exists():
                if must_exist:
                    raise JournalError(f"--resume: no journal at {path}; run without --resume "
                                       f"to start, or pass --journal PATH of the earlier run")
                _create(path, fingerprint)
                return 0, None
            _check_header(path, fingerprint)
            runs = [int(p.name.split("-")[1]) for p in path.glob("run-*-rank-*.jsonl")]
            return max(runs, default=-1) + 1, read_entries(path)
        run, done = on_root(comm, rank0, broadcast=False) or (None, None)
        run = comm.broadcast_object(run)
        return cls(path, run, comm.rank), done

    # writing -------------------------------------------------------------------------
    def append(self, result: ChunkResult) -> None:
        """Add one chunk's counts: a single write of one line, then fsync."""
        if self._fd is None:
            name = self.path / f"run-{self.run}-rank-{self.rank}.jsonl"
            self._fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        line = (json.dumps(encode(result), separators=(",", ":")) + "\n").encode()
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(28, "short write")
            os.fsync(self._fd)
        except OSError as err:
            raise JournalError(f"cannot write the journal {self.path}: {err.strerror or err}; "
                               f"free space there or pass --journal DIR elsewhere") from err

    def discard_if_empty(self) -> None:
        """Delete the journal when no rank has recorded a chunk in it (a run that failed
        before finishing one, e.g. on bad data): nothing to resume, and its header must not
        block the rerun once the data are fixed."""
        self.close()
        if not any(p.stat().st_size for p in self.path.glob("run-*-rank-*.jsonl")):
            shutil.rmtree(self.path, ignore_errors=True)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _create(path: Path, fingerprint: dict) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / f".{HEADER}.tmp"
        tmp.write_text(json.dumps(fingerprint, indent=1, sort_keys=True, default=str))
        os.replace(tmp, path / HEADER)
    except OSError as err:
        raise JournalError(f"cannot create the journal {path}: {err.strerror or err}; pass "
                           f"--journal DIR on a writable file system") from err


def _check_header(path: Path, fingerprint: dict) -> None:
    try:
        stored = json.loads((path / HEADER).read_text())
    except (OSError, ValueError) as err:
        raise JournalError(f"{path / HEADER}: unreadable journal header ({err}); delete "
                           f"{path} to start afresh") from err
    expected = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
    differing = sorted(k for k in set(stored) | set(expected) if stored.get(k) != expected.get(k))
    if differing:
        details = "; ".join(f"{k}: journal {stored.get(k)!r}, now {expected.get(k)!r}"
                            for k in differing)
        raise JournalError(f"the journal {path} belongs to a different run ({details}); rerun "
                           f"with the original network, dataset and options to resume it, or "
                           f"delete {path} (or pass another --journal) to start afresh")


# reading -------------------------------------------------------------------------------
def read_entries(path: Path) -> ChunkResult:
    """The sum of every complete line of every rank's file."""
    total: Optional[ChunkResult] = None
    for file in sorted(Path(path).glob("run-*-rank-*.jsonl")):
        with open(file, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    continue  # cut short by a crash
                try:
                    entry = decode(json.loads(line))
                except (ValueError, KeyError, TypeError):
                    continue
                if total is not None and _overlap(total.ranges, entry.ranges):
                    raise JournalError(f"{file}: examples {entry.ranges} are recorded twice; "
                                       f"the journal {path} is damaged; delete it to start afresh")
                total = entry if total is None else total.plus(entry)
    return total if total is not None else ChunkResult([], {}, {})


def _overlap(a: list, b: list) -> bool:
    merged = merge_ranges(a + b)
    return sum(y - x for x, y in merged) != sum(y - x for x, y in a) + sum(y - x for x, y in b)


def encode(result: ChunkResult) -> dict:
    entry = {"ranges": result.ranges, "spikes": result.spikes,
             "synops": result.synaptic_operations,
             "metrics": {str(c): {o: {m: _sparse(v) for m, v in ms.items()}
                                  for o, ms in by_output.items()}
                         for c, by_output in result.metrics.items()}}
    if result.predictions:
        entry["predictions"] = [_encode_rows(r) for r in result.predictions]
    return entry


def decode(entry: dict) -> ChunkResult:
    return ChunkResult([tuple(r) for r in entry["ranges"]],
                       {int(c): {o: {m: _dense(v) for m, v in ms.items()}
                                 for o, ms in by_output.items()}
                        for c, by_output in entry["metrics"].items()},
                       {k: int(v) for k, v in entry["spikes"].items()}, int(entry["synops"]),
                       [_decode_rows(r) for r in entry.get("predictions", [])])


def _encode_rows(rows: PredictionRows) -> dict:
    """Per-example rows: indices, labels and classes as numbers, the float32 readout values
    as the base64 of their bytes (exact, and a third of their decimal size)."""
    return {"index": rows.index.tolist(), "label": rows.label.tolist(),
            "predicted": rows.predicted.tolist(), "shape": list(rows.values.shape),
            "values": base64.b64encode(rows.values.astype("<f4").tobytes()).decode()}


def _decode_rows(data: dict) -> PredictionRows:
    shape = tuple(data["shape"])
    return PredictionRows(np.asarray(data["index"], np.int64),
                          np.asarray(data["label"], np.int64),
                          np.asarray(data["predicted"], np.int32).reshape(shape[:2]),
                          np.frombuffer(base64.b64decode(data["values"]), "<f4")
                          .astype(np.float32).reshape(shape))


def _sparse(counts: np.ndarray) -> dict:
    """Non-zero entries only: a chunk fills few cells of a 1000-class confusion matrix."""
    counts = np.asarray(counts)
    flat = counts.reshape(-1)
    nz = np.flatnonzero(flat)
    return {"shape": list(counts.shape), "dtype": counts.dtype.str, "index": nz.tolist(),
            "value": flat[nz].tolist()}


def _dense(data: dict) -> np.ndarray:
    out = np.zeros(int(np.prod(data["shape"], dtype=np.int64)), np.dtype(data["dtype"]))
    out[np.asarray(data["index"], np.int64)] = data["value"]
    return out.reshape(data["shape"])


def remaining(done: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """The ranges of [0, n) not in ``done``."""
    out, position = [], 0
    for a, b in merge_ranges(done):
        if a > position:
            out.append((position, a))
        position = max(position, b)
    if position < n:
        out.append((position, n))
    return out


def split_ranges(ranges: list[tuple[int, int]], rank: int, size: int) -> list[tuple[int, int]]:
    """Rank ``rank``'s contiguous share (by example count, first ranks one more) of ``ranges``."""
    n = sum(b - a for a, b in ranges)
    base, extra = divmod(n, size)
    first = rank * base + min(rank, extra)
    last = first + base + (1 if rank < extra else 0)
    out, offset = [], 0
    for a, b in ranges:
        lo, hi = max(a, a + first - offset), min(b, a + last - offset)
        if lo < hi:
            out.append((lo, hi))
        offset += b - a
    return out
