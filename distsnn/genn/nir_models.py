"""GeNN models of NIR graphs' neurons (:mod:`distsnn.nir_neurons`).

A :class:`~distsnn.nir_neurons.NIRNeuron` updates only in its active window
``[Start, End)`` of each example (the depth alignment); a
:class:`~distsnn.nir_neurons.RasterInput` replays one frame of the example's raster per step
from an extra global parameter that the host fills per batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pygenn import create_neuron_model

from distsnn.genn.models import (
    _LOCAL_STEP,
    RW,
    NeuronCode,
    _value,
)
from distsnn.nir_neurons import NIRNeuron, RasterInput

#: Readouts of NIR neurons: spike counts, the last membrane value, its mean over the window.
NIR_READOUTS = ("spike_count", "var", "avg_var")


@dataclass
class RasterCode(NeuronCode):
    """A raster input's model: ``steps`` frames of ``size`` values per batch lane."""

    steps: int = 0
    size: int = 0


@dataclass
class _Parts:
    """A NIR neuron model under construction."""

    params: list
    vars: list
    param_values: dict
    var_values: dict
    reset: dict

    def value(self, name: str, value) -> None:
        _value(name, value, self.params, self.vars, self.param_values, self.var_values)

    def var(self, name: str, type_: str, initial) -> None:
        self.vars.append((name, type_, RW))
        self.var_values[name] = self.reset[name] = initial


def nir_neuron(n: NIRNeuron, name: str, example_steps: int) -> NeuronCode:
    """GeNN code of one discretised NIR neuron population."""
    end = int(example_steps) - int(n.tail)
    if end <= n.start:
        raise ValueError(f"population {name!r}: {example_steps} steps leave no active window "
                         f"after its depth {n.start} and the {n.tail} steps behind it")
    if n.readout not in (None, *NIR_READOUTS):
        raise ValueError(f"population {name!r}: a NIR neuron reads out one of {NIR_READOUTS}, "
                         f"not {n.readout!r}")
    m = _Parts([("Start", "int"), ("End", "int"), ("ExampleSteps", "int")],
               [("SpikeTotal", "unsigned int", RW)],
               {"Start": int(n.start), "End": end, "ExampleSteps": int(example_steps)},
               {"SpikeTotal": 0}, {})
    m.var("V", "scalar", 0.0)
    for param, value in (("VDecay", n.v_decay), ("VLeak", n.v_leak), ("VIn", n.v_in)):
        m.value(param, value)
    body = ["const scalar x = Isyn;"]
    if n.bias is not None:
        m.value("Bias", n.bias)
        body = ["const scalar x = Isyn + Bias;"]
    if n.i_decay is not None:
        m.value("IDecay", n.i_decay)
        m.value("IIn", n.i_in)
        m.var("I", "scalar", 0.0)
        update = "I = (IDecay * I) + (IIn * x);"
        body += ([update, "const scalar c = I;"] if n.current_first
                 else ["const scalar c = I;", update])
    else:
        body.append("const scalar c = x;")
    readouts = {"var": "V"}
    membrane = "(VDecay * V) + VLeak + (VIn * c)"
    kwargs: dict = {}
    if n.spiking:
        membrane, kwargs = _spiking(n, m, membrane, readouts)
    body.append(f"V = {membrane};")
    active = "s >= Start && s < End"
    sim = [f"const int s = {_LOCAL_STEP};", f"if ({active}) {{",
           *("    " + line for line in "\n".join(body).split("\n"))]
    if n.readout == "avg_var" or (n.readout is None and not n.spiking):
        # the mean over the active steps so far, stored times the steps simulated so far
        # (the checkpoint that read_value divides averaging readouts by)
        m.var("VSum", "scalar", 0.0)
        m.var("VAvg", "scalar", 0.0)
        readouts["avg_var"] = "VAvg"
        sim += ["    VSum += V;", "}", "const int n = min(s + 1, End) - Start;",
                "VAvg = (n > 0) ? VSum * (scalar)(s + 1) / (scalar)n : 0.0;"]
    else:
        sim.append("}")
    model = create_neuron_model(f"nir_{name}", params=m.params, vars=m.vars,
                                sim_code="\n".join(sim), **kwargs)
    return NeuronCode(model, m.param_values, m.var_values, m.reset, readout_var=readouts,
                      signed=n.spiking and n.multi_spike)


def _spiking(n: NIRNeuron, m: _Parts, membrane: str, readouts: dict) -> tuple[str, dict]:
    """Threshold, reset and spike count of a spiking NIR neuron; the membrane update with
    the late resets folded in."""
    m.value("Vthresh", n.v_thresh)
    m.var("Scount", "unsigned int", 0)
    readouts["spike_count"] = "Scount"
    if n.reset in ("zero", "zero_late"):
        m.value("Vreset", n.v_reset)
    reset_code = []
    if n.multi_spike:  # Sinabs: floor(V / threshold) spikes as one event of that weight
        m.var("Sgn", "scalar", 0.0)
        reset_code.append("Sgn = floor(V / Vthresh);\nScount += (unsigned int)Sgn;")
    else:
        reset_code.append("Scount++;")
    spikes = "Sgn" if n.multi_spike else "1.0"
    if n.reset == "zero":
        reset_code.append("V = Vreset;")
    elif n.reset == "subtract":
        reset_code.append(f"V -= {spikes} * Vthresh;")
    else:  # the late resets act in the next step's update
        m.var("Rst", "scalar", 0.0)
        reset_code.append(f"Rst = {spikes};")
        membrane = (f"{membrane} - (Rst * Vthresh)" if n.reset == "subtract_late"
                    else f"(Rst > 0.0) ? Vreset : ({membrane})")
        membrane += ";\nRst = 0.0"
    reset_code.append("SpikeTotal++;")
    threshold = f"{_LOCAL_STEP} >= Start && {_LOCAL_STEP} < End && V >= Vthresh"
    return membrane, {"threshold_condition_code": threshold,
                      "reset_code": "\n".join(reset_code)}


def nir_code(neuron, name: str, size: int, example_steps: int, batch_size: int) -> NeuronCode:
    """GeNN code of a NIR population (:class:`NIRNeuron` or :class:`RasterInput`)."""
    if isinstance(neuron, RasterInput):
        return raster_input(neuron, name, size, example_steps, batch_size)
    return nir_neuron(neuron, name, example_steps)


def raster_input(n: RasterInput, name: str, size: int, example_steps: int,
                 batch_size: int) -> RasterCode:
    """Step ``s < Steps`` of each example sends frame ``s`` of its lane's raster:
    ``Raster[(batch Steps + s) size + id]``; each non-zero entry is an event of that weight
    (``Sgn``, read by the outgoing synapses)."""
    steps = int(example_steps) - int(n.tail)
    if steps < 1:
        raise ValueError(f"input {name!r}: {example_steps} steps leave no input window before "
                         f"the {n.tail} steps of the network's depth")
    model = create_neuron_model(
        f"raster_{name}", params=[("Steps", "int"), ("Size", "int"), ("ExampleSteps", "int")],
        vars=[("Sgn", "scalar", RW), ("SpikeTotal", "unsigned int", RW)],
        extra_global_params=[("Raster", "scalar*")],
        sim_code=(f"const int s = {_LOCAL_STEP};\n"
                  "Sgn = (s < Steps) ? Raster[(((batch * Steps) + s) * Size) + id] : 0.0;"),
        threshold_condition_code="Sgn != 0.0", reset_code="SpikeTotal++;")
    return RasterCode(model, {"Steps": steps, "Size": int(size),
                              "ExampleSteps": int(example_steps)},
                      {"Sgn": 0.0, "SpikeTotal": 0}, {"Sgn": 0.0}, input_var="Sgn",
                      signed=True, steps=steps, size=int(size),
                      egps={"Raster": np.zeros(batch_size * steps * int(size), np.float32)})


def write_raster(group, code: RasterCode, batch_size: int, x: np.ndarray) -> None:
    """Write a batch of rasters ``x[b, T, ...]`` (frames past the window are dropped, missing
    ones and missing lanes are silent) into a raster input's ``Raster``."""
    x = np.asarray(x)
    b, frames = x.shape[0], x.shape[1] if x.ndim > 1 else 0
    egp = group.extra_global_params["Raster"]
    view = egp.view.reshape(batch_size, code.steps, code.size)
    view[...] = 0.0
    n = min(frames, code.steps)
    view[:b, :n] = x[:, :n].reshape(b, n, code.size)
    egp.push_to_device()
