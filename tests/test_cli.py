"""The command line through real processes, under a real ``mpiexec -n 2``."""
import json

import numpy as np
import pytest

from conftest import DISTSNN, run, run_mpi

pytestmark = pytest.mark.mpi


def _evaluate(ranks, *args, build_dir, timeout=300):
    argv = [DISTSNN, "evaluate", *map(str, args), "--build-dir", str(build_dir), "--no-progress"]
    return run_mpi(ranks, argv, timeout=timeout) if ranks > 1 else run(argv, timeout=timeout)


def test_evaluate_two_ranks_writes_results_whose_counts_sum_to_the_dataset(small_files, tmp_path,
                                                                         build_dir):
    out, plot = tmp_path / "r.json", tmp_path / "r.png"
    proc = _evaluate(2, small_files["net"], "--data", small_files["data"], "-t", "10,30",
                     "-o", out, "--plot", plot, build_dir=build_dir)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert r["ranks"] == 2 and r["dataset"]["examples"] == 31
    for steps in ("10", "30"):
        metrics = r["metrics"][steps]
        assert metrics["sparse_categorical_accuracy"]["total"] == 31
        assert np.sum(metrics["confusion_matrix"]["matrix"]) == 31
    assert r["spikes"]["examples"] == 31
    assert set(r["timings_s"]) >= {"broadcast", "build", "load", "evaluation", "reduction"}
    assert r["seeds"]["base"] == 1
    assert plot.stat().st_size > 1000
    # rank 0 alone prints the table
    assert proc.stdout.count("timesteps  accuracy") == 1
    # one rank gives the same counts (constant-current input is deterministic)
    out1 = tmp_path / "r1.json"
    one = _evaluate(1, small_files["net"], "--data", small_files["data"], "-t", "10,30", "-o", out1,
                    build_dir=build_dir)
    assert one.returncode == 0, one.stderr
    r1 = json.loads(out1.read_text())
    assert r1["metrics"] == r["metrics"] and r1["spikes"] == r["spikes"]


def test_inspect_shows_populations_and_metadata(small_files):
    proc = run([DISTSNN, "inspect", str(small_files["net"])])
    assert proc.returncode == 0, proc.stderr
    assert "conv" in proc.stdout and "conv2d" in proc.stdout and '"method": "test"' in proc.stdout


def _one_error_line(proc):
    lines = [line for line in proc.stderr.splitlines() if line.startswith("distsnn: error:")]
    assert proc.returncode != 0
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_bad_inputs_give_one_line_from_rank_zero(small_files, tmp_path, build_dir):
    net, data = small_files["net"], small_files["data"]
    missing = _one_error_line(_evaluate(2, tmp_path / "nope.h5", "--data", data,
                                        build_dir=build_dir))
    assert "nope.h5" in missing and "no such file" in missing
    missing_data = _one_error_line(_evaluate(2, net, "--data", tmp_path / "no.npz",
                                             build_dir=build_dir))
    assert "no.npz" in missing_data
    wrong = tmp_path / "wrong_shape.npz"
    np.savez(wrong, x=np.zeros((5, 7, 7, 1), np.float32), y=np.zeros(5, np.int64))
    shape = _one_error_line(_evaluate(2, net, "--data", wrong, build_dir=build_dir))
    assert "(7, 7, 1)" in shape and "(6, 6, 1)" in shape
    labels = tmp_path / "labels.npz"
    np.savez(labels, x=small_files["x"], y=np.arange(31) % 9)
    label = _one_error_line(_evaluate(2, net, "--data", labels, build_dir=build_dir))
    assert "label" in label and "out of range" in label and "4 classes" in label
    option = _one_error_line(_evaluate(2, net, "--data", data, "--backend", "tpu",
                                       build_dir=build_dir))
    assert "--backend" in option and "tpu" in option
    steps = _one_error_line(_evaluate(2, net, "--data", data, "-t", "ten", build_dir=build_dir))
    assert "--timesteps" in steps
    ranks = _one_error_line(run_mpi(2, [DISTSNN, "evaluate", str(net), "--data",
                                        str(_tiny(tmp_path)), "--no-progress"]))
    assert "more ranks than examples" in ranks


def _tiny(tmp_path):
    path = tmp_path / "one.npz"
    np.savez(path, x=np.zeros((1, 6, 6, 1), np.float32), y=np.zeros(1, np.int64))
    return path


@pytest.mark.slow
def test_spike_norm_on_digits_is_within_three_points_of_data_norm(digits_files, tmp_path,
                                                                   build_dir):
    """Convert with spike-norm on 2 ranks, then evaluate both methods at T=500 (the CLI's
    defaults: analog input and readout, reset by subtraction)."""
    d = digits_files
    net = tmp_path / "spike_norm.h5"
    conv = run_mpi(2, [DISTSNN, "convert", str(d["model"]), "--method", "spike-norm",
                       "--norm-data", str(d["norm"]), "-t", "500", "-o", str(net),
                       "--build-dir", str(build_dir)], timeout=600)
    assert conv.returncode == 0, conv.stderr
    results = {}
    for name, source, extra in (("spike-norm", net, []),
                                ("data-norm", d["model"], ["--method", "data-norm",
                                                           "--norm-data", d["norm"]])):
        out = tmp_path / f"{name}.json"
        proc = _evaluate(2, source, "--data", d["test"], "-t", "500", "-o", out, *extra,
                         build_dir=build_dir)
        assert proc.returncode == 0, proc.stderr
        results[name] = json.loads(out.read_text())["metrics"]["500"][
            "sparse_categorical_accuracy"]["result"]
    assert results["data-norm"] > d["ann_accuracy"] - 0.03
    assert results["spike-norm"] >= results["data-norm"] - 0.03, results
