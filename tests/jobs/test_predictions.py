"""``distsnn evaluate --predictions FILE``: per-example rows in global order, the same on 1 and 2
ranks, complete and identical after a stop and a resume (real mpiexec, real signals)."""
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from helpers.processes import DISTSNN, MPIEXEC, journal_chunks, run, run_mpi

pytestmark = pytest.mark.mpi

SLOW = "4000,12000"  # ~0.05 s per example: slow enough to be stopped part-way


def _argv(files, out, build_dir, predictions, steps="20,40", *extra):
    return [DISTSNN, "evaluate", str(files["net"]), "--data", str(files["data"]), "-t", steps,
            "-o", str(out), "--build-dir", str(build_dir), "--no-progress",
            "--predictions", str(predictions), *map(str, extra)]


def _run(ranks, argv, timeout=300):
    return run_mpi(ranks, argv, timeout=timeout) if ranks > 1 else run(argv, timeout=timeout)


def _load(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def test_one_and_two_ranks_write_the_same_rows_agreeing_with_the_accuracy(
        poisson_files, tmp_path, build_dir):
    files = {}
    for ranks, suffix in ((1, "npz"), (2, "npz"), (1, "csv"), (2, "csv")):
        out, pred = tmp_path / f"r{ranks}{suffix}.json", tmp_path / f"p{ranks}.{suffix}"
        proc = _run(ranks, _argv(poisson_files, out, build_dir, pred, "20,40",
                                 "--chunk-size", 7))
        assert proc.returncode == 0, proc.stderr
        files[ranks, suffix] = (pred, json.loads(out.read_text()))
    one, results = _load(files[1, "npz"][0]), files[2, "npz"][1]
    two = _load(files[2, "npz"][0])
    assert one.keys() == two.keys() == {"index", "label", "timesteps", "predicted", "outputs"}
    for key in one:
        np.testing.assert_array_equal(one[key], two[key])
    n = poisson_files["n"]
    np.testing.assert_array_equal(two["index"], np.arange(n))
    np.testing.assert_array_equal(two["label"], np.load(poisson_files["data"])["y"])
    np.testing.assert_array_equal(two["timesteps"], [20, 40])
    assert two["predicted"].shape == (n, 2) and two["outputs"].shape == (n, 2, 4)
    assert two["outputs"].dtype == np.float32
    np.testing.assert_array_equal(two["predicted"], two["outputs"].argmax(axis=2))
    for column, steps in enumerate(("20", "40")):  # the file's accuracy is the JSON's
        accuracy = results["metrics"][steps]["sparse_categorical_accuracy"]
        assert int((two["predicted"][:, column] == two["label"]).sum()) == accuracy["correct"]
        matrix = np.zeros((4, 4), np.int64)
        np.add.at(matrix, (two["label"], two["predicted"][:, column]), 1)
        assert matrix.tolist() == results["metrics"][steps]["confusion_matrix"]["matrix"]
    assert results["predictions"] == {"path": str(files[2, "npz"][0]), "timesteps": [20, 40]}
    # CSV: the same rows, byte for byte on 1 and 2 ranks, values read back to the same float32
    csv_one, csv_two = (files[r, "csv"][0].read_bytes() for r in (1, 2))
    assert csv_one == csv_two
    lines = csv_two.decode().splitlines()
    assert lines[0].split(",")[:5] == ["index", "label", "predicted_t20", "predicted_t40",
                                       "output_t20_0"]
    table = np.loadtxt(files[2, "csv"][0], delimiter=",", skiprows=1)
    np.testing.assert_array_equal(table[:, :4].astype(np.int64),
                                  np.column_stack([two["index"], two["label"], two["predicted"]]))
    np.testing.assert_array_equal(table[:, 4:].astype(np.float32),
                                  two["outputs"].reshape(n, -1))


def _start_and_stop(ranks, argv, out, how):
    """Start a run, wait for two journaled chunks, then SIGTERM the launcher or SIGKILL the
    whole job (no chance to save anything beyond the journal)."""
    cmd = [MPIEXEC, "-n", str(ranks), *argv] if ranks > 1 else argv
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    while journal_chunks(out) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    if how == "sigterm":
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=120)
    return proc.returncode


@pytest.mark.parametrize("how,ranks,resume_ranks", [("sigterm", 2, 1), ("sigkill", 2, 2)])
def test_a_stopped_and_resumed_run_writes_the_uninterrupted_file(poisson_files, tmp_path,
                                                                  build_dir, how, ranks,
                                                                  resume_ranks):
    ref_out, ref_pred = tmp_path / "ref.json", tmp_path / "ref.npz"
    proc = run(_argv(poisson_files, ref_out, build_dir, ref_pred, SLOW))
    assert proc.returncode == 0, proc.stderr
    out, pred = tmp_path / "r.json", tmp_path / "r.npz"
    argv = _argv(poisson_files, out, build_dir, pred, SLOW, "--chunk-size", 5)
    rc = _start_and_stop(ranks, argv, out, how)
    assert rc != 0 and not pred.exists()
    proc = _run(resume_ranks, argv + ["--resume"])
    assert proc.returncode == 0, proc.stderr
    resumed = json.loads(out.read_text())
    assert 0 < resumed["journal"]["resumed_examples"] < poisson_files["n"]
    reference, got = _load(ref_pred), _load(pred)
    for key in reference:
        np.testing.assert_array_equal(got[key], reference[key])
    assert resumed["metrics"] == json.loads(ref_out.read_text())["metrics"]


@pytest.mark.parametrize("name,message", [("p.txt", "ending in .npz or .csv"),
                                          ("missing/p.npz", "does not exist")])
def test_a_bad_predictions_path_fails_before_the_run_with_one_line(small_files, tmp_path,
                                                                   build_dir, name, message):
    out = tmp_path / "r.json"
    proc = run_mpi(2, _argv(small_files, out, build_dir, tmp_path / name))
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("distsnn:")]
    assert len(lines) == 1 and "--predictions" in lines[0] and message in lines[0], lines
    assert "timesteps" not in proc.stdout and not out.exists()


def test_few_spike_predictions_have_the_one_readout_of_k_steps(tmp_path, build_dir):
    from distsnn.connectivity import Dense
    from distsnn.netfile import save_network
    from distsnn.network import Network
    from distsnn.neurons import FewSpikeRelu, FewSpikeReluInput
    rng = np.random.default_rng(11)
    net = Network(metadata={"method": "test"})
    inp = net.add_population("in", (12,), FewSpikeReluInput(k=8, alpha=1.0))
    hid = net.add_population("hid", (16,), FewSpikeRelu(k=8, alpha=4.0))
    out = net.add_population("out", (3,), FewSpikeRelu(k=8, alpha=4.0))
    net.connect(inp, hid, Dense(rng.normal(0, 0.5, (12, 16)).astype(np.float32)))
    net.connect(hid, out, Dense(rng.normal(0, 0.5, (16, 3)).astype(np.float32)))
    net.outputs = [out]
    save_network(net, tmp_path / "fs.h5")
    np.savez(tmp_path / "fs.npz", x=rng.random((21, 12)).astype(np.float32),
             y=rng.integers(0, 3, 21))
    files = {"net": tmp_path / "fs.h5", "data": tmp_path / "fs.npz"}
    got = {}
    for ranks in (1, 2):
        out_json, pred = tmp_path / f"fs{ranks}.json", tmp_path / f"fs{ranks}.npz"
        proc = _run(ranks, _argv(files, out_json, build_dir, pred, "8", "--chunk-size", 4))
        assert proc.returncode == 0, proc.stderr
        got[ranks] = _load(pred), json.loads(out_json.read_text())
    (one, _), (two, results) = got[1], got[2]
    for key in one:
        np.testing.assert_array_equal(one[key], two[key])
    np.testing.assert_array_equal(two["timesteps"], [8])
    assert two["outputs"].shape == (21, 1, 3)
    accuracy = results["metrics"]["8"]["sparse_categorical_accuracy"]
    assert int((two["predicted"][:, 0] == two["label"]).sum()) == accuracy["correct"]


def test_a_journal_without_predictions_is_not_resumed_with_them(poisson_files, tmp_path,
                                                                build_dir):
    """Its chunks' rows were never kept: the file could not be complete."""
    out = tmp_path / "r.json"
    argv = _argv(poisson_files, out, build_dir, tmp_path / "p.npz", SLOW, "--chunk-size", 5)
    without = [a for a in argv if a not in ("--predictions", str(tmp_path / "p.npz"))]
    assert _start_and_stop(1, without, out, "sigterm") == 128 + signal.SIGTERM
    proc = run(argv)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("distsnn:")]
    assert len(lines) == 1 and "different run" in lines[0] and "predictions" in lines[0], lines
    assert not (tmp_path / "p.npz").exists()
