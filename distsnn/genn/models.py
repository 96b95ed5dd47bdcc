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
from pygenn import (
    VarAccess,
    VarAccessMode,
    create_custom_update_model,
    create_neuron_model,
    create_postsynaptic_model,
    create_weight_update_model,
)

from distsnn.neurons import (
    AnalogInput,
    BinarySpikeInput,
    FewSpikeRelu,
    FewSpikeReluInput,
    IntegrateFire,
    IntegrateFireInput,
    Integrator,
    LeakyIntegrate,
    LeakyIntegrateFire,
    Neuron,
    PoissonInput,
    SpikeInput,
)

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

#: Postsynaptic model of exponential synapses (mlGeNN's ``Exponential``): the current is
#: injected (times ``IScale``) and decays every step; input arriving before step
#: ``FirstStep`` of an example is dropped and the current restarts at 0 with every example.
EXAMPLE_GATED_EXP = create_postsynaptic_model(
    "example_gated_exp",
    params=[("FirstStep", "int"), ("ExampleSteps", "int"), ("ExpDecay", "scalar"),
            ("IScale", "scalar")],
    sim_code="""
    if ((((int)(t / dt + 0.5)) % ExampleSteps) >= FirstStep) {
        injectCurrent(inSyn * IScale);
        inSyn *= ExpDecay;
    }
    else {
        inSyn = 0.0;
    }
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
    #: A spike-train input (:class:`SpikeInput`): spikes per batch at most (its ``SpikeTimes``).
    max_spikes: int = 0
    #: Extra global parameters and their initial arrays.
    egps: dict = field(default_factory=dict)


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
                   record_max_input: bool, example_steps: int = 1,
                   count_spikes: bool = False) -> NeuronCode:
    """``count_spikes``: ``Count`` holds the example's spike count (read by max-pools)."""
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
    extra_reset: list[str] = []
    add_readout(n.readout, name, ReadoutParts(params, vars_, pv, vv, sim, extra_reset,
                                              reset_vals, readouts), example_steps)
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
    if count_spikes:
        _readout_var(ReadoutParts(params, vars_, pv, vv, sim, extra_reset, reset_vals, {}),
                     "Count", "unsigned int", 0)
        extra_reset.append("Count++;")
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
    sim = _FS_STEP
    if n.rounding == "nearest":  # half a step away from 0 before coding (the host wrote V)
        sim += "\nif (p == 0) { V += (V < 0.0) ? -0.5 * Scale : 0.5 * Scale; }"
    if n.signed_input:
        sim += ("\nconst bool positive = (p % 2) == 0;\n"
                "const scalar hT = Scale * (scalar)(1 << (HalfK - 1 - p / 2));")
        threshold, reset = "positive ? (V >= hT) : (V <= -hT)", "if (positive) { V -= hT; } else { V += hT; }"
    else:
        sim += "\nconst scalar hT = Scale * (scalar)(1 << (K - 1 - p));"
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
    half_step = " + 0.5 * Scale" if n.rounding == "nearest" else ""  # coded to the nearest step
    sim = (f"{_FS_STEP}\n{weight}\nFx += Isyn * d;\n"
           f"if (p == 0) {{\n    Out = Fx + {bias};\n    V = Out{half_step};\n    Fx = 0.0;\n}}\n"
           "const scalar hT = Scale * (scalar)(1 << (K - 1 - p));")
    model = create_neuron_model(f"fs_relu_{name}", params=params, vars=vars_, sim_code=sim,
                                threshold_condition_code="V >= hT",
                                reset_code="V -= hT;\nSpikeTotal++;")
    return NeuronCode(model, pv, vv, readout_var={"var": "Out"})


#: The step within the current example (time need not restart at 0 for every batch).
_LOCAL_STEP = "(((int)(t / dt + 0.5)) % ExampleSteps)"
_LOWEST = float(np.finfo(np.float32).min)


@dataclass
class ReadoutParts:
    """The pieces of a neuron model under construction that readouts add to."""

    params: list
    vars: list
    param_values: dict
    var_values: dict
    sim: list            # sim code lines (the output variable is final after them)
    reset_code: list     # lines run after each spike; None for non-spiking models
    reset: dict          # variables restored at the start of every example
    readout_var: dict    # readout name -> variable


def add_readout(readout: str | None, name: str, m: ReadoutParts, example_steps: int,
                out: str = "V") -> None:
    """Add mlGeNN's readout ``readout`` of output variable ``out`` (see distsnn.readouts)."""
    m.readout_var["var"] = out
    if readout is None or readout == "var":
        return
    if readout in ("spike_count", "first_spike_time") and m.reset_code is None:
        raise ValueError(f"population {name!r}: the {readout} readout needs a spiking neuron; "
                         f"use var, avg_var, sum_var, max_var or avg_var_exp_weight")
    if readout in ("avg_var_exp_weight", "first_spike_time") and not any(
            p[0] == "ExampleSteps" for p in m.params):
        m.params.append(("ExampleSteps", "int"))
        m.param_values["ExampleSteps"] = int(example_steps)
    if readout == "spike_count":
        _readout_var(m, "Scount", "unsigned int", 0)
        m.reset_code.append("Scount++;")
    elif readout in ("avg_var", "sum_var"):
        _readout_var(m, f"{out}Sum", "scalar", 0.0)
        m.sim.append(f"{out}Sum += {out};")
    elif readout == "avg_var_exp_weight":
        _readout_var(m, f"{out}ExpSum", "scalar", 0.0)
        m.sim.append(f"{out}ExpSum += exp(-(scalar){_LOCAL_STEP} / (scalar)ExampleSteps) * {out};")
    elif readout == "max_var":
        _readout_var(m, f"{out}Max", "scalar", _LOWEST)
        m.sim.append(f"{out}Max = fmax({out}Max, {out});")
    elif readout == "first_spike_time":
        _readout_var(m, "TFirstSpike", "scalar", _LOWEST)
        m.reset_code.append(f"TFirstSpike = fmax(-(scalar){_LOCAL_STEP} * dt, TFirstSpike);")
    else:
        raise ValueError(f"population {name!r}: unknown readout {readout!r}")
    m.readout_var[readout] = m.vars[-1][0]


def _readout_var(m: ReadoutParts, var: str, type_: str, initial) -> None:
    m.vars.append((var, type_, RW))
    m.var_values[var] = m.reset[var] = initial


def _scalar_v(n: Neuron, name: str) -> float:
    if np.ndim(n.v) != 0:
        raise ValueError(f"population {name!r}: the initial v must be one value (it is also "
                         f"what V is reset to before every example), not an array")
    return float(n.v)


def _alpha(tau_mem, dt: float, name: str):
    tau = np.asarray(tau_mem, np.float64)
    if np.any(tau <= 0):
        raise ValueError(f"population {name!r}: tau_mem must be positive, not {tau_mem!r}")
    alpha = np.exp(-dt / tau)
    return float(alpha) if alpha.ndim == 0 else alpha


def _integration(scale_i: bool, bias: str = "") -> str:
    """mlGeNN's leaky update of ``V`` (``bias``: a term added each step, e.g. " + Bias")."""
    drive = "((1.0 - Alpha) * Isyn)" if scale_i else "Isyn"
    return f"V = (Alpha * V) + {drive}{bias};"


def leaky_integrate(n: LeakyIntegrate, name: str, dt: float, example_steps: int) -> NeuronCode:
    """mlGeNN's LeakyIntegrate: ``V = Alpha V + Isyn (* (1 - Alpha)) + Bias``, no spikes."""
    v0 = _scalar_v(n, name)
    params, vars_ = [], [("V", "scalar", RW), ("SpikeTotal", "unsigned int", RW)]
    pv: dict = {}
    vv: dict = {"V": v0, "SpikeTotal": 0}
    _value("Alpha", _alpha(n.tau_mem, dt, name), params, vars_, pv, vv)
    _value("Bias", n.bias, params, vars_, pv, vv)
    parts = ReadoutParts(params, vars_, pv, vv, [_integration(n.scale_i, " + Bias")], None,
                         {"V": v0}, {})
    add_readout(n.readout, name, parts, example_steps)
    model = create_neuron_model(f"li_{name}", params=params, vars=vars_,
                                sim_code="\n".join(parts.sim))
    return NeuronCode(model, pv, vv, parts.reset, readout_var=parts.readout_var)


def leaky_integrate_fire(n: LeakyIntegrateFire, name: str, dt: float,
                         example_steps: int) -> NeuronCode:
    """mlGeNN's LeakyIntegrateFire, refractory period and readouts included."""
    v0 = _scalar_v(n, name)
    params, vars_ = [], [("V", "scalar", RW), ("SpikeTotal", "unsigned int", RW)]
    pv: dict = {}
    vv: dict = {"V": v0, "SpikeTotal": 0}
    for param, value in (("Vthresh", n.v_thresh), ("Vreset", n.v_reset),
                         ("Alpha", _alpha(n.tau_mem, dt, name))):
        _value(param, value, params, vars_, pv, vv)
    update = _integration(n.scale_i)
    reset_code = ["V -= (Vthresh - Vreset);" if n.relative_reset else "V = Vreset;"]
    threshold = "V >= Vthresh"
    reset = {"V": v0}
    if n.tau_refrac is None:
        sim = [update]
    else:
        _value("TauRefrac", n.tau_refrac, params, vars_, pv, vv)
        vars_.append(("RefracTime", "scalar", RW))
        vv["RefracTime"] = reset["RefracTime"] = 0.0
        countdown = "if (RefracTime > 0.0) {\n    RefracTime -= dt;\n}"
        sim = ([update, countdown] if n.integrate_during_refrac
               else [f"{countdown}\nelse {{\n    {update}\n}}"])
        reset_code.append("RefracTime = TauRefrac;")
        threshold += " && RefracTime <= 0.0"
    reset_code.append("SpikeTotal++;")
    parts = ReadoutParts(params, vars_, pv, vv, sim, reset_code, reset, {})
    add_readout(n.readout, name, parts, example_steps)
    model = create_neuron_model(f"lif_{name}", params=params, vars=vars_,
                                sim_code="\n".join(sim), threshold_condition_code=threshold,
                                reset_code="\n".join(reset_code))
    return NeuronCode(model, pv, vv, reset, readout_var=parts.readout_var)


def spike_train_input(n: SpikeInput, name: str, example_steps: int) -> NeuronCode:
    """Replays per batch lane the spikes ``SpikeTimes[StartSpike:EndSpike]`` of each neuron
    (times from the example's start); the host writes all three per batch."""
    model = create_neuron_model(
        f"spike_train_{name}", params=[("ExampleSteps", "int")],
        vars=[("StartSpike", "unsigned int", RW), ("EndSpike", "unsigned int", RO_BATCH),
              ("SpikeTotal", "unsigned int", RW)],
        extra_global_params=[("SpikeTimes", "scalar*")],
        threshold_condition_code=("StartSpike != EndSpike && "
                                  f"(scalar){_LOCAL_STEP} * dt >= SpikeTimes[StartSpike]"),
        reset_code="StartSpike++;\nSpikeTotal++;")
    return NeuronCode(model, {"ExampleSteps": int(example_steps)},
                      {"StartSpike": 0, "EndSpike": 0, "SpikeTotal": 0}, input_var="EndSpike",
                      max_spikes=n.max_spikes,
                      egps={"SpikeTimes": np.zeros(n.max_spikes, np.float32)})


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
                src_signed: bool = False, example_steps: int = 1, dt: float = 1.0,
                count_spikes: bool = False) -> NeuronCode:
    """GeNN code for one population's neuron description (``count_spikes``: integrate-and-fire
    neurons keep the example's spike count in ``Count``, for max-pools)."""
    if isinstance(neuron, AnalogInput):
        return analog_input(name, example_steps)
    if isinstance(neuron, Integrator):
        return integrator(neuron, name)
    if isinstance(neuron, IntegrateFire):
        return integrate_fire(neuron, name, dynamic_threshold, record_max_input, example_steps,
                              count_spikes)
    if isinstance(neuron, LeakyIntegrate):
        return leaky_integrate(neuron, name, dt, example_steps)
    if isinstance(neuron, LeakyIntegrateFire):
        return leaky_integrate_fire(neuron, name, dt, example_steps)
    if isinstance(neuron, SpikeInput):
        return spike_train_input(neuron, name, example_steps)
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
