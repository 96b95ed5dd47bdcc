"""Importing distsnn's library API loads no framework: pygenn only once ``with compiled_net:``
builds the model, mpi4py only when a communicator is made, TensorFlow/onnx only to convert."""
from __future__ import annotations

import json
import sys

from helpers.processes import run

SCRIPT = """
import json, sys
import numpy as np
HEAVY = ("pygenn", "mpi4py", "tensorflow", "keras", "onnx", "onnxruntime", "torch")
loaded = lambda: sorted(m for m in HEAVY if m in sys.modules)
import distsnn, distsnn.compilers, distsnn.convert, distsnn.spike_norm, distsnn.callbacks
import distsnn.metrics, distsnn.netfile, distsnn.utils.data, distsnn.utils.value, distsnn.genn
from distsnn.compilers import InferenceCompiler
from distsnn.connectivity import Dense
from distsnn.network import Network
from distsnn.neurons import IntegrateFire, PoissonInput
imported = loaded()
net = Network()
inp = net.add_population("in", (2,), PoissonInput())
out = net.add_population("out", (2,), IntegrateFire(readout="spike_count"))
net.connect(inp, out, Dense(np.eye(2, dtype=np.float32)))
net.outputs = [out]
compiled = InferenceCompiler(evaluate_timesteps=2, backend="cpu", rng_seed=1,
                             build_dir=sys.argv[1]).compile(net)
compiled_ = loaded()
with compiled:
    loaded_ = loaded()
print(json.dumps({"imported": imported, "compiled": compiled_, "loaded": loaded_}))
"""


def test_the_library_api_imports_no_framework_before_with(build_dir):
    proc = run([sys.executable, "-c", SCRIPT, str(build_dir)])
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout.strip().splitlines()[-1])
    assert status["imported"] == [] and status["compiled"] == []
    assert status["loaded"] == ["pygenn"]  # loading builds with pygenn, and nothing else
