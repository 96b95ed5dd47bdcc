"""Neuron descriptions of the network IR: plain data, independent of Keras and GeNN.

Values given as arrays are per neuron (flattened C-order over the population shape).
Constructors take mlGeNN's arguments in mlGeNN's order (``IntegrateFire(v_thresh, v_reset, v,
readout)``, ``PoissonInput(signed_spikes)``, ...), plus distsnn's own keywords.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, Optional, Union

import numpy as np

from distsnn.readouts import readout_name

Value = Union[float, np.ndarray]

#: Readouts an output population can provide (mlGeNN's, see :mod:`distsnn.readouts`, and
#: distsnn's ``avg_input`` of :class:`Integrator`).
READOUTS = ("spike_count", "var", "avg_var", "avg_input", "sum_var", "max_var",
            "avg_var_exp_weight", "first_spike_time")
#: Reset modes of integrate-and-fire neurons.
RESET_MODES = ("zero", "subtract")
#: How a few-spike code quantises: ``floor`` (Stöckl & Maass's and mlGeNN's code) or
#: ``nearest`` (half a least significant bit added before coding: zero-mean errors).
FEW_SPIKE_ROUNDINGS = ("floor", "nearest")


def check_rounding(rounding: str, owner: str) -> None:
    """Refuse a few-spike rounding other than :data:`FEW_SPIKE_ROUNDINGS`."""
    if rounding not in FEW_SPIKE_ROUNDINGS:
        raise ValueError(f"{owner}: rounding must be one of {', '.join(FEW_SPIKE_ROUNDINGS)}, "
                         f"not {rounding!r}")


@dataclass
class Neuron:
    """Base class; ``kind`` names the neuron in network files."""

    kind: ClassVar[str] = ""
    is_input: ClassVar[bool] = False

    def params(self) -> dict:
        """The neuron's fields as a dict (used by the network file)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_params(cls, params: dict) -> "Neuron":
        """The neuron a network file's ``params()`` record describes."""
        return cls(**params)


class _InitialV:
    """``v``, the initial (and per-example) voltage, is left out of ``params()`` when it
    equals ``v_reset``: network files without ``v`` (older ones too) start at ``v_reset``."""

    def params(self) -> dict:
        params = super().params()  # type: ignore[misc]
        if np.ndim(self.v) == 0 and self.v == self.v_reset:  # type: ignore[attr-defined]
            del params["v"]
        return params

    @classmethod
    def from_params(cls, params: dict) -> "Neuron":
        return cls(**{"v": params.get("v_reset", 0.0), **params})

    def _check_v(self) -> None:
        if np.ndim(self.v) != 0:  # type: ignore[attr-defined]
            raise ValueError(f"{type(self).__name__}: v (the initial voltage) must be one value, "
                             f"not an array")


@dataclass
class IntegrateFire(_InitialV, Neuron):
    """Non-leaky integrate-and-fire: ``V += Isyn + bias``; spike when ``V >= v_thresh``.

    ``V`` starts every example at ``v``. ``reset="zero"`` sets V to ``v_reset`` after a spike
    (mlGeNN's behaviour); ``reset="subtract"`` subtracts the threshold and keeps the residual.
    """

    kind: ClassVar[str] = "integrate_fire"
    v_thresh: Value = 1.0
    v_reset: float = 0.0
    v: float = 0.0
    readout: Optional[str] = None
    reset: str = "zero"
    bias: Optional[Value] = None

    def __post_init__(self):
        self._check_v()
        self.readout = readout_name(self.readout, "IntegrateFire")


@dataclass(init=False)
class IntegrateFireInput(_InitialV, Neuron):
    """Constant-current input: ``V += x`` every step from step 0; spike at ``V >= v_thresh``.

    With ``signed_input`` a negative x drives spikes of weight ``-g`` when ``V <= -v_thresh``.
    """

    kind: ClassVar[str] = "if_input"
    is_input: ClassVar[bool] = True
    v_thresh: float
    v_reset: float
    v: float
    reset: str
    signed_input: bool

    def __init__(self, v_thresh: float = 1.0, v_reset: float = 0.0, v: float = 0.0,
                 input_frames: int = 1, input_frame_timesteps: int = 1, *, reset: str = "zero",
                 signed_input: bool = False):
        _single_frame(self, input_frames)
        self.v_thresh, self.v_reset, self.v = v_thresh, v_reset, v
        self.reset, self.signed_input = reset, signed_input
        self._check_v()


@dataclass
class AnalogInput(Neuron):
    """Analog input: no spike trains. At the first step of each example every neuron with
    ``x != 0`` sends ``g x`` once through its connections; the targets hold that sum as a
    constant current for the rest of the example, so the first weighted layer receives its
    ANN input ``W x`` (plus its bias) every step, computed once per example.
    """

    kind: ClassVar[str] = "analog_input"
    is_input: ClassVar[bool] = True


@dataclass
class Integrator(Neuron):
    """Non-spiking output: sums its input ``Isyn + bias`` every step; readout ``avg_input``
    is the mean input per step (the ANN's pre-activation in the layer's rate units)."""

    kind: ClassVar[str] = "integrator"
    bias: Optional[Value] = None
    readout: Optional[str] = "avg_input"


def _single_frame(neuron: Neuron, input_frames: int) -> None:
    if input_frames != 1:
        raise ValueError(f"{type(neuron).__name__}: time-varying input (input_frames="
                         f"{input_frames}) is not supported; present one frame per example")


class _SignedSpikes:
    """mlGeNN's ``(signed_spikes=False, input_frames=1, input_frame_timesteps=1)`` arguments;
    ``signed_input`` is distsnn's name of ``signed_spikes``."""

    def __init__(self, signed_spikes: bool = False, input_frames: int = 1,
                 input_frame_timesteps: int = 1, *, signed_input: Optional[bool] = None):
        _single_frame(self, input_frames)  # type: ignore[arg-type]
        self.signed_input = bool(signed_spikes if signed_input is None else signed_input)


@dataclass(init=False)
class PoissonInput(_SignedSpikes, Neuron):
    """Poisson input: spike with probability ``1 - exp(-|x| dt)`` per step (x in spikes/ms).

    With ``signed_input`` (mlGeNN's ``signed_spikes``) a negative x emits spikes that act with
    weight ``-g``.
    """

    kind: ClassVar[str] = "poisson_input"
    is_input: ClassVar[bool] = True
    signed_input: bool


@dataclass(init=False)
class BinarySpikeInput(_SignedSpikes, Neuron):
    """Spikes every step where ``x != 0`` (only where ``x > 0`` unless ``signed_input``,
    mlGeNN's ``signed_spikes``)."""

    kind: ClassVar[str] = "spike_input"
    is_input: ClassVar[bool] = True
    signed_input: bool


@dataclass
class FewSpikeReluInput(Neuron):
    """Few-spike (Stöckl & Maass 2021) input encoder: a K-bit code of x per K-step window.

    Unsigned: floor-quantised to ``alpha 2^-K`` steps, clipped at ``alpha (1 - 2^-K)``.
    Signed (even K only): K/2 positive and K/2 negative bit steps, each step ``alpha 2^-K/2``,
    truncated toward zero. ``rounding="nearest"`` rounds to the nearest step instead.
    """

    kind: ClassVar[str] = "few_spike_input"
    is_input: ClassVar[bool] = True
    k: int = 10
    alpha: float = 25.0
    signed_input: bool = False
    rounding: str = "floor"

    def __post_init__(self):
        check_rounding(self.rounding, "FewSpikeReluInput")


@dataclass
class FewSpikeRelu(Neuron):
    """Few-spike ReLU: re-encodes ``max(0, W x_hat + bias)`` with K binary-weighted spikes.

    Its readout (``var``) is the complete pre-activation ``W x_hat + bias`` of each example.
    The code is floor-quantised to ``alpha 2^-K`` steps, or with ``rounding="nearest"``
    rounded to the nearest step.
    """

    kind: ClassVar[str] = "few_spike_relu"
    k: int = 10
    alpha: float = 25.0
    readout: Optional[str] = None
    bias: Optional[Value] = None
    rounding: str = "floor"

    def __post_init__(self):
        self.readout = readout_name(self.readout, "FewSpikeRelu")
        check_rounding(self.rounding, "FewSpikeRelu")


@dataclass
class SpikingMax(Neuron):
    """Spiking max-pool: the target of one :class:`~distsnn.connectivity.MaxPool2D`
    connection. Each neuron holds the largest spike count of its window's sources in the
    current example and spikes once in every step in which it grows (a count grows by at
    most one per step), so its own count is always that maximum, one step later: with
    rate-coded sources it fires at the largest of their rates.
    """

    kind: ClassVar[str] = "spiking_max"


@dataclass
class LeakyIntegrate(Neuron):
    """mlGeNN's non-spiking leaky integrator (typically an output):
    ``V = Alpha V + Isyn + bias`` with ``Alpha = exp(-dt / tau_mem)``; with ``scale_i`` the
    input is scaled by ``1 - Alpha``. ``readout`` is a name or a :mod:`distsnn.readouts` class.
    """

    kind: ClassVar[str] = "leaky_integrate"
    v: float = 0.0
    bias: Value = 0.0
    tau_mem: Value = 20.0
    scale_i: bool = False
    readout: Optional[str] = None

    def __post_init__(self):
        self.readout = readout_name(self.readout, "LeakyIntegrate")


@dataclass
class LeakyIntegrateFire(Neuron):
    """mlGeNN's leaky integrate-and-fire neuron: ``V = Alpha V + Isyn`` (``(1 - Alpha) Isyn``
    with ``scale_i``), ``Alpha = exp(-dt / tau_mem)``; spike when ``V >= v_thresh`` (and not
    refractory), then ``V -= v_thresh - v_reset`` (``relative_reset``) or ``V = v_reset``.

    With ``tau_refrac`` [ms] a spike starts a refractory period; ``integrate_during_refrac``
    keeps integrating during it.
    """

    kind: ClassVar[str] = "leaky_integrate_fire"
    v_thresh: Value = 1.0
    v_reset: Value = 0.0
    v: float = 0.0
    tau_mem: Value = 20.0
    tau_refrac: Optional[Value] = None
    relative_reset: bool = True
    integrate_during_refrac: bool = True
    scale_i: bool = False
    readout: Optional[str] = None

    def __post_init__(self):
        self.readout = readout_name(self.readout, "LeakyIntegrateFire")


@dataclass
class SpikeInput(Neuron):
    """mlGeNN's spike-train input: each example is a
    :class:`distsnn.utils.data.PreprocessedSpikes` (spike times in ms from the example's
    start); a spike at time s is emitted at the first step with ``t >= s``, at most one per
    neuron and step. ``max_spikes`` bounds the spikes of one batch (all its examples).
    """

    kind: ClassVar[str] = "spike_train_input"
    is_input: ClassVar[bool] = True
    max_spikes: int = 1000000

    def __post_init__(self):
        if int(self.max_spikes) < 1:
            raise ValueError(f"SpikeInput: max_spikes must be a positive number of spikes, "
                             f"not {self.max_spikes}")
        self.max_spikes = int(self.max_spikes)


NEURON_TYPES: dict[str, type[Neuron]] = {
    cls.kind: cls
    for cls in (IntegrateFire, IntegrateFireInput, AnalogInput, Integrator, PoissonInput,
                BinarySpikeInput, FewSpikeReluInput, FewSpikeRelu, LeakyIntegrate,
                LeakyIntegrateFire, SpikeInput, SpikingMax)
}
