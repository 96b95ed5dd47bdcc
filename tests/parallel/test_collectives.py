"""The communicator's gathers and reductions on 3 real ranks (``mpiexec -n 3``)."""
import json
import sys
from pathlib import Path

import pytest

from helpers.processes import run_mpi

SCRIPTS = Path(__file__).parents[1] / "mpi_scripts"
pytestmark = pytest.mark.mpi


def test_gathers_prefix_sums_agreement_and_packed_reductions():
    proc = run_mpi(3, [sys.executable, str(SCRIPTS / "collectives.py")], timeout=120)
    assert proc.returncode == 0, proc.stderr
    ranks = {r["rank"]: r for r in json.loads(proc.stdout)}
    assert ranks[0]["gathered"] == [[0, 0], [2, 2], [2, 2], [2, 2]]  # rank order, rank 1 empty
    assert ranks[1]["gathered"] is None and ranks[2]["gathered"] is None
    assert [ranks[r]["exclusive_sum"] for r in range(3)] == [0, 1, 1]
    assert all(ranks[r]["min"] == [5, -2] for r in range(3))
    assert all(ranks[r]["agree"] == "rank 1: only rank 1 sees this" for r in range(3))
    assert all(ranks[r]["mismatch"] for r in range(3))  # every rank raises, none hangs
    assert [ranks[r]["ok"] for r in range(3)] == [0, 1, 2]
    for r in range(3):  # rank 1's empty confusion matrix took the others' shape
        assert ranks[r]["confusion"] == [[1, 0, 1], [0, 0, 0], [0, 0, 0]]
        assert ranks[r]["accuracy"] == [1, 2] and ranks[r]["mse"] == [2.0, 6.0]
        assert ranks[r]["extra"] == [3, 3]
