"""Run mlGeNN's own converter tests and TensorFlow examples against distsnn, imports changed.

Needs a checkout (or bare clone) of mlGeNN (github.com/genn-team/ml_genn). The files are
copied into a scratch directory (with ``examples/simple_mnist.py``, a hand-built network with
trained weights) and only these edits are made:

* imports: ``ml_genn_tf.converters.spike_norm`` -> ``distsnn.spike_norm``,
  ``ml_genn_tf.converters`` -> ``distsnn.convert``, ``ml_genn`` -> ``distsnn``;
* what Keras 3 itself requires: weight files end in ``.weights.h5``; layer sizes are Python
  ints (``Dense(int(train_y.max() + 1))``);
* the examples' data (no network here): ``keras.datasets.mnist/cifar10.load_data`` and the
  ``mnist`` package return small deterministic random arrays of the right shapes and
  ``Model.fit`` trains one epoch (so the accuracies mean nothing; what is checked is that the
  examples run);
* ``resnet20_cifar10.py`` only: two bugs of the example itself, which fail under mlGeNN too
  (``convert`` returns 4 values, ``evaluate_batch_iter`` a ``(metrics, data)`` pair);
* for the 2-rank runs: ``communicator=MPI()`` passed to ``create_compiler``, the 1-rank
  run's saved weights reused (``--reuse-tf-model``) and the global numpy/Keras seeds fixed
  (in the local-data module), so that both ranks draw the same norm data (unseeded, they
  build different networks, which distsnn refuses with one error).

Writes ``results/mlgenn_port.json`` (per test file: passed/failed; per example: exit code,
accuracy line, seconds) and prints a Markdown table.

    .venv/bin/python benchmarks/mlgenn_port.py --mlgenn /path/to/ml_genn
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import MPIEXEC

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "mlgenn_port.json"

#: mlGeNN's test files about inference and conversion (its training-only and internal-helper
#: tests are left out).
TEST_FILES = [
    "tests/ml_genn_tf/converter.py", "tests/ml_genn_tf/__init__.py",
    "tests/ml_genn_tf/test_avg_pool_2d.py", "tests/ml_genn_tf/test_avg_pool_conv_2d.py",
    "tests/ml_genn_tf/test_avg_pool_dense_2d.py", "tests/ml_genn_tf/test_conv_2d.py",
    "tests/ml_genn_tf/test_conv_2d_tranpose.py", "tests/ml_genn_tf/test_tf_conversion.py",
    "tests/ml_genn/test_dense.py", "tests/ml_genn/test_one_to_one.py",
    "tests/ml_genn/test_few_spike_compiler.py", "tests/ml_genn/test_spike_recorder.py",
    "tests/ml_genn/callbacks/test_var_recorder.py",
]
EXAMPLE_FILES = ["arguments.py", "plotting.py", "transforms.py", "cifar10_dataset.py",
                 "simple_cnn.py", "vgg16_cifar10.py", "resnet20_cifar10.py"]
#: (script, extra arguments, ranks) per run; small sample counts keep each run to minutes.
#: With 2 ranks the script gets ``communicator=MPI()`` in its ``create_compiler`` call and
#: runs under ``mpiexec -n 2`` with ``--reuse-tf-model`` (the weights the 1-rank run saved:
#: ranks that all train write the same weight file at once); its accuracy must equal the
#: 1-rank run's.
EXAMPLE_RUNS = [
    ("simple_cnn.py", ["--converter", "few-spike"], 1),
    ("simple_cnn.py", ["--converter", "few-spike"], 2),
    ("simple_cnn.py", ["--converter", "data-norm"], 1),
    ("simple_cnn.py", ["--converter", "data-norm"], 2),
    ("simple_cnn.py", ["--converter", "spike-norm"], 1),
    ("vgg16_cifar10.py", ["--converter", "few-spike"], 1),
    ("resnet20_cifar10.py", ["--converter", "few-spike"], 1),
    ("resnet20_cifar10.py", ["--converter", "data-norm"], 1),
    ("simple_mnist.py", [], 1),
]
SMALL = ["--n-train-samples", "64", "--n-test-samples", "8", "--n-norm-samples", "8",
         "--kernel-profiling", "--prefer-in-memory-connect", "--rng-seed", "1"]

IMPORTS = [(r"\bml_genn_tf\.converters\.spike_norm\b", "distsnn.spike_norm"),
           (r"\bml_genn_tf\.converters\b", "distsnn.convert"),
           (r"\bml_genn_tf\b", "distsnn.convert"),
           (r"\bml_genn\b", "distsnn")]
KERAS3 = [(r"_tf_weights\.h5", "_tf_weights.weights.h5"),
          (r"layers\.Dense\(train_y\.max\(\) \+ 1,", "layers.Dense(int(train_y.max() + 1),")]
RESNET20_FIXES = [
    ("mlg_net, mlg_net_inputs, mlg_net_outputs = converter.convert(tf_model)",
     "mlg_net, mlg_net_inputs, mlg_net_outputs, _ = converter.convert(tf_model)"),
    ("accuracy = compiled_net.evaluate_batch_iter(", "accuracy, _ = compiled_net.evaluate_batch_iter("),
]

#: Stands in for the ``mnist`` package (a downloader) that ``simple_mnist.py`` imports.
LOCAL_MNIST = '''
import numpy as np
datasets_url = None
_rng = np.random.default_rng(0)
_images = _rng.integers(0, 256, (256, 28, 28), dtype=np.uint8)
_labels = _rng.integers(0, 10, 256)
def test_images():
    return _images
def test_labels():
    return _labels
'''

#: Installed as sitecustomize.py for the examples: local data, one training epoch.
LOCAL_DATA = '''
import numpy as np
import keras

def _arrays(shape, classes, n_train=256, n_test=64):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n_train + n_test, *shape), dtype=np.uint8)
    y = rng.integers(0, classes, (n_train + n_test, 1) if len(shape) == 3 else n_train + n_test)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])

np.random.seed(0)
keras.utils.set_random_seed(0)
keras.datasets.mnist.load_data = lambda *a, **k: _arrays((28, 28), 10)
keras.datasets.cifar10.load_data = lambda *a, **k: _arrays((32, 32, 3), 10)
_fit = keras.Model.fit
def _one_epoch(self, *args, **kwargs):
    kwargs["epochs"] = 1
    kwargs.pop("validation_data", None)
    if hasattr(args[0], "cardinality"):  # a tf.data.Dataset: one batch
        args = (args[0].take(1),) + args[1:]
    return _fit(self, *args, **kwargs)
keras.Model.fit = _one_epoch
'''


def export(mlgenn: Path, path: str) -> str:
    """One file of mlGeNN from a checkout or a (bare) clone."""
    if (mlgenn / path).exists():
        return (mlgenn / path).read_text()
    return subprocess.run(["git", "-C", str(mlgenn), "show", f"HEAD:{path}"], check=True,
                          capture_output=True, text=True).stdout


def export_bytes(mlgenn: Path, path: str) -> bytes:
    """One binary file of mlGeNN (e.g. the example weights)."""
    if (mlgenn / path).exists():
        return (mlgenn / path).read_bytes()
    return subprocess.run(["git", "-C", str(mlgenn), "show", f"HEAD:{path}"], check=True,
                          capture_output=True).stdout


def rewrite(text: str, rules: list[tuple[str, str]]) -> str:
    for pattern, replacement in rules:
        text = re.sub(pattern, replacement, text)
    return text


def run_tests(mlgenn: Path, scratch: Path) -> dict:
    for path in TEST_FILES:
        target = scratch / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(rewrite(export(mlgenn, path), IMPORTS))
    for package in ("tests", "tests/ml_genn", "tests/ml_genn/callbacks", "tests/ml_genn_tf"):
        (scratch / package / "__init__.py").touch()
    report = scratch / "report.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "--continue-on-collection-errors",
                    f"--junitxml={report}", "tests"], cwd=scratch, capture_output=True)
    return per_file(report.read_text())


def per_file(junit: str) -> dict:
    """{test file: {"passed": n, "failed": n, "first_failure": message}} from JUnit XML."""
    import xml.etree.ElementTree as ET
    files: dict[str, dict] = {}
    for case in ET.fromstring(junit).iter("testcase"):
        module = case.get("classname") or case.get("name", "")  # "" for collection errors
        name = module.replace(".", "/") + ".py"
        entry = files.setdefault(name, {"passed": 0, "failed": 0})
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        if failure is None and case.find("skipped") is None:
            entry["passed"] += 1
        elif failure is not None:
            entry["failed"] += 1
            entry.setdefault("first_failure", (failure.get("message") or "")[:300])
    return files


def run_examples(mlgenn: Path, scratch: Path, timeout: int) -> list[dict]:
    examples = scratch / "examples"
    examples.mkdir()
    for name in EXAMPLE_FILES:
        text = rewrite(rewrite(export(mlgenn, f"examples/tf/{name}"), IMPORTS), KERAS3)
        if name == "resnet20_cifar10.py":
            for old, new in RESNET20_FIXES:
                text = text.replace(old, new)
        (examples / name).write_text(text)
    (examples / "sitecustomize.py").write_text(LOCAL_DATA)
    (examples / "mnist.py").write_text(LOCAL_MNIST)
    (examples / "simple_mnist.py").write_text(
        rewrite(export(mlgenn, "examples/simple_mnist.py"), IMPORTS))
    for weights in ("weights_0_1.npy", "weights_1_2.npy"):
        (examples / weights).write_bytes(export_bytes(mlgenn, f"examples/{weights}"))
    env = {**os.environ, "PYTHONPATH": str(examples), "TF_CPP_MIN_LOG_LEVEL": "3",
           "MPLBACKEND": "Agg"}
    runs = []
    for script, extra, ranks in EXAMPLE_RUNS:
        command = [sys.executable, script, *([] if script == "simple_mnist.py" else SMALL),
                   *extra]
        if ranks > 1:
            command = [MPIEXEC, "-n", str(ranks), sys.executable, distributed(examples, script),
                       *SMALL, *extra, "--reuse-tf-model"]
        start = time.perf_counter()
        try:
            proc = subprocess.run(command, cwd=examples, env=env, capture_output=True,
                                  text=True, timeout=timeout)
            rc, out = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:
            rc, out = "timeout", str(e.stdout or "")
        lines = out.splitlines()
        # every rank prints its line; unbuffered, two ranks' lines can share one
        accuracies = ACCURACY.findall(out)
        run = {"script": script, "args": extra, "ranks": ranks, "rc": rc,
               "seconds": round(time.perf_counter() - start, 1),
               "accuracy": f"Accuracy = {accuracies[0]}%" if accuracies else None,
               "accuracy_lines": len(accuracies),
               "reset_time": next((l.strip() for l in lines
                                   if "custom_update_reset_time" in l), None),
               "tail": None if rc == 0 else "\n".join(lines[-6:])}
        if ranks > 1:
            single = next(r for r in runs if (r["script"], r["args"], r["ranks"])
                          == (script, extra, 1))
            run["accuracy_equals_1_rank"] = (len(accuracies) == ranks and all(
                f"Accuracy = {value}%" == single["accuracy"] for value in accuracies))
        runs.append(run)
        print(f"{script} {' '.join(extra)} on {ranks} rank(s): rc {rc}", flush=True)
    return runs


#: The examples' result line, e.g. ``Accuracy = 97.5%``.
ACCURACY = re.compile(r"Accuracy = ([0-9.]+)%")


def distributed(examples: Path, script: str) -> str:
    """A copy of ``script`` whose compiler gets ``communicator=MPI()``."""
    text = (examples / script).read_text()
    if "converter.create_compiler(" not in text:
        raise ValueError(f"{script}: no converter.create_compiler( call to distribute")
    text = "from distsnn.communicators import MPI\n" + text.replace(
        "converter.create_compiler(", "converter.create_compiler(communicator=MPI(), ")
    name = script.replace(".py", "_mpi.py")
    (examples / name).write_text(text)
    return name


def markdown(result: dict) -> str:
    rows = ["| mlGeNN file (imports changed) | passed | failed |", "|---|---|---|"]
    for name, entry in sorted(result["tests"].items()):
        rows.append(f"| `{name}` | {entry['passed']} | {entry['failed']} |")
    rows += ["", "| mlGeNN example (local data) | ranks | exit code | seconds | accuracy = 1 rank's |",
             "|---|---|---|---|---|"]
    for run in result["examples"]:
        same = {True: "yes", False: "**no**"}.get(run.get("accuracy_equals_1_rank"), "")
        rows.append(f"| `{run['script']} {' '.join(run['args'])}` | {run.get('ranks', 1)} | "
                    f"{run['rc']} | {run['seconds']} | {same} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mlgenn", type=Path, required=True,
                        help="mlGeNN checkout or clone (github.com/genn-team/ml_genn)")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--skip-examples", action="store_true")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per example run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlgenn-port-") as tmp:
        scratch = Path(tmp)
        commit = subprocess.run(["git", "-C", str(args.mlgenn), "rev-parse", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        result = {"mlgenn_commit": commit, "tests": {} if args.skip_tests else run_tests(args.mlgenn, scratch),
                  "examples": [] if args.skip_examples
                  else run_examples(args.mlgenn, scratch, args.timeout)}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
