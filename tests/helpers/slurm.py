"""Local Slurm clusters for the tests (launch/local_slurm.sh, launch/local_cluster.sh): bring
one up on free ports in a test folder, the environment of its commands, take it down."""
from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path
from typing import Optional

import pytest


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def slurm_env(conf: Path, extra: Optional[dict] = None) -> dict:
    """The environment for Slurm commands: ours, minus any outer job's SLURM_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["SLURM_CONF"] = str(conf)
    env.update(extra or {})
    return env


def cluster_up(script: Path, directory: Path, ports_variable: str) -> Path:
    """``SCRIPT up DIRECTORY`` on two free ports; its ``SLURM_CONF``. Skips where the script
    cannot have a cluster (not root: exit 3; packages not installable: exit 4), fails with
    the daemons' logs otherwise; takes the cluster down again when ``up`` fails."""
    if os.geteuid() != 0:
        pytest.skip(f"a local Slurm cluster needs root ({script.name} up); run the tests as "
                    f"root to include the Slurm tests")
    ports = free_ports(2)
    env = {**os.environ, ports_variable: f"{ports[0]} {ports[1]}"}
    try:
        up = subprocess.run(["bash", str(script), "up", str(directory)], capture_output=True,
                            text=True, timeout=900, env=env)
    except subprocess.TimeoutExpired:
        cluster_down(script, directory)
        pytest.fail(f"{script.name} up did not finish in 900 s")
    if up.returncode in (3, 4):
        pytest.skip(f"no local Slurm cluster: {up.stderr.strip().splitlines()[-1]}")
    if up.returncode != 0:
        cluster_down(script, directory)
        logs = "".join(f"\n--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                       for p in sorted((directory / "log").glob("*.log")))
        pytest.fail(f"{script.name} up failed ({up.returncode}):\n{up.stderr}{logs}")
    match = re.search(r"^export SLURM_CONF=(.+)$", up.stdout, re.M)
    assert match, f"no export line in the output of {script.name} up: {up.stdout!r}"
    print(f"\n{script.name}: cluster up in {directory} (ports {ports}): {up.stderr.strip()}")
    return Path(match.group(1))


def cluster_down(script: Path, directory: Path) -> subprocess.CompletedProcess:
    down = subprocess.run(["bash", str(script), "down", str(directory)], capture_output=True,
                          text=True, timeout=120)
    print(f"\n{script.name}: cluster down: {down.stderr.strip()}")
    return down
