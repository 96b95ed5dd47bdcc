"""The watchdog for hung peers (distsnn.parallel.liveness) under a real ``mpiexec -n 2``."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distsnn.errors import UserError
from distsnn.parallel.liveness import DEFAULT_PEER_TIMEOUT, peer_timeout
from helpers.processes import MPIEXEC, run_mpi

SCRIPT = Path(__file__).parents[1] / "mpi_scripts" / "peer_watch.py"


def test_peer_timeout_from_option_environment_or_default(monkeypatch):
    monkeypatch.delenv("DISTSNN_PEER_TIMEOUT", raising=False)
    assert peer_timeout(None) == DEFAULT_PEER_TIMEOUT
    assert peer_timeout(20) == 20 and peer_timeout(0) == 0
    monkeypatch.setenv("DISTSNN_PEER_TIMEOUT", "45")
    assert peer_timeout(None) == 45 and peer_timeout(10) == 10
    for bad in ("soon", "-1", "2"):
        monkeypatch.setenv("DISTSNN_PEER_TIMEOUT", bad)
        with pytest.raises(UserError, match="peer timeout"):
            peer_timeout(None)


@pytest.mark.mpi
def test_a_slow_peer_is_not_lost_while_the_other_waits_in_a_collective(tmp_path):
    out = tmp_path / "slow.json"
    proc = run_mpi(2, [sys.executable, str(SCRIPT), "slow", str(out)], timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(out.read_text())
    assert seen["seconds"] > 11 and not seen["expired"] and seen["unheard"] == []


@pytest.mark.mpi
def test_a_stopped_peer_is_reported_after_the_timeout(tmp_path):
    out = tmp_path / "stopped.json"
    proc = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, str(SCRIPT), "stopped",
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not out.exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # rank 1 is still stopped
        proc.communicate(timeout=30)
    seen = json.loads(out.read_text())
    assert seen["expired"] and seen["unheard"] == [1]
    assert 5 <= seen["seconds"] < 5 + 15
