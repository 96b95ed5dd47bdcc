"""Distributed evaluation under a real ``mpiexec -n 2`` (CPU backend)."""
import json
import sys
import time
from pathlib import Path

import pytest

from helpers.processes import run, run_mpi

SCRIPTS = Path(__file__).parents[1] / "mpi_scripts"
pytestmark = pytest.mark.mpi


def _library_eval(tmp_path, build_dir, ranks, *extra, input_kind="if"):
    out = tmp_path / f"result_{ranks}_{input_kind}_{len(extra)}.json"
    args = [sys.executable, str(SCRIPTS / "library_eval.py"), str(out), str(build_dir),
            input_kind, *extra]
    proc = run_mpi(ranks, args, timeout=240) if ranks > 1 else run(args, timeout=240)
    return proc, out


@pytest.mark.parametrize("input_kind", ["if", "poisson"])
def test_one_and_two_ranks_give_identical_metrics_and_predictions(tmp_path, build_dir,
                                                                   input_kind):
    """Constant-current input is deterministic; Poisson inputs draw from a hash of the seed
    and the global example index, so they too do not depend on the number of ranks."""
    one, out1 = _library_eval(tmp_path, build_dir, 1, input_kind=input_kind)
    assert one.returncode == 0, one.stderr
    two, out2 = _library_eval(tmp_path, build_dir, 2, input_kind=input_kind)
    assert two.returncode == 0, two.stderr
    r1, r2 = json.loads(out1.read_text()), json.loads(out2.read_text())
    assert r2["ranks"] == 2
    assert r1["examples"] == r2["examples"] == 23  # every example exactly once
    assert r1["report_metrics"] == r2["report_metrics"]
    assert r1["spikes"] == r2["spikes"]
    assert r1["predictions"] == r2["predictions"]
    assert len(r2["predictions"]) == 23
    # the recorder's per-example counts, gathered in dataset order, equal the readout
    assert r2["recorded_counts"] == [[int(v) for v in p] for p in r2["predictions"]]
    # three checkpoints of one run, each counting all 23 examples
    assert sorted(r2["report_metrics"], key=int) == ["10", "20", "40"]
    for metrics in r2["report_metrics"].values():
        assert metrics["out"]["sparse_categorical_accuracy"]["total"] == 23
    # spike counts grow with time: the checkpoints are reads of one run, not separate runs
    assert r2["predictions"] != [[0] * 10] * 23


def test_second_run_reuses_the_genn_build(tmp_path):
    build_dir = tmp_path / "fresh-build"
    first, out = _library_eval(tmp_path, build_dir, 2)
    assert first.returncode == 0, first.stderr
    assert json.loads(out.read_text())["build_reused"] is False
    second, out = _library_eval(tmp_path, build_dir, 2)
    assert second.returncode == 0, second.stderr
    assert json.loads(out.read_text())["build_reused"] is True


def test_failure_on_one_rank_ends_the_whole_job(tmp_path, build_dir):
    start = time.monotonic()
    proc, out = _library_eval(tmp_path, build_dir, 2, "1", "3")
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "injected failure on rank 1 at batch 3" in text
    assert "rank 1 of 2 failed" in text
    assert not out.exists()
    assert elapsed < 120


def test_a_rank_failing_before_mpi_is_initialised_ends_the_whole_job():
    """mlGeNN-style scripts make their communicator late (after training, converting): a
    rank that fails before then must not leave the others waiting in MPI_Init."""
    start = time.monotonic()
    proc = run_mpi(2, [sys.executable, str(SCRIPTS / "fail_before_mpi.py")], timeout=120)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "injected failure on rank 1 before MPI" in text
    assert "rank 1 of 2 failed before MPI was initialised" in text
    assert "passed the barrier" not in text
    assert time.monotonic() - start < 60


def test_converter_flow_is_identical_for_one_and_two_ranks(tmp_path, build_dir):
    """Simple, DataNorm and FewSpike: evaluate, evaluate_batch_iter and predict."""
    results = []
    for ranks in (1, 2):
        out = tmp_path / f"flow{ranks}.json"
        args = [sys.executable, str(SCRIPTS / "converter_flow.py"), str(out), str(build_dir)]
        proc = run_mpi(ranks, args, timeout=400) if ranks > 1 else run(args, timeout=400)
        assert proc.returncode == 0, proc.stderr
        results.append(json.loads(out.read_text()))
    one, two = results[0]["results"], results[1]["results"]
    assert results[1]["ranks"] == 2
    assert set(one) == {"simple", "data-norm", "few-spike"}
    for name in one:
        assert one[name] == two[name], name
        assert one[name]["total"] == one[name]["iter_total"] == 23
        assert one[name]["accuracy"] == one[name]["iter_accuracy"]
        assert len(one[name]["predictions"]) == 23


def test_only_rank_zero_imports_tensorflow(digits_files, build_dir):
    proc = run_mpi(2, [sys.executable, str(SCRIPTS / "tf_imports.py"), str(digits_files["model"]),
                       str(digits_files["norm"]), str(build_dir)], timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = sorted(line for line in proc.stdout.splitlines() if line.startswith("rank "))
    assert lines[0].startswith("rank 0:") and "imported=keras,tensorflow" in lines[0]
    assert lines[1].startswith("rank 1:") and "imported=none" in lines[1]
    assert lines[0].split()[2] == lines[1].split()[2]  # the same network on both ranks


def test_ranks_waiting_at_a_sleeping_barrier_sleep_until_rank_zero_arrives():
    """While rank 0 converts a model the others wait there without polling a core (MPICH's
    blocking barrier keeps one busy, taking it from rank 0 on a shared machine)."""
    proc = run_mpi(2, [sys.executable, str(SCRIPTS / "sleeping_barrier.py")], timeout=120)
    assert proc.returncode == 0, proc.stderr
    ranks = {r["rank"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert ranks[0]["wall"] < 0.5  # rank 1 was already there
    assert ranks[1]["wall"] > 1.4  # it waited for rank 0...
    assert ranks[1]["cpu"] < 0.25 * ranks[1]["wall"]  # ...asleep
