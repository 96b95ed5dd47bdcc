"""The command line through real processes, under a real ``mpiexec -n 2``."""
import json
import re
import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from helpers.processes import DISTSNN, REPO, run, run_mpi

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


PROGRESS_LINE = re.compile(r"distsnn: \d+/31 examples \(\d+%\), [\d.]+ examples/s, "
                           r"(ETA|in) \d+:\d\d:\d\d")


@pytest.fixture(scope="module")
def poisson_net(small_files):
    """The small conv network with Poisson input neurons."""
    from distsnn.netfile import load_network, save_network
    from distsnn.neurons import PoissonInput
    net = load_network(small_files["net"])
    net.inputs[0].neuron = PoissonInput()
    path = small_files["dir"] / "poisson.h5"
    save_network(net, path)
    return path


def test_poisson_evaluation_is_identical_for_one_and_two_ranks(small_files, poisson_net, tmp_path,
                                                                build_dir):
    """Each rank reads only its shard; its examples keep their global Poisson streams.
    Also: the results JSON says what ran, and progress in a log file is plain lines."""
    results = {}
    for ranks in (1, 2):
        out = tmp_path / f"p{ranks}.json"
        argv = [DISTSNN, "evaluate", str(poisson_net), "--data", str(small_files["data"]),
                "-t", "20,40", "-o", str(out), "--build-dir", str(build_dir),
                "--plot", str(tmp_path / f"p{ranks}.svg"), "--ann-accuracy", "87.5"]
        proc = run_mpi(ranks, argv) if ranks > 1 else run(argv)
        assert proc.returncode == 0, proc.stderr
        results[ranks] = (proc, json.loads(out.read_text()), out.read_text())
    (_, one, _), (proc, two, text) = results[1], results[2]
    assert one["metrics"] == two["metrics"] and one["spikes"] == two["spikes"]
    assert one["accuracy_curve"] == two["accuracy_curve"]
    # what ran, when, on which file
    assert two["command"].startswith("distsnn evaluate ") and "-t 20,40" in two["command"]
    assert two["network"]["path"] == str(poisson_net)
    assert abs(datetime.fromisoformat(two["started_at"]) - datetime.now(timezone.utc)) \
        < timedelta(hours=1)
    assert two["ann_accuracy"] == 0.875
    # the table's checkpoints; the curve every 2 % of T = 40 (readouts of the same run)
    assert list(two["metrics"]) == ["20", "40"]
    curve = two["accuracy_curve"]
    assert curve["timesteps"] == list(range(1, 41))
    for steps in ("20", "40"):
        assert curve["accuracy"][int(steps) - 1] == \
            two["metrics"][steps]["sparse_categorical_accuracy"]["result"]
    # the confusion matrix takes one line per row
    assert "[0, " in text or "[1, " in text
    matrix = two["metrics"]["40"]["confusion_matrix"]["matrix"]
    assert sum(1 for line in text.splitlines() if re.fullmatch(r"\s*\[[\d, ]+\],?", line)) \
        == 2 * len(matrix)
    assert (tmp_path / "p2.svg").read_text().startswith("<?xml")
    # not on a terminal: plain progress lines on stderr, before the results table
    assert "\r" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("distsnn: ")]
    assert lines and all(PROGRESS_LINE.fullmatch(line) for line in lines), proc.stderr
    assert lines[-1].startswith("distsnn: 31/31 examples (100%)")
    assert proc.stdout.count("timesteps  accuracy") == 1


def _third_party_lines(text: str) -> list[str]:
    """Lines of TensorFlow, absl, oneDNN or make (GeNN's build)."""
    markers = ("absl", "oneDNN", "tensorflow", "TensorFlow", "cuda", "make:", "make[", "I0000",
               "W0000", "E0000", "WARNING")
    return [line for line in text.splitlines() if any(m in line for m in markers)]


def test_commands_print_no_third_party_lines(digits_files, tmp_path, build_dir):
    d = digits_files
    net = tmp_path / "dn.h5"
    conv = run([DISTSNN, "convert", str(d["model"]), "-m", "data-norm", "--norm-data",
                str(d["norm"]), "-t", "20", "-o", str(net), "--ann-accuracy", "97.5"])
    assert conv.returncode == 0, conv.stderr
    assert conv.stderr == "" and conv.stdout.startswith(f"wrote {net}")
    metadata = _metadata(net)
    assert metadata["method_params"]["reset"] == "subtract"  # the default
    assert metadata["ann_accuracy"] == 0.975  # recorded for the plots
    evaluate = _evaluate(2, net, "--data", d["test"], "-t", "20", build_dir=build_dir)
    assert evaluate.returncode == 0, evaluate.stderr
    assert evaluate.stderr == "" and _third_party_lines(evaluate.stdout) == []
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(d["model"].read_bytes()[:5000])
    error = _evaluate(2, truncated, "--data", d["test"], build_dir=build_dir)
    line = _one_error_line(error)
    assert "truncated" in line and "File not found" not in line
    assert _third_party_lines(error.stdout + error.stderr) == []
    # --verbose shows them again (GeNN's make lines)
    loud = run([DISTSNN, "--verbose", "evaluate", str(net), "--data", str(d["test"]), "-t", "20",
                "--build-dir", str(build_dir), "--no-progress"])
    # "make:" alone, "make[1]:" when the tests themselves run under make (make test)
    assert loud.returncode == 0 and re.search(r"^make(\[\d+\])?: ", loud.stdout, re.M)


def _metadata(path):
    from distsnn.netfile import load_network
    return load_network(path).metadata


def test_bad_options_are_rejected_before_heavy_imports(small_files, tmp_path):
    """--k 0, --ranks 0 and --rounding/--headroom for a rate method fail as usage errors, without
    importing TensorFlow or pygenn."""
    for option, argv in (
            ("--k", ["convert", str(small_files["net"]), "--k", "0", "-o", str(tmp_path / "x")]),
            ("--ranks", ["demo", "--ranks", "0", "--output-dir", str(tmp_path / "demo")]),
            ("--rounding", ["convert", str(small_files["net"]), "--method", "data-norm",
                            "--rounding", "nearest", "-o", str(tmp_path / "x")]),
            ("--headroom", ["convert", str(small_files["net"]), "--method", "qcfs",
                            "--headroom", "2", "-o", str(tmp_path / "x")]),
            ("--plot", ["evaluate", str(small_files["net"]), "--data", str(small_files["data"]),
                        "--plot", str(tmp_path / "plot.jpeg")])):
        proc = run([sys.executable, "-X", "importtime", "-m", "distsnn", *argv])
        assert proc.returncode == 2, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("distsnn: error:")]
        assert len(errors) == 1 and option in errors[0], proc.stderr
        imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                    if line.startswith("import time:")}
        assert not imported & {"tensorflow", "keras", "pygenn"}
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("command", ["", "convert", "evaluate", "inspect", "doctor", "demo"])
def test_help_fits_80_columns_without_cut_names(command):
    proc = run([DISTSNN, *([command] if command else []), "--help"], env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout and "<bool>" not in proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80
    if command in ("convert", "evaluate"):
        assert "--signed-input / --unsigned-input" in proc.stdout
        assert "$DISTSNN_BUILD_DIR" in proc.stdout.replace("\n", "").replace(" ", "")


def test_inspect_prints_once_under_mpiexec(small_files):
    proc = run_mpi(2, [DISTSNN, "inspect", str(small_files["net"])])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("populations:") == 1


def test_launch_template_usage_lines_work(small_files, tmp_path, build_dir):
    """The first usage line of launch/mpirun.sh, with this repository's files."""
    script = REPO / "launch" / "mpirun.sh"
    usage = next(line for line in script.read_text().splitlines()
                 if line.startswith("#   launch/mpirun.sh"))
    for template in ("sbatch_cpu.sh", "sbatch_gpu.sh"):  # the same distsnn arguments
        assert usage.split(" 4 ", 1)[1] in (REPO / "launch" / template).read_text()
    argv = usage.lstrip("# ").split()
    argv = [str(REPO / argv[0]), "2", *argv[2:], "--build-dir", str(build_dir), "--no-progress"]
    argv = [str(small_files["net"]) if a == "net.h5" else str(small_files["data"])
            if a == "test.npz" else a for a in argv]
    proc = run(argv, env={"DISTSNN_CMD": f"{sys.executable} -m distsnn"})
    assert proc.returncode == 0, proc.stderr
    assert "31 examples on 2 rank(s)" in proc.stdout
