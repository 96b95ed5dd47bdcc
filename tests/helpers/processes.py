"""Real processes for the tests: commands with a time limit, real ``mpiexec -n`` jobs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MPIEXEC = str(BIN / "mpiexec") if (BIN / "mpiexec").exists() else shutil.which("mpiexec")
DISTSNN = str(BIN / "distsnn") if (BIN / "distsnn").exists() else shutil.which("distsnn")


def run(args: list[str], timeout: float = 300, env: dict | None = None,
        cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; never hangs past ``timeout``."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=cwd)


def run_mpi(n: int, args: list[str], timeout: float = 300, env: dict | None = None,
            cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run ``args`` under a real ``mpiexec -n n``."""
    assert MPIEXEC, "mpiexec not found next to the Python interpreter or on PATH"
    return run([MPIEXEC, "-n", str(n), *args], timeout=timeout, env=env, cwd=cwd)


def journal_chunks(out: Path) -> int:
    """How many chunks the journal of the results file ``out`` holds (all ranks)."""
    journal = out.parent / (out.name + ".journal")
    return sum(len(p.read_bytes().splitlines()) for p in journal.glob("run-*.jsonl"))
