"""How each connection is lowered to GeNN and what it costs in memory: the one place that decides.

Lowerings (GeNN matrix types):

* ``DENSE``: all-to-all weights (``Dense``), 4 bytes per synapse.
* ``TOEPLITZ``: convolution-like connections (``Conv2D`` with any stride/padding/kernel,
  ``AvgPool2D``, ``MaxPool2D``, fused ``AvgPoolConv2D`` and ``AvgPoolDense2D``,
  ``Conv2DTranspose`` as a correlation over its stride-upsampled source) generated from a
  :class:`KernelGeometry` by distsnn's own Toeplitz snippet: only the kernel is stored.
* ``SPARSE``: explicit synapses (``OneToOne`` always; convolution-like connections when asked).
* ``PROCEDURAL_KERNELG`` (CUDA only, ``connectivity="procedural"``): the same loops as the
  Toeplitz snippet regenerate each spike's synapses from the kernel (mlGeNN's lowering of
  strided convolutions); whether it beats Toeplitz on a GPU is measured by gpu_check.sh.

Measured on the single-threaded CPU backend (benchmarks/README.md), the Toeplitz snippet is
both the smallest and the fastest lowering of every convolution kind (1.7-4.9x faster per
step than SPARSE in ``benchmarks/lowering_speed.py``), so ``auto`` picks it; ``sparse`` (``prefer_in_memory_connect=
False``) keeps explicit synapses. Whatever the choice, :func:`plan_lowering` estimates the
per-rank memory before anything large is allocated and refuses a network over the budget.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from distsnn.connectivity import (
    AvgPool2D,
    AvgPoolConv2D,
    AvgPoolDense2D,
    Connectivity,
    Conv2D,
    Conv2DTranspose,
    Dense,
    MaxPool2D,
    OneToOne,
    Shape,
    axis_padding,
    conv_pad_before,
)
from distsnn.errors import UserError
from distsnn.network import Connection, Network

CONNECTIVITY_CHOICES = ("auto", "sparse", "toeplitz", "procedural")

#: Memory model, bytes per rank (checked against measured RSS in benchmarks/scale.py).
BYTES_PER_NEURON = 40          # ~6 GeNN state words, spike queue and count (per batch lane)
BYTES_PER_WEIGHT = 4           # float32 in GeNN (DENSE matrix, Toeplitz kernel, SPARSE g)
BYTES_PER_SPARSE_SLOT = 8      # uint32 index + float32 weight per padded row slot
BYTES_SPARSE_UNTIL_LOADED = 14  # pygenn's sort order, indices and weights, freed after load
BYTES_SPARSE_TRANSIENT = 13    # computing one connection's synapses (numpy temporaries)
BYTES_BASE = 100 * 2 ** 20     # interpreter, numpy, h5py, pygenn and the generated library


class MemoryBudgetError(UserError):
    """The network does not fit the per-rank memory budget."""


@dataclass(frozen=True)
class KernelGeometry:
    """Average pooling (optional) followed by a strided, padded TF cross-correlation.

    Source ``(ih, iw, ic)``; pooling windows ``(pkh, pkw)`` with strides ``(psh, psw)`` give a
    pooled grid ``(ph, pw)`` (1x1 windows: no pooling); a ``(kh, kw)`` kernel with strides
    ``(sh, sw)`` and TF padding-before ``(padh, padw)`` maps it to ``(oh, ow, oc)``.
    ``depthwise``: pooling only, output channel = input channel, one shared weight.
    ``(uh, uw)``: source upsampling; pooled pixel ``p`` sits at ``p * u`` of a zero-filled
    grid that the kernel correlates (a transposed convolution with strides ``u``, its kernel
    flipped, stride 1 and padding-before ``k - 1 - crop``; 1: none).
    ``(pph, ppw)``: padding before the first pooling window (max pooling; 0 for averages).
    """

    ih: int
    iw: int
    ic: int
    pkh: int
    pkw: int
    psh: int
    psw: int
    ph: int
    pw: int
    kh: int
    kw: int
    sh: int
    sw: int
    padh: int
    padw: int
    oh: int
    ow: int
    oc: int
    depthwise: bool = False
    uh: int = 1
    uw: int = 1
    pph: int = 0
    ppw: int = 0

    def params(self) -> dict[str, int]:
        """Snippet parameters (every field but ``depthwise``)."""
        return {k: int(v) for k, v in self.__dict__.items() if k != "depthwise"}

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        return (1,) if self.depthwise else (self.kh, self.kw, self.ic, self.oc)

    def axis_paths(self, axis: int) -> np.ndarray:
        """``paths[i, o]``: routes from source row (axis 0) or column (axis 1) ``i`` to output
        row/column ``o`` through a pooling window and a kernel tap."""
        n_in, pk, ps, n_pool, k, s, pad, n_out, up, pp = (
            (self.ih, self.pkh, self.psh, self.ph, self.kh, self.sh, self.padh, self.oh, self.uh,
             self.pph) if axis == 0 else
            (self.iw, self.pkw, self.psw, self.pw, self.kw, self.sw, self.padw, self.ow, self.uw,
             self.ppw))
        paths = np.zeros((n_in, n_out), np.int64)
        for p in range(n_pool):
            rows = np.arange(max(p * ps - pp, 0), min(p * ps - pp + pk, n_in))
            for tap in range(k):
                num = p * up + pad - tap
                if num >= 0 and num % s == 0 and num // s < n_out:
                    paths[rows, num // s] += 1
        return paths

    @functools.lru_cache(maxsize=None)
    def axis_fan_out(self, axis: int) -> np.ndarray:
        """Routes leaving each source row (axis 0) or column (axis 1); cached per geometry
        (a few hundred integers), as the statistics read it after every chunk."""
        out = self.axis_paths(axis).sum(axis=1)
        out.flags.writeable = False
        return out

    @property
    def out_channels_per_source(self) -> int:
        return 1 if self.depthwise else self.oc

    def fan_out(self) -> np.ndarray:
        """Synaptic events per spike of each source neuron (kernel taps, zeros included)."""
        per_pixel = np.outer(self.axis_fan_out(0), self.axis_fan_out(1))
        return np.repeat(per_pixel.reshape(-1) * self.out_channels_per_source, self.ic)

    def synapse_count(self) -> int:
        """Sum of :meth:`fan_out` without building it."""
        return int(self.axis_fan_out(0).sum() * self.axis_fan_out(1).sum()) * self.ic \
            * self.out_channels_per_source

    def longest_row(self) -> int:
        """Maximum of :meth:`fan_out` without building it."""
        return int(self.axis_fan_out(0).max(initial=0) * self.axis_fan_out(1).max(initial=0)) \
            * self.out_channels_per_source

    def synaptic_events(self, spikes: np.ndarray) -> int:
        """``spikes @ fan_out()`` (spikes per source neuron) without building the fan-out."""
        per_pixel = np.asarray(spikes, np.int64).reshape(self.ih, self.iw, self.ic).sum(axis=2)
        return int(self.axis_fan_out(0) @ per_pixel @ self.axis_fan_out(1)) \
            * self.out_channels_per_source

    def explicit_synapses(self) -> tuple[int, int]:
        """(distinct synapses, longest row) of the explicit (SPARSE) form."""
        rows, cols = self.axis_paths(0) > 0, self.axis_paths(1) > 0
        per_channel = self.out_channels_per_source
        n = int(rows.sum()) * int(cols.sum()) * self.ic * per_channel
        longest = int(rows.sum(axis=1).max(initial=0) * cols.sum(axis=1).max(initial=0))
        return n, longest * per_channel


def kernel_geometry(c: Connectivity, input_shape: Shape) -> Optional[KernelGeometry]:
    """The Toeplitz geometry of a convolution-like connectivity, ``None`` for the others."""
    if isinstance(c, Conv2DTranspose):
        return _transpose_geometry(c, input_shape)
    if isinstance(c, MaxPool2D):
        return _max_pool_geometry(c, input_shape)
    if not isinstance(c, (Conv2D, AvgPool2D, AvgPoolConv2D, AvgPoolDense2D)):
        return None
    ih, iw, ic = (int(s) for s in input_shape)
    if isinstance(c, Conv2D):
        pool, pooled = (1, 1, 1, 1), (ih, iw)
    else:
        pool_conn = c if isinstance(c, AvgPool2D) else c.pool
        pool = (*pool_conn.pool_size, *pool_conn.strides)
        pooled = pool_conn.output_shape(input_shape)[:2]
    if isinstance(c, AvgPool2D):
        return KernelGeometry(ih, iw, ic, *pool, *pooled, 1, 1, 1, 1, 0, 0, *pooled, ic,
                              depthwise=True)
    if isinstance(c, AvgPoolDense2D):  # a valid convolution whose kernel covers the pooled map
        n_out = int(c.weight.shape[1])
        return KernelGeometry(ih, iw, ic, *pool, *pooled, *pooled, 1, 1, 0, 0, 1, 1, n_out)
    kh, kw, _, oc = c.weight.shape
    oh, ow, _ = c.output_shape(input_shape)
    sh, sw = c.strides
    return KernelGeometry(ih, iw, ic, *pool, *pooled, kh, kw, sh, sw,
                          conv_pad_before(pooled[0], kh, sh, axis_padding(c.padding, 0)),
                          conv_pad_before(pooled[1], kw, sw, axis_padding(c.padding, 1)),
                          oh, ow, int(oc))


def _transpose_geometry(c: Conv2DTranspose, input_shape: Shape) -> KernelGeometry:
    """A transposed convolution as a stride-1 correlation of the upsampled source."""
    ih, iw, ic = (int(s) for s in input_shape)
    (kh, kw), (sh, sw), (crop_h, crop_w) = c.conv_size, c.conv_strides, c.pad_before()
    oh, ow, oc = c.output_shape(input_shape)
    return KernelGeometry(ih, iw, ic, 1, 1, 1, 1, ih, iw, kh, kw, 1, 1, kh - 1 - crop_h,
                          kw - 1 - crop_w, oh, ow, oc, uh=sh, uw=sw)


def _max_pool_geometry(c: MaxPool2D, input_shape: Shape) -> KernelGeometry:
    """Max pooling: a depthwise pooling geometry with padding before its windows."""
    ih, iw, ic = (int(s) for s in input_shape)
    oh, ow, _ = c.output_shape(input_shape)
    pph, ppw = c.pads_before(input_shape)
    return KernelGeometry(ih, iw, ic, *c.pool_size, *c.strides, oh, ow, 1, 1, 1, 1, 0, 0,
                          oh, ow, ic, depthwise=True, pph=pph, ppw=ppw)


def kernel_values(c: Connectivity, input_shape: Shape) -> np.ndarray:
    """The Toeplitz kernel (flat float32, C order of ``kernel_shape``), pooling factor included;
    a transposed convolution's kernel flipped to ``[kh, kw, c_in, filters]``."""
    if isinstance(c, Conv2DTranspose):
        return np.ascontiguousarray(c.kernel(input_shape)[::-1, ::-1].transpose(0, 1, 3, 2)
                                    ).reshape(-1)
    if isinstance(c, MaxPool2D):
        return np.ones(1, np.float32)
    geometry = kernel_geometry(c, input_shape)
    area = geometry.pkh * geometry.pkw
    if isinstance(c, AvgPool2D):
        return np.full(1, 1.0 / area, np.float32)
    weight = np.asarray(c.weight, np.float32)
    if area != 1:
        weight = weight / np.float32(area)
    return weight.reshape(-1)


def synaptic_events(conn: Connection, spikes: np.ndarray) -> int:
    """Synaptic events delivered by ``spikes`` (per source neuron) through a connection."""
    c = conn.connectivity
    if isinstance(c, (Dense, OneToOne)):
        per_spike = conn.target.size if isinstance(c, Dense) else 1
        return int(np.sum(spikes, dtype=np.int64)) * per_spike
    geometry = kernel_geometry(c, conn.source.shape)
    if geometry is None:
        raise TypeError(f"no fan-out for {type(c).__name__}")
    return geometry.synaptic_events(spikes)


def is_all_zero(c: Connectivity) -> bool:
    """Whether a connection can contribute nothing (all weights zero): dropped from the model."""
    if isinstance(c, (AvgPool2D, MaxPool2D)):
        return False
    return not np.any(np.asarray(c.weight))


# ---------------------------------------------------------------------------------------------
# the plan: one lowering per connection, with its memory estimate
# ---------------------------------------------------------------------------------------------
@dataclass
class ConnectionPlan:
    """How one connection is lowered and what it costs on one rank."""

    name: str
    matrix: str          # "DENSE", "TOEPLITZ", "SPARSE" or "NONE" (all-zero: not in the model)
    synapses: int        # synapses as the network defines them (events counted per path)
    resident_bytes: int  # held while the model is loaded
    load_bytes: int      # held from model creation until GeNN has loaded it
    build_bytes: int     # extra, transiently, while this connection is built

    def total_bytes(self) -> int:
        return self.resident_bytes + self.load_bytes + self.build_bytes


@dataclass
class LoweringPlan:
    """Every connection's lowering plus the per-rank memory estimate and budget."""

    connections: dict[str, ConnectionPlan] = field(default_factory=dict)
    neuron_bytes: int = 0
    network_bytes: int = 0
    budget_bytes: Optional[int] = None
    budget_source: str = ""

    @property
    def peak_bytes(self) -> int:
        resident = sum(c.resident_bytes + c.load_bytes for c in self.connections.values())
        transient = max((c.build_bytes for c in self.connections.values()), default=0)
        return BYTES_BASE + self.network_bytes + self.neuron_bytes + resident + transient

    def matrix(self, name: str) -> str:
        return self.connections[name].matrix

    def check_budget(self) -> None:
        """Raise :class:`MemoryBudgetError` when the estimate exceeds the budget."""
        if self.budget_bytes is None or self.peak_bytes <= self.budget_bytes:
            return
        worst = max(self.connections.values(), key=ConnectionPlan.total_bytes, default=None)
        largest = (f"; largest connection {worst.name!r} ({worst.matrix}, {worst.synapses:,} "
                   f"synapses, {format_bytes(worst.total_bytes())})" if worst else "")
        hint = ("use --connectivity toeplitz (prefer_in_memory_connect=True), "
                if any(c.matrix == "SPARSE" and c.synapses > 10 ** 6
                       for c in self.connections.values()) else "")
        raise MemoryBudgetError(
            f"the network needs an estimated {format_bytes(self.peak_bytes)} per rank but the "
            f"budget is {format_bytes(self.budget_bytes)} ({self.budget_source}){largest}: "
            f"{hint}run fewer ranks per node (more ranks per node leave each less), or use a "
            f"machine or GPU with more memory; --memory-budget overrides the budget")


def plan_lowering(network: Network, connectivity: str = "auto", batch_size: int = 1,
                  budget_bytes: Optional[int] = None, budget_source: str = "") -> LoweringPlan:
    """Choose every connection's lowering and estimate the per-rank memory (no allocation)."""
    if connectivity not in CONNECTIVITY_CHOICES:
        raise UserError(f"connectivity must be one of {', '.join(CONNECTIVITY_CHOICES)}, "
                        f"not {connectivity!r}")
    plan = LoweringPlan(budget_bytes=budget_bytes, budget_source=budget_source)
    plan.neuron_bytes = BYTES_PER_NEURON * batch_size * sum(p.size for p in network.populations)
    plan.network_bytes = 2 * network_array_bytes(network)  # the IR plus the file it came from
    for conn in network.connections:
        plan.connections[conn.name] = _plan_connection(conn, connectivity)
    return plan


def _plan_connection(conn: Connection, connectivity: str) -> ConnectionPlan:
    c = conn.connectivity
    if is_all_zero(c):
        return ConnectionPlan(conn.name, "NONE", 0, 0, 0, 0)
    if isinstance(c, Dense):
        n = conn.source.size * conn.target.size
        return ConnectionPlan(conn.name, "DENSE", n, n * BYTES_PER_WEIGHT, 0, 0)
    if isinstance(c, OneToOne):
        n = conn.source.size
        return _sparse_plan(conn.name, n, n, 1, conn.source.size)
    geometry = kernel_geometry(c, conn.source.shape)
    n = geometry.synapse_count()
    if connectivity == "sparse":
        n_explicit, longest = geometry.explicit_synapses()
        return _sparse_plan(conn.name, n, n_explicit, longest, conn.source.size)
    kernel = int(np.prod(geometry.kernel_shape)) * BYTES_PER_WEIGHT
    matrix = "PROCEDURAL_KERNELG" if connectivity == "procedural" else "TOEPLITZ"
    return ConnectionPlan(conn.name, matrix, n, kernel, 0, 0)


def _sparse_plan(name: str, n: int, n_explicit: int, longest: int, n_src: int) -> ConnectionPlan:
    """GeNN pads every row to the longest one; pygenn keeps sorted copies until loaded."""
    return ConnectionPlan(name, "SPARSE", n, n_src * (longest * BYTES_PER_SPARSE_SLOT + 4),
                          n_explicit * BYTES_SPARSE_UNTIL_LOADED,
                          n_explicit * BYTES_SPARSE_TRANSIENT)


def network_array_bytes(network: Network) -> int:
    """Bytes of every array in the network (weights, biases, thresholds)."""
    total = 0
    for item in [*(p.neuron for p in network.populations),
                 *(c.connectivity for c in network.connections)]:
        total += sum(np.asarray(v).nbytes for v in item.params().values()
                     if isinstance(v, np.ndarray))
    return total


# ---------------------------------------------------------------------------------------------
# the budget
# ---------------------------------------------------------------------------------------------
_UNITS = {"": 1, "b": 1, "k": 2 ** 10, "kb": 10 ** 3, "kib": 2 ** 10, "m": 2 ** 20,
          "mb": 10 ** 6, "mib": 2 ** 20, "g": 2 ** 30, "gb": 10 ** 9, "gib": 2 ** 30,
          "t": 2 ** 40, "tb": 10 ** 12, "tib": 2 ** 40}


def parse_bytes(text: str) -> int:
    """``"4GiB"``, ``"500M"``, ``"2.5 GB"`` or a plain number of bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).lower() not in _UNITS:
        raise UserError(f"memory budget {text!r} is not a size; give e.g. 4GiB, 500MiB or 2.5GB")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def node_memory_bytes() -> int:
    """Memory of this node available to the job: cgroup limit if set, else MemTotal."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def memory_budget(override: Optional[str | int], ranks_on_node: int) -> tuple[int, str]:
    """Per-rank budget in bytes and where it came from: ``override`` (or
    ``$DISTSNN_MEMORY_BUDGET``), else 90% of the node's memory divided by its ranks."""
    source = "--memory-budget"
    if override is None:
        override, source = os.environ.get("DISTSNN_MEMORY_BUDGET"), "$DISTSNN_MEMORY_BUDGET"
    if override not in (None, ""):
        value = override if isinstance(override, int) else parse_bytes(override)
        return value, source
    total = node_memory_bytes()
    ranks = max(1, int(ranks_on_node))
    return int(0.9 * total / ranks), f"90% of {format_bytes(total)} node memory / {ranks} rank(s) on this node"
