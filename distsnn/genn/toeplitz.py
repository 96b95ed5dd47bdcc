"""distsnn's Toeplitz connectivity snippets: one exact lowering of every convolution-like
connection (see :class:`distsnn.genn.lowering.KernelGeometry`) that stores only the kernel.

Per presynaptic spike at source ``(row, col, chan)`` the code visits each pooling window that
holds it, each kernel tap that maps that window onto an output pixel (strides and TF padding
solved exactly, so even kernels and ``same`` offsets need no special case) and each output
channel, adding ``kernel[tap_row, tap_col, chan, out_chan]`` (pooling factor pre-multiplied).
A transposed convolution is the same loop over its stride-upsampled source (window ``p`` at
``p * u``; stride 1, kernel flipped on the host).

The same loops, as sparse row-build code, give PROCEDURAL_KERNELG connectivity on CUDA
(:func:`procedural_connectivity`: synapses regenerated per spike from the kernel, mlGeNN's
choice for strided convolutions), opt-in with ``connectivity="procedural"``.

Two Toeplitz variants of the same loops: on the CPU the output-channel loop is innermost and
contiguous (the compiler vectorises it; GeNN's built-in ``Conv2D`` Toeplitz snippet decodes
every synapse from a diagonal index and was 5-7x slower, benchmarks/lowering_speed.py), on CUDA each (tap, output channel)
is one Toeplitz diagonal, i.e. one thread, as GeNN's CUDA backend parallelises diagonals.
"""
from __future__ import annotations

from pygenn import (
    create_sparse_connect_init_snippet,
    create_toeplitz_connect_init_snippet,
    init_sparse_connectivity,
    init_toeplitz_connectivity,
)

from distsnn.genn.lowering import KernelGeometry

_PARAMS = [(name, "int") for name in KernelGeometry.__dataclass_fields__ if name != "depthwise"]

#: The source pixel of the spike and the range of pooling windows holding it.
_SOURCE = """
const int inRow = (id_pre / ic) / iw + pph;
const int inCol = (id_pre / ic) % iw + ppw;
const int inChan = id_pre % ic;
const int prLo = (inRow >= pkh) ? (inRow - pkh) / psh + 1 : 0;
const int prHi = (inRow / psh < ph - 1) ? inRow / psh : ph - 1;
const int pcLo = (inCol >= pkw) ? (inCol - pkw) / psw + 1 : 0;
const int pcHi = (inCol / psw < pw - 1) ? inCol / psw : pw - 1;
"""

#: CPU: all taps of one window, then the contiguous output-channel loop. The first tap is the
#: smallest one congruent to ``p * u + pad`` modulo the stride that keeps the output in range.
_CPU_CONV = _SOURCE + """
for (int pr = prLo; pr <= prHi; pr++) {
    const int rowNum = pr * uh + padh;
    const int krFirst = rowNum - (oh - 1) * sh;
    const int krEnd = (rowNum < kh - 1) ? rowNum : kh - 1;
    for (int kr = (krFirst > rowNum % sh) ? krFirst : rowNum % sh; kr <= krEnd; kr += sh) {
        const int outRow = (rowNum - kr) / sh;
        for (int pc = pcLo; pc <= pcHi; pc++) {
            const int colNum = pc * uw + padw;
            const int kcFirst = colNum - (ow - 1) * sw;
            const int kcEnd = (colNum < kw - 1) ? colNum : kw - 1;
            for (int kc = (kcFirst > colNum % sw) ? kcFirst : colNum % sw; kc <= kcEnd; kc += sw) {
                const int base = ((outRow * ow) + (colNum - kc) / sw) * oc;
                for (int o = 0; o < oc; o++) {
                    addSynapse(base + o, kr, kc, inChan, o);
                }
            }
        }
    }
}
"""

#: CUDA: the diagonal fixes the tap and the output channel.
_CUDA_CONV = """
const int kr = id_diag / (kw * oc);
const int kc = (id_diag / oc) % kw;
const int o = id_diag % oc;
""" + _SOURCE + """
for (int pr = prLo; pr <= prHi; pr++) {
    const int rowNum = pr * uh + padh - kr;
    if (rowNum >= 0 && (rowNum % sh) == 0 && rowNum / sh < oh) {
        for (int pc = pcLo; pc <= pcHi; pc++) {
            const int colNum = pc * uw + padw - kc;
            if (colNum >= 0 && (colNum % sw) == 0 && colNum / sw < ow) {
                addSynapse(((rowNum / sh) * ow + colNum / sw) * oc + o, kr, kc, inChan, o);
            }
        }
    }
}
"""

#: Average pooling alone: one shared weight, output channel = input channel.
_POOL = _SOURCE + """
for (int pr = prLo; pr <= prHi; pr++) {
    for (int pc = pcLo; pc <= pcHi; pc++) {
        addSynapse((pr * pw + pc) * ic + inChan, 0);
    }
}
"""

_SNIPPETS: dict[str, object] = {}


def _snippet(variant: str):
    """The snippet of one variant, created once per process."""
    if variant not in _SNIPPETS:
        code, rows, kernel = {
            "cpu": (_CPU_CONV, lambda p: 1,
                    lambda p: [int(p["kh"]), int(p["kw"]), int(p["ic"]), int(p["oc"])]),
            "cuda": (_CUDA_CONV, lambda p: int(p["kh"]) * int(p["kw"]) * int(p["oc"]),
                     lambda p: [int(p["kh"]), int(p["kw"]), int(p["ic"]), int(p["oc"])]),
            "pool": (_POOL, lambda p: 1, lambda p: [1]),
        }[variant]
        _SNIPPETS[variant] = create_toeplitz_connect_init_snippet(
            f"distsnn_toeplitz_{variant}", params=_PARAMS,
            diagonal_build_code="for_each_synapse {\n" + code + "}\n",
            calc_max_row_len_func=lambda num_pre, num_post, pars: rows(pars),
            calc_kernel_size_func=kernel)
    return _SNIPPETS[variant]


def _row_snippet(pool: bool):
    """Sparse row-build snippet with the CPU loops (one row = one presynaptic neuron)."""
    variant = "rows_pool" if pool else "rows"
    if variant not in _SNIPPETS:
        geometry_kernel = (lambda p: [1]) if pool else (
            lambda p: [int(p["kh"]), int(p["kw"]), int(p["ic"]), int(p["oc"])])
        _SNIPPETS[variant] = create_sparse_connect_init_snippet(
            f"distsnn_{variant}", params=_PARAMS, row_build_code=_POOL if pool else _CPU_CONV,
            calc_max_row_len_func=lambda num_pre, num_post, pars: _max_paths(pars, pool),
            calc_kernel_size_func=geometry_kernel)
    return _SNIPPETS[variant]


def _max_paths(pars, pool: bool) -> int:
    """Longest row: synapses (paths, duplicates included) of the busiest source neuron."""
    geometry = KernelGeometry(**{name: int(pars[name]) for name, _ in _PARAMS}, depthwise=pool)
    return max(geometry.longest_row(), 1)


def procedural_connectivity(geometry: KernelGeometry):
    """GeNN sparse connectivity initialiser for PROCEDURAL_KERNELG (CUDA; rows may repeat a
    target where pooling windows overlap: each path adds its own kernel weight)."""
    return init_sparse_connectivity(_row_snippet(geometry.depthwise), geometry.params())


def toeplitz_connectivity(geometry: KernelGeometry, backend: str):
    """GeNN Toeplitz connectivity initialiser for a geometry on a backend ("cpu"/"cuda")."""
    variant = "pool" if geometry.depthwise else ("cuda" if backend == "cuda" else "cpu")
    return init_toeplitz_connectivity(_snippet(variant), geometry.params())
