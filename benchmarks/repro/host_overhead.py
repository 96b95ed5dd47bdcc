"""Repro: distsnn's per-example host overhead (~20-30 us) matters once GeNN's kernels are built
with optimisation (distsnn's default since f6c1c98): on the digits CNN (few-spike, K=8, one
rank) it was ~10% of the time. Two cheap fixes, measured here by monkeypatching:

* ``Population.size`` recomputed ``int(np.prod(shape))`` (~2.3 us) on every call, ~3 calls per
  example: ``math.prod`` (0.06 us) -- adopted in f6c1c98 (the patch below is then a no-op);
* ``SparseCategoricalAccuracy.update`` costs ~12 us for a batch of one example (numpy call
  overhead): buffer labels and readouts and rank them in one vectorised call when
  ``counts()``/``result`` is asked for (still open).

    .venv/bin/python benchmarks/repro/host_overhead.py
"""
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import BUILD, median  # noqa: E402
from workloads import DATA, WORKLOADS  # noqa: E402

from distsnn import metrics as M  # noqa: E402
from distsnn import network as N  # noqa: E402
from distsnn.compilers import FewSpikeCompiler  # noqa: E402


class BufferedAccuracy(M.SparseCategoricalAccuracy):
    def __init__(self):
        super().__init__()
        self._y, self._p = [], []

    def update(self, y_true, y_pred):
        self._y.append(np.asarray(y_true).reshape(-1))
        self._p.append(M._class_scores(y_pred))

    def _flush(self):
        if self._y:
            super().update(np.concatenate(self._y), np.concatenate(self._p))
            self._y, self._p = [], []

    def counts(self):
        self._flush()
        return super().counts()

    @property
    def result(self):
        self._flush()
        return M.SparseCategoricalAccuracy.result.fget(self)


def run(compiled, inp, out, x, y, reps=5):
    times = []
    for _ in range(reps):
        compiled.evaluate({inp: x}, {out: y}, callbacks=[])
        times.append(compiled.last_report.seconds)
    return median(times)


w = WORKLOADS["digits_fs"]
w.ensure(540)
net = w.network()
with np.load(DATA / "digits_test.npz") as f:
    x, y = f["x"], f["y"]
inp, out = net.inputs[0], net.outputs[0]
compiled = FewSpikeCompiler(k=8, rng_seed=1, backend="cpu", optimize_code=True,
                            build_dir=str(BUILD / "repro")).compile(net)
with compiled:
    run(compiled, inp, out, x, y, 1)
    base = run(compiled, inp, out, x, y)
    acc_base = compiled.last_report.metrics[8][out.name]["sparse_categorical_accuracy"]
    original_size = N.Population.size
    N.Population.size = property(lambda self: math.prod(self.shape))
    size_fix = run(compiled, inp, out, x, y)
    original_make = M.make_metric

    def make_metric(spec):
        m = original_make(spec)
        return BufferedAccuracy() if type(m) is M.SparseCategoricalAccuracy else m
    import distsnn.compilers as C
    C.make_metric = make_metric
    both = run(compiled, inp, out, x, y)
    acc_both = compiled.last_report.metrics[8][out.name]["sparse_categorical_accuracy"]
    C.make_metric = original_make
    N.Population.size = original_size
n = len(x)
print(f"digits_fs, {n} examples, optimize_code, one rank (median of 5):")
print(f"  distsnn as is:                 {base:.3f} s ({1e6 * base / n:.0f} us/example)")
print(f"  + Population.size via math.prod:  {size_fix:.3f} s ({1e6 * (base - size_fix) / n:+.1f} us/example saved)")
print(f"  + buffered accuracy updates:     {both:.3f} s ({1e6 * (base - both) / n:+.1f} us/example saved in total)")
print(f"  accuracy unchanged: {acc_base} == {acc_both}: {acc_base == acc_both}")
