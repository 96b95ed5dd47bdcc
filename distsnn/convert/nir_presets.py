"""How each tool's NIR files are meant to be simulated: the source presets.

A NIR file states its neurons in continuous time and records neither the time step, nor the
reset rule (``v_reset`` only since NIR 1.0.6), nor the update order; exporters differ, so
``--nir-source`` picks the convention of the tool that wrote (and trained) the file and the
``--nir-*`` options override single choices:

========== ============ ======= ============= ============= ============ ==========
source     time unit     dt      discretise    reset         order        jump
========== ============ ======= ============= ============= ============ ==========
spec       s            1e-4    euler         zero          simultaneous euler
snntorch   s            1e-4    euler         subtract_late current      euler
norse      s            1e-3    euler         zero          simultaneous jump
sinabs     steps        1       exact         subtract*     simultaneous euler
spikingjelly (refused)  --      euler         zero          simultaneous euler
========== ============ ======= ============= ============= ============ ==========

``zero`` resets to the node's ``v_reset``; ``subtract`` subtracts the threshold at once;
``subtract_late`` / ``zero_late`` act in the next step's update (snnTorch's delayed reset);
``*`` Sinabs emits ``floor(V / threshold)`` spikes per step as one graded event. ``order``:
whether the membrane sees this step's synaptic current (``current``, snnTorch) or the last
step's (``simultaneous``, forward Euler); ``jump``: whether a spike adds ``dt/tau_syn w_in``
(``euler``) or ``w_in`` (``jump``, Norse) to the synaptic current.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from distsnn.convert.errors import ConversionError

DISCRETISATIONS = ("euler", "exact")
RESETS = ("zero", "subtract", "subtract_late", "zero_late")
ORDERS = ("simultaneous", "current")
JUMPS = ("euler", "jump")


@dataclass(frozen=True)
class NIRPreset:
    """One source tool's simulation conventions (see the module docstring)."""

    source: str
    dt: float | None          # in the unit of the file's time constants; None: refused
    unit: str                    # "s" or "steps" (what the file's tau are in)
    discretisation: str = "euler"
    reset: str = "zero"
    order: str = "simultaneous"
    jump: str = "euler"
    multi_spike: bool = False

    def describe(self) -> dict:
        return {"source": self.source, "dt": self.dt, "unit": self.unit,
                "discretisation": self.discretisation, "reset": self.reset,
                "order": self.order, "jump": self.jump, "multi_spike": self.multi_spike}


PRESETS: dict[str, NIRPreset] = {p.source: p for p in (
    NIRPreset("spec", 1e-4, "s"),
    NIRPreset("snntorch", 1e-4, "s", reset="subtract_late", order="current"),
    NIRPreset("norse", 1e-3, "s", jump="jump"),
    NIRPreset("sinabs", 1.0, "steps", discretisation="exact", reset="subtract",
              multi_spike=True),
    NIRPreset("spikingjelly", None, "steps"),
)}


class NIRPresetError(ConversionError):
    """A NIR preset or override is unknown, or leaves a choice undecided."""


def make_preset(source: str = "spec", *, dt: float | None = None,
                discretisation: str | None = None, reset: str | None = None,
                order: str | None = None, jump: str | None = None,
                multi_spike: bool | None = None) -> NIRPreset:
    """The preset of ``source`` with the given overrides (None keeps the preset's choice)."""
    if source not in PRESETS:
        raise NIRPresetError(f"unknown --nir-source {source!r}; choose one of "
                             f"{', '.join(PRESETS)}")
    preset = PRESETS[source]
    for option, value, choices in (("--nir-discretisation", discretisation, DISCRETISATIONS),
                                   ("--nir-reset", reset, RESETS), ("--nir-order", order, ORDERS),
                                   ("--nir-jump", jump, JUMPS)):
        if value is not None and value not in choices:
            raise NIRPresetError(f"{option} must be one of {', '.join(choices)}, not {value!r}")
    if dt is not None and not (math.isfinite(dt) and dt > 0):
        raise NIRPresetError(f"--nir-dt must be a positive time step, not {dt!r}")
    changes = {k: v for k, v in (("dt", dt), ("discretisation", discretisation),
                                 ("reset", reset), ("order", order), ("jump", jump),
                                 ("multi_spike", multi_spike)) if v is not None}
    preset = replace(preset, **changes)
    if preset.dt is None:
        raise NIRPresetError(f"--nir-source {source}: its files do not record the unit of their "
                             f"time constants; pass --nir-dt (1 when tau is in steps)")
    return preset


def _arr(node, name: str) -> np.ndarray:
    return np.asarray(getattr(node, name), np.float64)


def discretise(node, preset: NIRPreset) -> dict:
    """The per-step coefficients (:class:`~distsnn.nir_neurons.NIRNeuron` fields, NIR layout)
    of one neuron node under ``preset``."""
    kind, dt = type(node).__name__, float(preset.dt)
    if kind == "Threshold":
        return {"v_decay": 0.0, "v_leak": 0.0, "v_in": 1.0, "v_thresh": _arr(node, "threshold"),
                "reset": "zero", "v_reset": 0.0}
    r = _arr(node, "r")
    tau = _arr(node, "tau_mem" if kind.startswith("Cuba") else "tau") \
        if kind not in ("IF", "I") else None
    fields: dict = {}
    if tau is None:
        fields.update(v_decay=1.0, v_leak=0.0, v_in=dt * r)
    else:
        _positive(tau, "tau", node)
        if preset.discretisation == "euler":
            k = dt / tau
            fields.update(v_decay=1.0 - k, v_leak=k * _arr(node, "v_leak"), v_in=k * r)
        else:
            a = np.exp(-dt / tau)
            fields.update(v_decay=a, v_leak=(1.0 - a) * _arr(node, "v_leak"), v_in=(1.0 - a) * r)
    if kind.startswith("Cuba"):
        tau_syn, w_in = _arr(node, "tau_syn"), _arr(node, "w_in")
        _positive(tau_syn, "tau_syn", node)
        if preset.discretisation == "euler":
            k = dt / tau_syn
            decay, scale = 1.0 - k, k
        else:
            decay = np.exp(-dt / tau_syn)
            scale = 1.0 - decay
        fields.update(i_decay=decay, i_in=(scale * w_in if preset.jump == "euler" else w_in),
                      current_first=preset.order == "current")
    if kind in ("IF", "LIF", "CubaLIF"):
        fields.update(v_thresh=_arr(node, "v_threshold"), reset=preset.reset,
                      v_reset=_arr(node, "v_reset"), multi_spike=preset.multi_spike)
    return fields


def _positive(tau: np.ndarray, name: str, node) -> None:
    if np.any(tau <= 0):
        raise NIRPresetError(f"a {type(node).__name__} node has {name} <= 0; time constants "
                             f"must be positive")
