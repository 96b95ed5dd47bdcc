"""IR neurons of NIR graphs: a discretised NIR neuron and a time-varying raster input.

NIR states its neurons in continuous time; :mod:`distsnn.convert.nir_presets` discretises
them (dt, Euler or exact exponential, reset, update order, current jump) into the per-step
coefficients below, so the lowering runs one fixed update whatever the source tool.
Values given as arrays are per neuron (flattened C-order over the channels-last shape).

Every NIR population is *active* only during its window of ``T`` steps,
``[start, example_steps - tail)``: a population ``d`` hops from the input starts ``d`` steps
late, as GeNN delivers a spike one step after it is emitted (the depth alignment).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from distsnn.neurons import NEURON_TYPES, Neuron
from distsnn.readouts import readout_name

Value = float | np.ndarray

#: Resets after a spike: to ``v_reset``; subtract the threshold at once; subtract it in the
#: next step's update (snnTorch: ``V = beta V + x - S[t-1] thr``); set V to ``v_reset``
#: instead of the next step's update (snnTorch's reset to zero).
NIR_RESETS = ("zero", "subtract", "subtract_late", "zero_late")


@dataclass
class NIRNeuron(Neuron):
    """One step of a discretised NIR neuron, with ``x = Isyn + bias`` (weighted input):

    * with a synaptic current (``i_decay`` set): ``I' = i_decay I + i_in x``, and the
      membrane is driven by ``c = I'`` (``current_first``) or the old ``I``; else ``c = x``;
    * ``V = v_decay V + v_leak + v_in c``;
    * spiking (``v_thresh`` set): spike when ``V >= v_thresh`` and reset; with
      ``multi_spike`` one event of weight ``floor(V / v_thresh)`` (Sinabs).

    ``node`` names the NIR node kind (LIF, CubaLI, ...) for descriptions.
    """

    kind: ClassVar[str] = "nir_neuron"
    node: str = "LIF"
    v_decay: Value = 1.0
    v_leak: Value = 0.0
    v_in: Value = 1.0
    i_decay: Value | None = None
    i_in: Value = 1.0
    current_first: bool = False
    v_thresh: Value | None = None
    v_reset: Value = 0.0
    reset: str = "zero"
    multi_spike: bool = False
    bias: Value | None = None
    start: int = 0
    tail: int = 0
    readout: str | None = None

    def __post_init__(self):
        if self.reset not in NIR_RESETS:
            raise ValueError(f"NIRNeuron: reset must be one of {NIR_RESETS}, not {self.reset!r}")
        self.readout = readout_name(self.readout, "NIRNeuron")

    @property
    def spiking(self) -> bool:
        return self.v_thresh is not None


@dataclass
class RasterInput(Neuron):
    """Time-varying input: step ``s`` of the input window sends frame ``s`` of the example's
    raster; an entry ``c != 0`` is one event of weight ``c`` (bool rasters: 1; a count from
    a tool that emits several spikes per step: one graded event). ``tail``: steps after the
    window (the depth of the deepest population), when the input is silent."""

    kind: ClassVar[str] = "raster_input"
    is_input: ClassVar[bool] = True
    tail: int = 0


NEURON_TYPES.update({cls.kind: cls for cls in (NIRNeuron, RasterInput)})
