"""Shared test helpers: real processes, real mpiexec."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
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


@pytest.fixture
def build_dir(tmp_path_factory) -> Path:
    """A GeNN build directory shared by the tests of one session."""
    return tmp_path_factory.getbasetemp() / "genn-build"


@pytest.fixture(scope="session")
def digits_files(tmp_path_factory) -> dict:
    """The demo's digits CNN trained once per session, with its test and norm sets on disk."""
    import numpy as np

    from distsnn.convert.digits import load_digits_data, train_digits_cnn
    root = tmp_path_factory.mktemp("digits")
    data = load_digits_data(seed=1)
    model, accuracy = train_digits_cnn(data, seed=1)
    model.save(root / "cnn.keras")
    np.savez(root / "test.npz", x=data.x_test, y=data.y_test)
    np.savez(root / "norm.npz", x=data.x_train[:256])
    return {"model": root / "cnn.keras", "test": root / "test.npz", "norm": root / "norm.npz",
            "ann_accuracy": accuracy, "n_test": len(data.y_test), "dir": root}


def _conv_network_files(root: Path, input_neuron, seed: int, n: int) -> dict:
    """A 6x6x1 -> conv 6x6x3 -> dense 4 network file and an ``n``-example dataset."""
    import numpy as np

    from distsnn.connectivity import Conv2D, Dense
    from distsnn.netfile import save_network
    from distsnn.network import Network
    from distsnn.neurons import IntegrateFire
    rng = np.random.default_rng(seed)
    net = Network(metadata={"method": "test"})
    inp = net.add_population("in", (6, 6, 1), input_neuron)
    hid = net.add_population("conv", (6, 6, 3), IntegrateFire())
    out = net.add_population("out", (4,), IntegrateFire(readout="spike_count"))
    net.connect(inp, hid, Conv2D(rng.normal(0, 0.7, (3, 3, 1, 3)).astype(np.float32),
                                 padding="same"))
    net.connect(hid, out, Dense(rng.normal(0, 0.4, (108, 4)).astype(np.float32)))
    net.outputs = [out]
    save_network(net, root / "net.h5")
    x = rng.random((n, 6, 6, 1)).astype(np.float32)
    np.savez(root / "data.npz", x=x, y=rng.integers(0, 4, n))
    return {"net": root / "net.h5", "data": root / "data.npz", "n": n, "dir": root, "x": x}


@pytest.fixture(scope="session")
def small_files(tmp_path_factory) -> dict:
    """A deterministic (constant-current input) conv network file and a 31-example dataset."""
    from distsnn.neurons import IntegrateFireInput
    return _conv_network_files(tmp_path_factory.mktemp("small"), IntegrateFireInput(), 3, 31)


@pytest.fixture(scope="session")
def poisson_files(tmp_path_factory) -> dict:
    """A Poisson-input conv network and 96 examples (random inputs: the journal must be exact)."""
    from distsnn.neurons import PoissonInput
    return _conv_network_files(tmp_path_factory.mktemp("jobs"), PoissonInput(), 5, 96)
