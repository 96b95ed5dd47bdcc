"""A float64 numpy simulator of NIR graphs, step by step as the PyTorch tools run them.

Within one step every node sees its feed-forward inputs of the same step (no hop latency);
a recurrent edge carries the previous step's output. Neuron equations follow each source
preset (``distsnn.convert.nir_presets``'s table), written out here independently.
"""
from __future__ import annotations

import math

import numpy as np

from distsnn.convert.nir_graph import flatten

CONVENTIONS = {  # dt, exact, reset, current_first, jump, multi_spike
    "spec": (1e-4, False, "zero", False, False, False),
    "snntorch": (1e-4, False, "subtract_late", True, False, False),
    "norse": (1e-3, False, "zero", False, True, False),
    "sinabs": (1.0, True, "subtract", False, False, True),
}


def _conv(x, w, stride, pad, groups=1, dilation=1):
    """Cross-correlation of one example ``x[C, *s]``, summed tap by tap."""
    nd = w.ndim - 2
    stride, pad, dil = (np.broadcast_to(np.atleast_1d(v), (nd,)).astype(int)
                        for v in (stride, pad, dilation))
    x = np.pad(x, [(0, 0)] + [(p, p) for p in pad])
    out_c, in_g = w.shape[:2]
    k = w.shape[2:]
    out_sz = [(x.shape[1 + a] - dil[a] * (k[a] - 1) - 1) // stride[a] + 1 for a in range(nd)]
    y = np.zeros([out_c] + out_sz)
    per = out_c // groups
    for g in range(groups):
        xs = x[g * in_g:(g + 1) * in_g]
        for tap in np.ndindex(*k):
            window = xs[(slice(None),) + tuple(
                slice(tap[a] * dil[a], tap[a] * dil[a] + stride[a] * (out_sz[a] - 1) + 1,
                      stride[a]) for a in range(nd))]
            y[g * per:(g + 1) * per] += np.tensordot(w[(slice(g * per, (g + 1) * per),
                                                        slice(None)) + tap], window, axes=1)
    return y


def _linear(kind, node, x):
    if kind in ("Identity", "Delay", "Input", "Output"):
        return x
    if kind == "Flatten":
        return x.reshape(-1)
    if kind == "Scale":
        return x * np.asarray(node.scale)
    if kind in ("Affine", "Linear"):
        y = np.asarray(node.weight) @ x.reshape(-1)
        return y + np.asarray(node.bias) if kind == "Affine" else y
    if kind in ("Conv1d", "Conv2d"):
        w = np.asarray(node.weight, np.float64)
        pad = node.padding
        y = _conv(x, w, node.stride, pad, int(np.asarray(node.groups)), node.dilation)
        return y + np.asarray(node.bias).reshape((-1,) + (1,) * (w.ndim - 2))
    if kind in ("SumPool2d", "AvgPool2d"):
        k = tuple(int(v) for v in np.broadcast_to(np.atleast_1d(node.kernel_size), (2,)))
        c = x.shape[0]
        w = np.zeros((c, 1) + k) + (1.0 / math.prod(k) if kind == "AvgPool2d" else 1.0)
        return _conv(x, w, node.stride, node.padding, groups=c)
    raise ValueError(kind)


class _Neuron:
    def __init__(self, kind, node, conv):
        self.kind, self.node = kind, node
        self.dt, self.exact, self.reset, self.current_first, self.jump, self.multi = conv
        p = {k: np.asarray(v, np.float64) for k, v in vars(node).items()
             if isinstance(v, (np.ndarray, float, int)) and k not in ("input_type",)}
        self.p = p
        shape = np.shape(p.get("v_threshold", p.get("r", p.get("threshold"))))
        self.v = np.zeros(shape)
        self.i = np.zeros(shape)
        self.late = np.zeros(shape)

    def step(self, x):
        p, dt = self.p, self.dt
        if self.kind == "Threshold":
            return (x >= p["threshold"]).astype(float), x
        if self.kind.startswith("Cuba"):
            tau_s = p["tau_syn"]
            a = math.e ** (-dt / tau_s) if self.exact else 1 - dt / tau_s
            jump = p["w_in"] * x * (1.0 if self.jump else (1 - a))
            new_i = a * self.i + jump
            c = new_i if self.current_first else self.i
            self.i = new_i
        else:
            c = x
        if self.kind in ("IF", "I"):
            v = self.v + dt * p["r"] * c
        else:
            tau = p["tau_mem"] if self.kind.startswith("Cuba") else p["tau"]
            a = np.exp(-dt / tau) if self.exact else 1 - dt / tau
            v = a * self.v + (1 - a) * (p["v_leak"] + p["r"] * c)
        if self.kind in ("LI", "I", "CubaLI"):
            self.v = v
            return None, v
        thr = p["v_threshold"]
        if self.reset == "subtract_late":
            v = v - self.late * thr
        elif self.reset == "zero_late":
            v = np.where(self.late > 0, p["v_reset"], v)
        record = v.copy()
        spikes = (v >= thr).astype(float)
        if self.multi:
            spikes = np.where(v >= thr, np.floor(v / thr), 0.0)
        if self.reset == "zero":
            v = np.where(spikes > 0, p["v_reset"], v)
        elif self.reset == "subtract":
            v = v - spikes * thr
        self.late = spikes  # counts: a late subtraction removes one threshold per spike
        self.v = v
        return spikes, record


def simulate(graph, raster: np.ndarray, source: str = "spec", dt: float | None = None,
             reset: str | None = None) -> dict:
    """``{node: {"spikes": [T, *shape], "v": [T, *shape]}}`` for every neuron node of
    ``graph`` driven by ``raster[T, *input_shape]``."""
    conv = list(CONVENTIONS[source])
    if dt is not None:
        conv[0] = dt
    if reset is not None:
        conv[2] = reset
    flat = flatten(graph)
    kinds, nodes = flat.kinds, flat.nodes
    start = next(n for n, k in kinds.items() if k == "Input")
    order, back, state = [], set(), {}

    def visit(n):
        state[n] = 1
        for t in flat.succs(n):
            if state.get(t) == 1:
                back.add((n, t))
            elif t not in state:
                visit(t)
        state[n] = 2
        order.append(n)
    visit(start)
    order.reverse()
    neurons = {n: _Neuron(kinds[n], nodes[n], conv) for n in order
               if kinds[n] in ("IF", "LIF", "LI", "I", "CubaLIF", "CubaLI", "Threshold")}

    def silent(n, seen=()):  # a node's output before the first step (sources silent)
        if n in neurons:
            return np.zeros(neurons[n].v.shape)
        ins = [silent(q, seen + (n,)) for q in flat.preds(n) if q not in seen]
        return _linear(kinds[n], nodes[n], sum(ins[1:], ins[0]))
    prev: dict = {p: silent(p) for p, _ in back}
    lines = {n: [] for n in order if kinds[n] == "Delay"}  # inputs of earlier steps
    out = {n: {"spikes": [], "v": []} for n in neurons}
    for frame in np.asarray(raster, np.float64):
        now: dict = {}
        for n in order:
            if n == start:
                now[n] = frame
                continue
            ins = [(prev if (p, n) in back else now).get(p) for p in flat.preds(n)]
            ins = [v for v in ins if v is not None]
            x = sum(ins[1:], ins[0]) if ins else 0.0
            if n in lines:  # a delay line starts silent (0)
                k = int(np.rint(np.unique(np.asarray(nodes[n].delay))[0] / conv[0]))
                lines[n].append(x)
                now[n] = lines[n][-1 - k] if len(lines[n]) > k else np.zeros(np.shape(x))
            elif n in neurons:
                spikes, v = neurons[n].step(x)
                out[n]["v"].append(v)
                if spikes is not None:
                    out[n]["spikes"].append(spikes)
                now[n] = spikes if spikes is not None else v
            else:
                now[n] = _linear(kinds[n], nodes[n], x)
        prev = now
    return {n: {k: np.array(v) for k, v in d.items() if v} for n, d in out.items()}
