"""GeNN model code for each IR neuron kind, plus the synapse models distsnn needs.

Every spiking model counts its spikes in ``SpikeTotal`` (never reset, pulled once at the
end for spike statistics). Signed spike sources write ``Sgn`` (+1/-1) in their sim code and
their outgoing synapses use :data:`SIGNED_PULSE`, which reads it as a presynaptic variable
reference (mlGeNN's negative-threshold events do not build on GeNN 5).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pygenn import (VarAccess, VarAccessMode, create_custom_update_model, create_neuron_model,
                    create_postsynaptic_model, create_weight_update_model)

from ..neurons import (AnalogInput, BinarySpikeInput, FewSpikeRelu, FewSpikeReluInput,
                       IntegrateFire, IntegrateFireInput, Integrator, Neuron, PoissonInput)

#: Postsynaptic model for rate-coded (per-example) runs: input arriving before step
#: ``FirstStep`` of an example can only be a spike emitted by the previous example (each hop
#: adds ``1 + delay`` steps of latency), so it is dropped. This clears spikes in flight.
EXAMPLE_GATED_DELTA = create_postsynaptic_model(
    "example_gated_delta", params=[("FirstStep", "int"), ("ExampleSteps", "int")],
    sim_code="""
    if ((((int)(t / dt + 0.5)) % ExampleSteps) >= FirstStep) {
        injectCurrent(inSyn);
    }
    inSyn = 0.0;
    """)

#: Postsynaptic model of connections from an analog input: the input arrives once per example
#: (at step ``FirstStep``); it is held and injected every step from then on, so the target
#: receives the constant ``W x`` for the rest of the example.
HELD_DELTA = create_postsynaptic_model(
    "held_delta", params=[("FirstStep", "int"), ("ExampleSteps", "int")],
    vars=[("Held", "scalar")],
    sim_code="""
    const int s = ((int)(t / dt + 0.5)) % ExampleSteps;
    if (s == FirstStep) {
        Held = inSyn;
    }
    if (s >= FirstStep) {
        injectCurrent(Held);
    }
    inSyn = 0.0;
    """)

#: Synapse of an analog input: one event per example carries ``g x``.
ANALOG_PULSE = create_weight_update_model(
    "analog_pulse", vars=[("g", "scalar", VarAccess.READ_ONLY)],
    pre_neuron_var_refs=[("Input", "scalar", VarAccessMode.READ_ONLY)],
    pre_spike_syn_code="addToPost(g * Input);")

#: Static synapse whose sign comes from the presynaptic neuron's ``Sgn``.
SIGNED_PULSE = create_weight_update_model(
    "signed_pulse", vars=[("g", "scalar", VarAccess.READ_ONLY)],
    pre_neuron_var_refs=[("Sgn", "scalar", VarAccessMode.READ_ONLY)],
    pre_spike_syn_code="addToPost(g * Sgn);")


@dataclass
class NeuronCode:
    """A GeNN neuron model with its parameter and initial variable values."""

    model: Any
    params: dict = field(default_factory=dict)
    vars: dict = field(default_factory=dict)
    #: Variables set to these constants at the start of every example (rate mode).
    reset: dict = field(default_factory=dict)
    #: Name of the variable that holds the external input written by the host.
    input_var: str | None = None
    #: Variables per readout kind.
    readout_var: dict = field(default_factory=dict)
    signed: bool = False
    #: An analog input: its connections carry ``g * Input`` once per example.
    analog: bool = False


RW = VarAccess.READ_WRITE
RO_NEURON = VarAccess.READ_ONLY          # per neuron, shared by the batch
RO_BATCH = VarAccess.READ_ONLY_DUPLICATE  # per neuron and batch element


def _value(name: str, value, params: list, vars_: list, values_p: dict, values_v: dict) -> None:
    """A scalar becomes a GeNN parameter, an array a read-only per-neuron variable."""
    if np.ndim(value) == 0:
        params.append((name, "scalar"))
        values_p[name] = float(value)
    else:
        vars_.append((name, "scalar", RO_NEURON))
        values_v[name] = np.asarray(value, np.float32).reshape(-1)


def integrate_fire(n: IntegrateFire, name: str, dynamic_threshold: bool,
                   record_max_input: bool) -> NeuronCode:
    params, vars_ = [("Vreset", "scalar")], [("V", "scalar", RW), ("SpikeTotal", "unsigned int", RW)]
    pv: dict = {"Vreset": float(n.v_reset)}
    vv: dict = {"V": float(n.v), "SpikeTotal": 0}
    if dynamic_threshold:
        params.append(("Vthresh", "scalar"))
        pv["Vthresh"] = float(np.max(n.v_thresh))
    else:
        _value("Vthresh", n.v_thresh, params, vars_, pv, vv)
    sim = ["const scalar In = Isyn;"]
    if n.bias is not None:
        _value("Bias", n.bias, params, vars_, pv, vv)
        sim = ["const scalar In = Isyn + Bias;"]
    sim.append("V += In;")
    reset_vals: dict = {"V": float(n.v)}
    readouts = {"var": "V"}
    extra_reset = []
    if n.readout == "spike_count":
        vars_.append(("Scount", "unsigned int", RW))
        vv["Scount"], reset_vals["Scount"], readouts["spike_count"] = 0, 0, "Scount"
        extra_reset.append("Scount++;")
    if n.readout == "avg_var":
        vars_.append(("VSum", "scalar", RW))
        vv["VSum"], reset_vals["VSum"], readouts["avg_var"] = 0.0, 0.0, "VSum"
        sim.append("VSum += V;")
    if record_max_input:
        vars_.append(("MaxIn", "scalar", RW))
        vars_.append(("LastIn", "scalar", RW))
        vv["MaxIn"], vv["LastIn"] = float(np.finfo(np.float32).min), 0.0
        sim.append("MaxIn = fmax(MaxIn, In);\nLastIn = In;")
    if n.reset == "subtract":
        reset_code = "V -= Vthresh;"
    elif n.reset == "zero":
        reset_code = "V = Vreset;"
    else:
        raise ValueError(f"population {name!r}: reset must be 'zero' or 'subtract', "
                         f"not {n.reset!r}")
    model = create_neuron_model(
        f"if_{name}", params=params, vars=vars_, sim_code="\n".join(sim),
        threshold_condition_code="V >= Vthresh",
        reset_code="\n".join([reset_code, "SpikeTotal++;", *extra_reset]))
    return NeuronCode(model, pv, vv, reset_vals, readout_var=readouts)


def if_input(n: IntegrateFireInput, name: str) -> NeuronCode:
    vars_ = [("V", "scalar", RW), ("Input", "scalar", RO_BATCH), ("SpikeTotal", "unsigned int", RW)]
    vv: dict = {"V": float(n.v), "Input": 0.0, "SpikeTotal": 0}
    if n.reset not in ("zero", "subtract"):
        raise ValueError(f"population {name!r}: reset must be 'zero' or 'subtract'")
    if n.signed_input:
        vars_.append(("Sgn", "scalar", RW))
        vv["Sgn"] = 0.0
        sim = ("V += Input;\n"
               "Sgn = (V >= Vthresh) ? 1.0 : ((V <= -Vthresh) ? -1.0 : 0.0);")
        threshold = "Sgn != 0.0"
        reset = "V -= Sgn * Vthresh;" if n.reset == "subtract" else "V = Vreset;"
    else:
        sim, threshold = "V += Input;", "V >= Vthresh"
        reset = "V -= Vthresh;" if n.reset == "subtract" else "V = Vreset;"
    model = create_neuron_model(
        f"if_input_{name}", params=[("Vthresh", "scalar"), ("Vreset", "scalar")], vars=vars_,
        sim_code=sim, threshold_condition_code=threshold, reset_code=reset + "\nSpikeTotal++;")
    return NeuronCode(model, {"Vthresh": float(n.v_thresh), "Vreset": float(n.v_reset)}, vv,
                      {"V": float(n.v)}, input_var="Input", signed=n.signed_input)


def analog_input(name: str, example_steps: int) -> NeuronCode:
    """One event per example (at its first step) from each neuron whose input is non-zero."""
    model = create_neuron_model(
        f"analog_input_{name}", params=[("ExampleSteps", "int")],
        vars=[("Input", "scalar", RO_BATCH), ("SpikeTotal", "unsigned int", RW)],
        threshold_condition_code="Input != 0.0 && ((int)(t / dt + 0.5)) % ExampleSteps == 0",
        reset_code="SpikeTotal++;")
    return NeuronCode(model, {"ExampleSteps": int(example_steps)},
                      {"Input": 0.0, "SpikeTotal": 0}, input_var="Input", analog=True)


def integrator(n: Integrator, name: str) -> NeuronCode:
    """Non-spiking output: ``ISum`` accumulates ``Isyn + Bias`` (reset per example)."""
    params, vars_ = [], [("ISum", "scalar", RW), ("SpikeTotal", "unsigned int", RW)]
    pv: dict = {}
    vv: dict = {"ISum": 0.0, "SpikeTotal": 0}
    sim = "ISum += Isyn;"
    if n.bias is not None:
        _value("Bias", n.bias, params, vars_, pv, vv)
        sim = "ISum += Isyn + Bias;"
    model = create_neuron_model(f"integrator_{name}", params=params, vars=vars_, sim_code=sim)
    return NeuronCode(model, pv, vv, {"ISum": 0.0}, readout_var={"avg_input": "ISum"})


def _spike_source(name: str, prefix: str, signed: bool, sim: str, fire: str,
                  random: bool = False) -> NeuronCode:
    vars_ = [("Input", "scalar", RO_BATCH), ("SpikeTotal", "unsigned int", RW)]
    vv: dict = {"Input": 0.0, "SpikeTotal": 0}
    if random:
        vars_.append(("Stream", "unsigned int", RO_BATCH))
        vv["Stream"] = 0
    if signed:
        vars_.append(("Sgn", "scalar", RW))
        vv["Sgn"] = 0.0
        sim += "\nSgn = (Input > 0.0) ? 1.0 : -1.0;"
        threshold = f"Input != 0.0 && {fire}"
    else:
        threshold = f"Input > 0.0 && {fire}"
    model = create_neuron_model(f"{prefix}_{name}", vars=vars_, sim_code=sim,
                                threshold_condition_code=threshold, reset_code="SpikeTotal++;")
    return NeuronCode(model, {}, vv, input_var="Input", signed=signed)


#: lowbias32 integer hash (Wellons); GeNN's transpiler has no ``>>``: unsigned division.
_MIX = ("h ^= h / 65536u; h *= 0x7FEB352Du; h ^= h / 32768u; h *= 0x846CA68Bu; "
        "h ^= h / 65536u;")

#: A uniform number in [0, 1) that is a pure function of (example stream, step, neuron):
#: the host sets ``Stream`` per batch lane from the base seed and the global example index,
#: so Poisson inputs do not depend on the rank count, the batch size or the build.
_UNIFORM = (
    "const unsigned int step = (unsigned int)(t / dt + 0.5);\n"
    "unsigned int h = Stream + 0x9E3779B9u * (step + 1u);\n"
    f"{_MIX}\n"
    "h ^= (unsigned int)id;\n"
    f"{_MIX}\n"
    "const scalar u = (scalar)(h / 256u) * 5.9604644775390625e-08;")


def poisson_input(n: PoissonInput, name: str) -> NeuronCode:
    return _spike_source(name, "poisson", n.signed_input,
                         f"{_UNIFORM}\nconst bool fire = u >= exp(-fabs(Input) * dt);", "fire",
                         random=True)


def example_streams(seed: int, examples: np.ndarray) -> np.ndarray:
    """``Stream`` values of Poisson inputs: a hash of the base seed and the example index."""
    def mix(h):
        h = h & 0xFFFFFFFF
        h ^= h >> 16
        h = (h * 0x7FEB352D) & 0xFFFFFFFF
        h ^= h >> 15
        h = (h * 0x846CA68B) & 0xFFFFFFFF
        return h ^ (h >> 16)
    return mix(mix(np.asarray(examples, np.uint64) + np.uint64(0x632BE5AB))
               ^ mix(np.uint64(seed))).astype(np.uint32)


def spike_input(n: BinarySpikeInput, name: str) -> NeuronCode:
    return _spike_source(name, "spike", n.signed_input, "", "true")


def _check_k(k: int, signed: bool, name: str) -> None:
    if not 1 <= k <= 30:
        raise ValueError(f"population {name!r}: few-spike K must be between 1 and 30, not {k}")
    if signed and k % 2:
        raise ValueError(f"population {name!r}: signed few-spike input needs an even K "
                         f"(K/2 positive and K/2 negative bit steps), not K={k}")


def few_spike_scale(k: int, alpha: float, signed: bool) -> float:
    """Value of the least significant bit of a few-spike code."""
    return alpha * 2.0 ** (-(k // 2) if signed else -k)


#: Step within the few-spike window; the host sets the timestep to 0 before each window.
_FS_STEP = "const int p = (int)(t / dt + 0.5);"


def few_spike_input(n: FewSpikeReluInput, name: str) -> NeuronCode:
    _check_k(n.k, n.signed_input, name)
    if n.signed_input:
        sim = (f"{_FS_STEP}\nconst bool positive = (p % 2) == 0;\n"
               "const scalar hT = Scale * (scalar)(1 << (HalfK - 1 - p / 2));")
        threshold, reset = "positive ? (V >= hT) : (V <= -hT)", "if (positive) { V -= hT; } else { V += hT; }"
    else:
        sim = f"{_FS_STEP}\nconst scalar hT = Scale * (scalar)(1 << (K - 1 - p));"
        threshold, reset = "V >= hT", "V -= hT;"
    model = create_neuron_model(
        f"fs_input_{name}", params=[("K", "int"), ("HalfK", "int"), ("Scale", "scalar")],
        vars=[("V", "scalar", RW), ("SpikeTotal", "unsigned int", RW)], sim_code=sim,
        threshold_condition_code=threshold, reset_code=reset + "\nSpikeTotal++;")
    return NeuronCode(model, {"K": n.k, "HalfK": n.k // 2,
                              "Scale": few_spike_scale(n.k, n.alpha, n.signed_input)},
                      {"V": 0.0, "SpikeTotal": 0}, input_var="V")


def few_spike_relu(n: FewSpikeRelu, name: str, src_alpha: float, src_signed: bool) -> NeuronCode:
    """``Fx`` accumulates the weighted source code of the current window; at step 0 it is
    latched (plus bias) into ``V`` and ``Out`` (the complete pre-activation readout)."""
    _check_k(n.k, False, name)
    params = [("K", "int"), ("HalfK", "int"), ("Scale", "scalar"), ("SrcScale", "scalar")]
    pv: dict = {"K": n.k, "HalfK": n.k // 2, "Scale": few_spike_scale(n.k, n.alpha, False),
                "SrcScale": few_spike_scale(n.k, src_alpha, src_signed)}
    vars_ = [("Fx", "scalar", RW), ("V", "scalar", RW), ("Out", "scalar", RW),
             ("SpikeTotal", "unsigned int", RW)]
    vv: dict = {"Fx": 0.0, "V": 0.0, "Out": 0.0, "SpikeTotal": 0}
    bias = "0.0"
    if n.bias is not None:
        _value("Bias", n.bias, params, vars_, pv, vv)
        bias = "Bias"
    if src_signed:
        weight = ("const int q = (p + K - 1) % K;\n"
                  "const scalar d = ((q % 2) == 0 ? SrcScale : -SrcScale)"
                  " * (scalar)(1 << (HalfK - 1 - q / 2));")
    else:
        weight = "const scalar d = SrcScale * (scalar)(1 << ((K - p) % K));"
    sim = (f"{_FS_STEP}\n{weight}\nFx += Isyn * d;\n"
           f"if (p == 0) {{\n    V = Fx + {bias};\n    Out = V;\n    Fx = 0.0;\n}}\n"
           "const scalar hT = Scale * (scalar)(1 << (K - 1 - p));")
    model = create_neuron_model(f"fs_relu_{name}", params=params, vars=vars_, sim_code=sim,
                                threshold_condition_code="V >= hT",
                                reset_code="V -= hT;\nSpikeTotal++;")
    return NeuronCode(model, pv, vv, readout_var={"var": "Out"})


def reset_update_model(name: str, values: dict, types: dict):
    """Custom update that writes constants into the given neuron variables."""
    code = "\n".join(f"{var} = {_literal(v)};" for var, v in values.items())
    return create_custom_update_model(
        f"reset_{name}", var_refs=[(var, types[var], VarAccessMode.READ_WRITE) for var in values],
        update_code=code)


def _literal(value) -> str:
    return str(int(value)) if isinstance(value, (int, np.integer)) else repr(float(value))


def neuron_code(neuron: Neuron, name: str, *, dynamic_threshold: bool = False,
                record_max_input: bool = False, src_alpha: float = 1.0,
                src_signed: bool = False, example_steps: int = 1) -> NeuronCode:
    """GeNN code for one population's neuron description."""
    if isinstance(neuron, AnalogInput):
        return analog_input(name, example_steps)
    if isinstance(neuron, Integrator):
        return integrator(neuron, name)
    if isinstance(neuron, IntegrateFire):
        return integrate_fire(neuron, name, dynamic_threshold, record_max_input)
    if isinstance(neuron, IntegrateFireInput):
        return if_input(neuron, name)
    if isinstance(neuron, PoissonInput):
        return poisson_input(neuron, name)
    if isinstance(neuron, BinarySpikeInput):
        return spike_input(neuron, name)
    if isinstance(neuron, FewSpikeReluInput):
        return few_spike_input(neuron, name)
    if isinstance(neuron, FewSpikeRelu):
        return few_spike_relu(neuron, name, src_alpha, src_signed)
    raise TypeError(f"population {name!r}: no GeNN model for neuron {type(neuron).__name__}")
