"""NIR front-end: a NIR graph (file or ``nir.NIRGraph``) to distsnn's network IR.

Nested graphs are flattened (a sub-graph's Input and Output become identities); the linear
nodes between two neuron nodes (Affine, Linear, Scale, Conv, pooling, Flatten, Delay) are
composed into one connection per path; neuron nodes become
:class:`~distsnn.nir_neurons.NIRNeuron` populations discretised by a source preset
(:mod:`distsnn.convert.nir_presets`), the Input a :class:`~distsnn.nir_neurons.RasterInput`.

Depth alignment: the PyTorch tools pass a step's input through every layer within that step,
GeNN one hop per step. A population at depth d (longest feed-forward path from the input)
therefore runs its T steps from step d, forward connections get ``d_target - d_source - 1``
extra delay steps and recurrent edges ``d_target - d_source`` (0 for a self-loop), and an
example takes ``T + D`` steps (D: the deepest population). A loop spanning several layers
would need a negative delay: it runs ``d_source - d_target`` steps late (recorded in the
network's metadata as not aligned).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from distsnn.connectivity import AvgPoolConv2D, AvgPoolDense2D, Conv2D, Dense, OneToOne
from distsnn.convert.nir_graph import FlatGraph, NIRGraphError, flatten, read_graph
from distsnn.convert.nir_ops import (
    LINEAR_NODES,
    NEURON_NODES,
    apply,
    conv_padding,
    dense_kernel,
    ir_order,
    ir_shape,
    pair,
    to_ir,
)
from distsnn.convert.nir_presets import NIRPreset, discretise, make_preset
from distsnn.network import Network
from distsnn.nir_neurons import NIRNeuron, RasterInput

#: Largest composed chain spelt out as a dense matrix (weights).
MAX_DENSE = 2 ** 26


@dataclass
class Chain:
    """One path of linear nodes (in order) from a source population to a target."""

    source: str
    ops: list[str]


class _Converter:
    def __init__(self, flat: FlatGraph, preset: NIRPreset, li_readout: str = "avg_var"):
        self.g, self.preset, self.li_readout = flat, preset, li_readout
        self.shapes: dict[str, tuple[int, ...]] = {}
        for name, kind in flat.kinds.items():
            if kind not in LINEAR_NODES + NEURON_NODES + ("Input", "Output"):
                raise NIRGraphError(f"node {name!r} is a NIR {kind}, which distsnn cannot "
                                    f"convert; replace it with {', '.join(NEURON_NODES)} or "
                                    f"linear nodes")
        for src, dst in flat.edges:
            for end, peer in ((src, dst), (dst, src)):
                if end not in flat.kinds:
                    raise NIRGraphError(f"an edge of node {peer!r} names {end!r}, which is not "
                                        f"a node of the graph; fix the edge list")
        inputs = [n for n, k in flat.kinds.items() if k == "Input"]
        if len(inputs) != 1:
            raise NIRGraphError("the graph has no Input node: add a nir.Input node feeding the "
                                "first layer" if not inputs else
                                f"the graph has {len(inputs)} Input nodes ({inputs}); distsnn "
                                f"takes one input: merge them into one Input")
        self.input = inputs[0]
        self.outputs = [n for n, k in flat.kinds.items() if k == "Output"]
        if not self.outputs:
            raise NIRGraphError("the graph has no Output node: add a nir.Output fed by the "
                                "neuron node to read out")
        self.pops = [self.input] + [n for n, k in flat.kinds.items() if k in NEURON_NODES]

    # shapes ----------------------------------------------------------------------------
    def shape(self, name: str, seen: tuple = ()) -> tuple[int, ...]:
        if name in self.shapes:
            return self.shapes[name]
        kind, node = self.g.kinds[name], self.g.nodes[name]
        if kind == "Input":
            shape = _type_shape(node, "input") or _type_shape(node, "output")
            if shape is None:
                raise NIRGraphError(f"Input node {name!r} has no shape; give nir.Input an "
                                    f"input_type")
        elif kind in NEURON_NODES:
            shape = _neuron_shape(node) or self._in_shape(name, seen)
        else:
            x = np.zeros((1,) + self._in_shape(name, seen))
            try:
                shape = tuple(apply(kind, node, x, False).shape[1:])
            except (ValueError, IndexError) as err:
                raise NIRGraphError(f"node {name!r} ({kind}) does not fit the shape "
                                    f"{x.shape[1:]} it receives ({err}); fix its weights or "
                                    f"the layer before it") from None
        self.shapes[name] = shape
        return shape

    def _in_shape(self, name: str, seen: tuple) -> tuple[int, ...]:
        preds = [p for p in self.g.preds(name) if p not in seen]
        if not preds:
            raise NIRGraphError(f"node {name!r} has no input it can take its shape from; "
                                f"connect it to the graph")
        shapes = {self.shape(p, seen + (name,)) for p in preds}
        if len(shapes) > 1:
            raise NIRGraphError(f"node {name!r} receives inputs of different shapes "
                                f"{sorted(shapes)}; make them equal")
        return shapes.pop()

    # paths and biases ------------------------------------------------------------------
    def paths(self, target: str, stack: tuple = ()) -> list[Chain]:
        out = []
        for p in self.g.preds(target):
            if p in self.pops:
                out.append(Chain(p, []))
            elif p in stack:
                raise NIRGraphError(f"node {p!r} lies on a cycle through no neuron node; every "
                                    f"recurrent loop needs a neuron node (e.g. LIF) on it")
            elif self.g.kinds[p] == "Output":
                raise NIRGraphError(f"Output node {p!r} feeds node {target!r}; an Output must "
                                    f"end the graph")
            else:
                out += [Chain(q.source, q.ops + [p]) for q in self.paths(p, stack + (p,))]
        return out

    def bias(self, target: str) -> np.ndarray:
        """The constant input that target receives when every source is silent."""
        total = np.zeros(self.shape(target))
        for p in self.g.preds(target):
            if p not in self.pops:
                total = total + self._silent(p, ()).reshape(total.shape)
        return total

    def _silent(self, name: str, stack: tuple) -> np.ndarray:
        """A linear node's output while every population is silent (its biases)."""
        x = np.zeros((1,) + self._in_shape(name, ()))
        for p in self.g.preds(name):
            if p not in self.pops and p not in stack:
                x = x + self._silent(p, stack + (name,)).reshape(x.shape)
        return apply(self.g.kinds[name], self.g.nodes[name], x, True)[0]

    # the network -----------------------------------------------------------------------
    def depths(self) -> tuple[dict[str, int], set[tuple[str, str]]]:
        """Longest feed-forward path to each population; the recurrent (back) edges."""
        edges = {(q.source, t) for t in self.pops[1:] for q in self.paths(t)}
        back: set[tuple[str, str]] = set()
        state: dict[str, int] = {}

        def visit(n: str) -> None:
            state[n] = 1
            for s, t in sorted(edges):
                if s != n:
                    continue
                if state.get(t) == 1:
                    back.add((s, t))
                elif t not in state:
                    visit(t)
            state[n] = 2
        visit(self.input)
        for n in self.pops:
            if n not in state:
                visit(n)
        depth = {n: 0 for n in self.pops}
        for _ in self.pops:
            for s, t in edges - back:
                depth[t] = max(depth[t], depth[s] + 1)
        return depth, back

    def check_shapes(self) -> None:
        """Evaluate every linear node's shape; each neuron node must fit what it receives."""
        for target in self.pops[1:] + self.outputs:
            self.paths(target)  # a loop of linear nodes alone is refused first
        for name, kind in self.g.kinds.items():
            if kind in LINEAR_NODES:
                self.shape(name)
        for name in self.pops[1:]:
            for p in self.g.preds(name):
                got = self.shape(p)
                if math.prod(got) != math.prod(self.shape(name)):
                    raise NIRGraphError(f"node {name!r} ({self.g.kinds[name]}) has shape "
                                        f"{self.shape(name)} but {p!r} sends it {got}; fix the "
                                        f"weights of {p!r} or the parameters of {name!r}")

    def network(self, metadata: dict) -> Network:
        self.check_shapes()
        depth, back = self.depths()
        reached = {self.input} | {t for t in self.pops[1:] if self.paths(t)}
        span = max(depth.values())
        net = Network(metadata=metadata)
        pops = {}
        ir_name = {n: _safe(n) for n in self.pops}
        shape = self.shape(self.input)
        pops[self.input] = net.add_population(ir_name[self.input], ir_shape(shape),
                                              RasterInput(tail=span))
        net.inputs = [pops[self.input]]
        readout_of = {}
        for out in self.outputs:
            for q in self.paths(out):
                if q.ops or q.source == self.input:
                    raise NIRGraphError(f"Output node {out!r} reads "
                                        f"{(q.ops or [q.source])[-1]!r}, which is no neuron "
                                        f"node; end the graph with a neuron node (e.g. LI) "
                                        f"before the Output")
                readout_of[q.source] = out
        for name in self.pops[1:]:
            node, kind = self.g.nodes[name], self.g.kinds[name]
            nshape = self.shape(name)
            if name not in reached:
                raise NIRGraphError(f"neuron node {name!r} receives no input; connect it or "
                                    f"remove it")
            fields = {k: (to_ir(v, nshape) if isinstance(v, np.ndarray) else v)
                      for k, v in discretise(node, self.preset).items()}
            fields = {k: _compact(v) for k, v in fields.items()}
            bias = self.bias(name)
            readout = None
            if name in readout_of:
                readout = "spike_count" if "v_thresh" in fields else self.li_readout
            neuron = NIRNeuron(node=kind, bias=_compact(to_ir(bias, nshape)) if np.any(bias)
                               else None, start=depth[name], tail=span - depth[name],
                               readout=readout, **fields)
            pops[name] = net.add_population(ir_name[name], ir_shape(nshape), neuron)
        late = []
        for name in self.pops[1:]:
            for q in self.paths(name):
                recurrent = (q.source, name) in back
                extra = depth[name] - depth[q.source] - (0 if recurrent else 1)
                if extra < 0:
                    late.append(f"{q.source} -> {name}: {-extra} step(s) late")
                    extra = 0
                conn = self.connectivity(q, name, self._delay(q) + extra)
                net.connect(pops[q.source], pops[name], conn,
                            name=f"{ir_name[q.source]}_to_{ir_name[name]}")
        net.outputs = [pops[n] for n in self.pops[1:] if n in readout_of]
        net.metadata["nir"].update(
            depth={ir_name[n]: depth[n] for n in self.pops}, span=span,
            recurrent=sorted(f"{s} -> {t}" for s, t in back), not_aligned=late,
            nodes={ir_name[n]: self.g.kinds[n] for n in self.pops},
            graph={"nodes": dict(self.g.kinds), "edges": [list(e) for e in self.g.edges]},
            input_shape=list(shape))
        return net

    def _delay(self, q: Chain) -> int:
        total = 0
        for op in q.ops:
            if self.g.kinds[op] != "Delay":
                continue
            d = np.unique(np.asarray(self.g.nodes[op].delay, np.float64)) / self.preset.dt
            if d.size != 1 or abs(d[0] - round(d[0])) > 1e-6 or d[0] < 0:
                raise NIRGraphError(f"Delay node {op!r} holds delays {sorted(set(d * self.preset.dt))}"
                                    f" that are not one whole number of steps of dt="
                                    f"{self.preset.dt:g}; use one delay that is a multiple of "
                                    f"--nir-dt")
            total += int(np.rint(d[0]))
        return total

    # connectivity ----------------------------------------------------------------------
    def connectivity(self, q: Chain, target: str, delay: int):
        ops = [o for o in q.ops if self.g.kinds[o] not in ("Delay", "Identity")]
        kinds = [self.g.kinds[o] for o in ops]
        nodes = [self.g.nodes[o] for o in ops]
        src = self.shape(q.source)
        if not ops and src == self.shape(target):
            return OneToOne(1.0, delay=delay)
        if kinds == ["Scale"] and src == self.shape(target):
            return OneToOne(to_ir(nodes[0].scale, src).astype(np.float32), delay=delay)
        if kinds in (["Affine"], ["Linear"], ["Flatten", "Affine"], ["Flatten", "Linear"]):
            w = np.asarray(nodes[-1].weight, np.float64).reshape(-1, math.prod(src))
            w = w[ir_order(self.shape(target))][:, ir_order(src)]
            return Dense(weight=w.T.astype(np.float32), delay=delay)
        if len(src) == 3 and kinds == ["Conv2d"]:
            w = dense_kernel(nodes[0])
            pad = conv_padding(nodes[0], w.shape[2:])
            return Conv2D(weight=w.transpose(2, 3, 1, 0).astype(np.float32),
                          strides=pair(nodes[0].stride), padding=tuple((p, p) for p in pad),
                          delay=delay)
        if len(src) == 2 and kinds == ["Conv1d"]:
            w = dense_kernel(nodes[0])
            (pad,) = conv_padding(nodes[0], w.shape[2:])
            return Conv2D(weight=w[:, :, None, :].transpose(2, 3, 1, 0).astype(np.float32),
                          strides=(1, pair(nodes[0].stride, 1)[0]),
                          padding=((0, 0), (pad, pad)), delay=delay)
        if len(src) == 3 and kinds in (["SumPool2d"], ["AvgPool2d"]):  # a per-channel conv
            k, c = pair(nodes[0].kernel_size), src[0]
            w = np.einsum("ij,hw->hwij", np.eye(c),
                          np.full(k, 1.0 if kinds[0] == "SumPool2d" else 1.0 / math.prod(k)))
            return Conv2D(weight=w.astype(np.float32), strides=pair(nodes[0].stride),
                          padding=tuple((p, p) for p in pair(getattr(nodes[0], "padding", 0))),
                          delay=delay)
        if len(src) == 3 and kinds[:1] in (["SumPool2d"], ["AvgPool2d"]) \
                and not any(pair(getattr(nodes[0], "padding", 0))):
            fused = self._pool_fused(kinds, nodes, src, target, delay)
            if fused is not None:
                return fused
        return self._dense(q, ops, target, delay)

    def _pool_fused(self, kinds, nodes, src, target, delay):
        k, s = pair(nodes[0].kernel_size), pair(nodes[0].stride)
        area = math.prod(k) if kinds[0] == "SumPool2d" else 1.0
        if kinds[1:] == ["Conv2d"]:
            w = dense_kernel(nodes[1])
            pad = conv_padding(nodes[1], w.shape[2:])
            return AvgPoolConv2D(weight=(w.transpose(2, 3, 1, 0) * area).astype(np.float32),
                                 pool_size=k, pool_strides=s, strides=pair(nodes[1].stride),
                                 padding=tuple((p, p) for p in pad), delay=delay)
        if kinds[1:] in (["Flatten", "Affine"], ["Flatten", "Linear"]):
            pooled = apply(kinds[0], nodes[0], np.zeros((1,) + src), False).shape[1:]
            w = np.asarray(nodes[-1].weight, np.float64).reshape(-1, math.prod(pooled))
            w = w[ir_order(self.shape(target))][:, ir_order(pooled)] * area
            return AvgPoolDense2D(weight=w.T.astype(np.float32), pool_size=k, strides=s,
                                  delay=delay)
        return None

    def _dense(self, q: Chain, ops: list[str], target: str, delay: int):
        src, trg = self.shape(q.source), self.shape(target)
        n_in, n_out = math.prod(src), math.prod(trg)
        if n_in * n_out > MAX_DENSE:
            raise NIRGraphError(f"the nodes {ops} between {q.source!r} and {target!r} compose "
                                f"to no connection distsnn lowers compactly and to {n_in}x"
                                f"{n_out} dense weights; put a neuron node between them")
        x = np.eye(n_in).reshape((n_in,) + src)
        for op in ops:
            x = apply(self.g.kinds[op], self.g.nodes[op], x, False)
        w = x.reshape(n_in, n_out)[ir_order(src)][:, ir_order(trg)]
        return Dense(weight=w.astype(np.float32), delay=delay)


def _type_shape(node, key: str):
    types = getattr(node, f"{key}_type", None) or {}
    value = types.get(key) if isinstance(types, dict) else None
    if value is None:
        return None
    shape = tuple(int(v) for v in np.atleast_1d(np.asarray(value)).reshape(-1))
    return shape or None


def _neuron_shape(node):
    for attr in ("v_threshold", "tau", "tau_mem", "r", "threshold"):
        if hasattr(node, attr) and np.size(getattr(node, attr)) > 1:
            return tuple(np.shape(getattr(node, attr)))
    return _type_shape(node, "output")


def _compact(value):
    """One value for uniform arrays (a GeNN parameter), else float32 per neuron."""
    if isinstance(value, np.ndarray):
        flat = value.reshape(-1)
        if flat.size and np.all(flat == flat[0]):
            return float(flat[0])
        return flat.astype(np.float32)
    return value


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def convert_nir(source, preset: NIRPreset | None = None, *, li_readout: str = "avg_var"
                ) -> Network:
    """The network of a NIR graph (a ``.nir`` path or a ``nir.NIRGraph``) under ``preset``
    (default: the ``spec`` preset). ``li_readout``: ``avg_var`` (mean membrane over the
    example) or ``var`` (its last value) for non-spiking output nodes."""
    preset = preset or make_preset("spec")
    graph, sha = read_graph(source)
    flat = flatten(graph)
    conv = _Converter(flat, preset, li_readout)
    metadata = {"method": "nir", "source_model_sha256": sha,
                "nir": {"preset": preset.describe()}}
    return conv.network(metadata)


def convert_nir_file(path, source: str = "spec", li_readout: str = "avg_var",
                     **overrides) -> Network:
    """The command line's NIR conversion: ``source`` preset with ``overrides``
    (:func:`~distsnn.convert.nir_presets.make_preset`'s keywords, None: the preset's)."""
    return convert_nir(path, make_preset(source, **overrides), li_readout=li_readout)
