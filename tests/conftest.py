"""Fixtures shared by the tests (helpers are modules of ``tests/helpers/``)."""
from __future__ import annotations

from pathlib import Path

import pytest


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
