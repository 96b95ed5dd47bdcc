"""Helpers shared by the benchmark scripts: machine facts, load, timing, JSON and tables.

Benchmarks are scripts, not tests: each writes ``benchmarks/results/<name>.json`` and prints a
table. Run them from the repository root with the project's interpreter, e.g.
``.venv/bin/python benchmarks/scaling.py``.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
DATA = BENCH / "data"          # generated inputs and the trained digits model (git-ignored)
BUILD = BENCH / "build"        # GeNN build directories (git-ignored)
BIN = Path(sys.executable).parent
PYTHON = sys.executable
MPIEXEC = str(BIN / "mpiexec") if (BIN / "mpiexec").exists() else (shutil.which("mpiexec") or "mpiexec")


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    import importlib.metadata as md
    versions = {"python": platform.python_version()}
    for name in ("pygenn", "numpy", "mpi4py", "h5py", "tensorflow-cpu", "keras"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    try:
        mpi = subprocess.run([MPIEXEC, "--version"], capture_output=True, text=True,
                             timeout=20).stdout.strip().splitlines()
        versions["mpiexec"] = next((l.strip() for l in mpi if "Version" in l), mpi[0] if mpi else None)
    except (OSError, subprocess.SubprocessError):
        versions["mpiexec"] = None
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    except (ValueError, OSError):
        mem_gib = None
    return {"host": platform.node(), "cpu_model": cpu_model(), "cores": os.cpu_count(),
            "distsnn": distsnn_revision(),
            "memory_gib": round(mem_gib, 1) if mem_gib else None,
            "os": platform.platform(), "versions": versions}


def distsnn_revision() -> dict:
    """The git commit of the checkout and whether distsnn/ differs from it (other people
    commit to this tree while benchmarks run: record what was measured)."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO,
                                  timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    import importlib.metadata as md
    try:
        version = md.version("distsnn")
    except md.PackageNotFoundError:
        version = None
    return {"commit": git("rev-parse", "--short", "HEAD") or None,
            "distsnn_modified": bool(git("status", "--porcelain", "--", "distsnn")),
            "version": version, "path": _distsnn_path()}


def wait_for_quiet(max_load: float = 1.0, timeout: float = 0.0, poll: float = 5.0) -> list[float]:
    """Wait up to ``timeout`` s for the 1-minute load to drop below ``max_load``."""
    end = time.monotonic() + timeout
    while os.getloadavg()[0] >= max_load and time.monotonic() < end:
        time.sleep(poll)
    return loadavg()


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def summary(values: Sequence[float]) -> dict:
    values = list(values)
    return {"median": median(values), "min": min(values), "max": max(values), "runs": values}


def write_result(name: str, data: dict) -> Path:
    """Write results/<name>.json, or results/<name>-<tag>.json with $DISTSNN_BENCH_TAG set
    (e.g. to measure a patched distsnn without overwriting the reference numbers)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = os.environ.get("DISTSNN_BENCH_TAG")
    if tag:
        name = f"{name}-{tag}"
        data = {**data, "tag": tag, "distsnn_path": _distsnn_path()}
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    tmp.replace(path)
    return path


def _distsnn_path() -> str:
    try:
        import distsnn
        return str(Path(distsnn.__file__).parent)
    except ImportError:  # pragma: no cover
        return "?"


def _json_default(value: Any):
    try:
        import numpy as np
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, Path):
        return str(value)
    return str(value)


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def table(rows: list[dict], columns: list[str], title: Optional[str] = None) -> str:
    """A Markdown table (also readable on a terminal)."""
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
              for i, c in enumerate(columns)]
    lines = []
    if title:
        lines.append(f"\n{title}\n")
    lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        lines.append("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |")
    return "\n".join(lines)


def run_json(cmd: list[str], out: Path, timeout: float = 600, env: Optional[dict] = None) -> dict:
    """Run a worker command that writes JSON to ``out``; raise with its output on failure."""
    if out.exists():
        out.unlink()
    full_env = {**os.environ, **(env or {})}   # distsnn: installed (editable) or $PYTHONPATH
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=REPO)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


class LoadMonitor:
    """CPU use of *other* processes while a block runs, from /proc/stat minus our own usage.

    ``foreign_cores`` is the average number of cores kept busy by processes that are neither
    this one nor its (waited-for) children: ~0 on a quiet machine, ~1 when someone else runs
    a single-threaded job. Use it to spot noisy timings.
    """

    def __enter__(self):
        import resource
        self._res = resource
        self.load_before = loadavg()
        self._stat0 = _busy_seconds()
        self._own0 = _own_cpu(resource)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall_s = time.perf_counter() - self._t0
        busy = _busy_seconds() - self._stat0
        own = _own_cpu(self._res) - self._own0
        self.foreign_cores = max(busy - own, 0.0) / self.wall_s if self.wall_s > 0 else 0.0
        self.load_after = loadavg()

    def as_dict(self) -> dict:
        return {"load_before": self.load_before, "load_after": self.load_after,
                "foreign_cores": round(self.foreign_cores, 3), "wall_s": self.wall_s}


def _busy_seconds() -> float:
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)   # idle + iowait
    busy = sum(values[:8]) - idle                                # up to steal
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu(resource) -> float:
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
