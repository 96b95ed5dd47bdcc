"""Turn a :class:`~distsnn.network.Network` into a loaded GeNN model and drive it.

:class:`GeNNNetwork` is the only object the evaluation loop talks to; it hides pygenn.
Each connection's GeNN matrix type comes from :func:`distsnn.genn.lowering.plan_lowering` (the
one place that decides, with the memory model): DENSE weights, distsnn's own TOEPLITZ
snippets (genn/toeplitz.py) for every convolution-like connection, or SPARSE explicit
synapses computed once per node and cached (genn/synapse_cache.py). The plan's memory
estimate is checked against the per-rank budget before anything large is allocated.
"""
from __future__ import annotations

import hashlib
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np
from pygenn import GeNNModel, create_var_ref, init_postsynaptic, init_weight_update

from distsnn.connectivity import MaxPool2D
from distsnn.errors import UserError
from distsnn.genn import maxpool
from distsnn.genn.backends import BACKENDS, available_backends
from distsnn.genn.lowering import LoweringPlan, kernel_geometry, kernel_values, plan_lowering
from distsnn.genn.models import (
    ANALOG_PULSE,
    EXAMPLE_GATED_DELTA,
    EXAMPLE_GATED_EXP,
    HELD_DELTA,
    SIGNED_PULSE,
    NeuronCode,
    example_streams,
    neuron_code,
    reset_update_model,
)
from distsnn.genn.synapse_cache import SynapseCache
from distsnn.genn.toeplitz import procedural_connectivity, toeplitz_connectivity
from distsnn.network import Connection, Network, Population
from distsnn.neurons import FewSpikeRelu, FewSpikeReluInput, SpikingMax
from distsnn.nir_neurons import NIRNeuron, RasterInput
from distsnn.parallel.communicator import Communicator, SerialCommunicator
from distsnn.utils.data import batch_spikes, calc_start_spikes

#: mlGeNN's name of the per-batch reset custom update group (distsnn's reset groups together).
RESET = "Reset"


def resolve_backend(backend: str, gpus_visible: bool) -> str:
    """``auto`` means CUDA when pygenn's CUDA backend imports (driver present) and a GPU
    answers a device query (``gpus_visible``, see
    :func:`distsnn.parallel.devices.answering_gpus`), else CPU."""
    available = available_backends()
    if backend == "auto":
        return "cuda" if "cuda" in available and gpus_visible else "cpu"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be auto, cpu or cuda, not {backend!r}")
    if backend not in available:
        raise RuntimeError(f"this pygenn was built without the {backend} backend (available: "
                           f"{', '.join(available) or 'none'}); rebuild it with make setup on a "
                           f"machine with the CUDA toolkit")
    return backend


@dataclass
class CompileOptions:
    """How to turn a network into a GeNN model."""

    mode: str = "rate"               # "rate": per-example reset; "few_spike": pipelined
    example_timesteps: int = 100     # T (rate) or K (few-spike window)
    backend: str = "cpu"             # resolved backend: "cpu" or "cuda"
    batch_size: int = 1              # per rank
    seed: int = 1                    # base seed of the Poisson streams (not compiled in)
    dt: float = 1.0
    connectivity: str = "auto"       # lowering of convolutions: auto | toeplitz | sparse
    #: Per-rank memory budget in bytes (None: no check) and what it was derived from.
    memory_budget: Optional[int] = None
    memory_budget_source: str = ""
    dynamic_thresholds: bool = False  # spike-norm search: thresholds settable at run time
    record_max_input: bool = False    # spike-norm search: per-neuron maximum input
    kernel_profiling: bool = False
    #: Readout per output population, for outputs whose neurons name none.
    readouts: dict = field(default_factory=dict)
    genn_kwargs: dict = field(default_factory=dict)
    #: ``GeNNModel`` attributes set before the model exists (``compiled.genn_model.X = v``).
    model_settings: dict = field(default_factory=dict)

    def signature(self) -> str:
        """Everything that shapes the generated code (GeNN's model.sha misses preferences)."""
        extra = repr((sorted(self.readouts.items()), sorted(self.genn_kwargs.items()),
                      sorted(self.model_settings.items())))
        return (f"{self.mode}-T{self.example_timesteps}-{self.backend}-b{self.batch_size}"
                f"-dt{self.dt:g}-{self.connectivity}"
                f"{'-norm' if self.record_max_input else ''}"
                f"{'-prof' if self.kernel_profiling else ''}"
                f"-x{hashlib.sha256(extra.encode()).hexdigest()[:8]}")


@dataclass
class BuildInfo:
    """What building and loading cost, and whether the build was reused."""

    model_name: str
    path: str
    build_s: float
    load_s: float
    reused: bool
    build_cpu_s: float = 0.0  # this process's CPU seconds (a wait for the node's build: ~0)
    load_cpu_s: float = 0.0


#: Models loaded in this process: GeNN dlopens one runtime library per model directory, so a
#: second loaded copy of the same model would share (and corrupt) the first one's state.
_LOADED: set[str] = set()


class GeNNNetwork:
    """A network compiled for GeNN: build once per node, load, then drive from the host."""

    def __init__(self, network: Network, options: CompileOptions,
                 synapse_cache: Optional[SynapseCache] = None):
        if options.backend == "cpu" and options.batch_size != 1:
            raise ValueError(f"the single-threaded CPU backend only supports a batch size of 1 "
                             f"per rank, not {options.batch_size}; use batch_size=1 or the CUDA "
                             f"backend")
        self.network = network
        self.options = options
        self.plan: LoweringPlan = plan_lowering(
            network, options.connectivity, options.batch_size, options.memory_budget,
            options.memory_budget_source)
        if options.connectivity == "procedural" and options.backend != "cuda":
            raise UserError("procedural connectivity needs the CUDA backend (GeNN's CPU backend "
                            "has none); use --connectivity toeplitz or auto")
        self.plan.check_budget()  # before anything large is allocated
        self.synapse_cache = synapse_cache or SynapseCache(None)
        self.model_name = f"distsnn_{network.content_hash()[:16]}_{options.signature()}"
        self.model_name = "".join(c if c.isalnum() else "_" for c in self.model_name)
        self._model = self._create_model()
        self._loaded = False

    # construction --------------------------------------------------------------------
    def _create_model(self) -> GeNNModel:
        opts = self.options
        kwargs = dict(opts.genn_kwargs)
        if opts.backend == "cpu":
            # GeNN compiles CPU code without optimisation unless asked: 2-5x slower
            kwargs.setdefault("optimize_code", True)
        if opts.backend == "cuda":
            from pygenn.cuda_backend import DeviceSelect
            kwargs.setdefault("device_select_method", DeviceSelect.MANUAL)
            kwargs.setdefault("manual_device_id", 0)
        model = GeNNModel("float", self.model_name, backend=BACKENDS[opts.backend], **kwargs)
        model.dt = opts.dt
        model.batch_size = opts.batch_size
        # GeNN compiles its seed into the code (0 would mean std::random_device); distsnn's
        # models draw no GeNN random numbers, so a fixed seed keeps one build for every rank
        # and every base seed
        model.seed = 1
        model.timing_enabled = opts.kernel_profiling
        for name, value in opts.model_settings.items():
            setattr(model, name, value)
        self.depth = (pipeline_depths(self.network) if opts.mode == "few_spike" else {})
        self.counted = maxpool.counted_sources(self.network)
        self.codes: dict[str, NeuronCode] = {}
        self.groups = {}
        for pop in self.network.populations:
            code = self._neuron_code(pop)
            group = model.add_neuron_population(pop.name, pop.size, code.model, code.params,
                                                code.vars)
            if opts.dynamic_thresholds and "Vthresh" in code.params:
                group.set_param_dynamic("Vthresh")
            for egp, values in code.egps.items():
                group.extra_global_params[egp].set_init_values(values)
            group.spike_recording_enabled = pop.record_spikes
            self.codes[pop.name], self.groups[pop.name] = code, group
        self.synapse_groups = {}
        for conn in self.network.connections:
            if self.plan.matrix(conn.name) != "NONE":  # all-zero weights add nothing
                self.synapse_groups[conn.name] = self._add_connection(model, conn)
        self._add_reset(model)
        return model

    def _neuron_code(self, pop: Population) -> NeuronCode:
        opts = self.options
        if opts.mode == "few_spike":
            if not isinstance(pop.neuron, (FewSpikeRelu, FewSpikeReluInput)):
                raise ValueError(f"population {pop.name!r}: a few-spike network may only contain "
                                 f"FewSpikeRelu/FewSpikeReluInput neurons, not "
                                 f"{type(pop.neuron).__name__}")
            if isinstance(pop.neuron, FewSpikeRelu):
                alpha, signed = few_spike_source(self.network, pop)
                return neuron_code(pop.neuron, pop.name, src_alpha=alpha, src_signed=signed)
        elif isinstance(pop.neuron, (FewSpikeRelu, FewSpikeReluInput)):
            raise ValueError(f"population {pop.name!r}: few-spike neurons need the few-spike "
                             f"schedule (FewSpikeCompiler / --method few-spike)")
        if isinstance(pop.neuron, SpikingMax):
            return maxpool.spiking_max(pop.name)
        neuron = pop.neuron
        if getattr(neuron, "readout", "") is None and pop.name in opts.readouts:
            neuron = replace(neuron, readout=opts.readouts[pop.name])
        if isinstance(neuron, (NIRNeuron, RasterInput)):
            from distsnn.genn.nir_models import nir_code
            return nir_code(neuron, pop.name, pop.size, opts.example_timesteps, opts.batch_size)
        if opts.record_max_input and getattr(neuron, "bias", None) is not None:
            # the spike-norm search rescales biases at run time: keep them per neuron
            neuron = replace(neuron, bias=np.broadcast_to(
                np.asarray(neuron.bias, np.float32).reshape(-1), (pop.size,)).copy())
        return neuron_code(neuron, pop.name, dynamic_threshold=opts.dynamic_thresholds,
                           record_max_input=opts.record_max_input,
                           example_steps=opts.example_timesteps, dt=opts.dt,
                           count_spikes=pop.name in self.counted)

    def _add_connection(self, model: GeNNModel, conn: Connection):
        opts = self.options
        src, trg = self.groups[conn.source.name], self.groups[conn.target.name]
        c = conn.connectivity
        delay = int(c.delay)
        if opts.mode == "few_spike":
            if delay:
                raise ValueError(f"connection {conn.name!r}: few-spike networks take no "
                                 f"connection delays (delay={delay}); the compiler balances "
                                 f"skip connections with whole windows itself")
            delay += (self.depth[conn.target.name] - self.depth[conn.source.name] - 1) \
                * opts.example_timesteps
            if conn.synapse.kind != "delta":
                raise ValueError(f"connection {conn.name!r}: few-spike networks take delta "
                                 f"synapses only, not {conn.synapse}")
            psm = init_postsynaptic("DeltaCurr")
        else:
            psm = self._postsynaptic(conn, delay)
        if isinstance(c, MaxPool2D):
            wu_model, pre_refs, post_refs = maxpool.weight_update(conn.source)
        else:
            (wu_model, pre_refs), post_refs = _weight_update(self.codes[conn.source.name]), {}
        matrix = self.plan.matrix(conn.name)
        shape = conn.source.shape
        factor = few_spike_weight_factor(self.network, conn) if opts.mode == "few_spike" else 1.0

        def weights(g):
            if factor != 1.0:
                g = np.asarray(g, np.float32) * np.float32(factor)
            return init_weight_update(wu_model, {}, {"g": g}, pre_var_refs=pre_refs,
                                      post_var_refs=post_refs)

        if matrix == "TOEPLITZ":
            sg = model.add_synapse_population(
                conn.name, "TOEPLITZ", src, trg, weights(kernel_values(c, shape)), psm,
                toeplitz_connectivity(kernel_geometry(c, shape), opts.backend))
        elif matrix == "PROCEDURAL_KERNELG":
            sg = model.add_synapse_population(
                conn.name, "PROCEDURAL_KERNELG", src, trg, weights(kernel_values(c, shape)), psm,
                procedural_connectivity(kernel_geometry(c, shape)))
        elif matrix == "DENSE":
            sg = model.add_synapse_population(
                conn.name, "DENSE", src, trg, weights(c.dense_weight(shape).reshape(-1)), psm)
        else:
            pre, post, w = self.synapse_cache.synapses(conn)
            sg = model.add_synapse_population(conn.name, "SPARSE", src, trg, weights(w), psm)
            sg.set_sparse_connections(pre, post)
        if delay:
            sg.axonal_delay_steps = delay
        return sg

    def _postsynaptic(self, conn: Connection, delay: int):
        """Rate mode's postsynaptic model: example-gated delta or exponential, or the held
        input current of an analog input."""
        opts, synapse = self.options, conn.synapse
        gate = {"FirstStep": 1 + delay, "ExampleSteps": opts.example_timesteps}
        analog = self.codes[conn.source.name].analog
        if synapse.kind == "exponential":
            if analog:
                raise ValueError(f"connection {conn.name!r}: an analog input drives its "
                                 f"targets with a constant current; use a delta synapse")
            return init_postsynaptic(EXAMPLE_GATED_EXP, {
                **gate, "ExpDecay": synapse.decay(opts.dt),
                "IScale": synapse.current_scale(opts.dt)})
        if analog:
            return init_postsynaptic(HELD_DELTA, gate, {"Held": 0.0})
        return init_postsynaptic(EXAMPLE_GATED_DELTA, gate)

    def _add_reset(self, model: GeNNModel) -> None:
        """Custom updates for rate mode: group "ResetReadout" zeroes readout accumulators,
        group "ResetState" restores the other neuron variables to their initial values."""
        self.reset_groups: set[str] = set()
        if self.options.mode != "rate":
            return
        for name, code in self.codes.items():
            readout_vars = set(code.readout_var.values()) - {"V"}
            for group, values in (("ResetReadout", {v: x for v, x in code.reset.items()
                                                    if v in readout_vars}),
                                  ("ResetState", {v: x for v, x in code.reset.items()
                                                  if v not in readout_vars})):
                if not values:
                    continue
                types = {v: ("unsigned int" if isinstance(x, int) else "scalar")
                         for v, x in values.items()}
                refs = {v: create_var_ref(self.groups[name], v) for v in values}
                model.add_custom_update(f"{group}_{name}", group,
                                        reset_update_model(f"{group}_{name}", values, types),
                                        {}, {}, refs)
                self.reset_groups.add(group)

    # build and load ------------------------------------------------------------------
    def build_and_load(self, build_dir: str | Path, comm: Optional[Communicator] = None,
                       num_recording_timesteps: Optional[int] = None) -> BuildInfo:
        """Generate and compile code once, then load on every rank.

        Only the holder of the model's build lock writes (see :mod:`.build_dir`): safe for
        concurrent jobs sharing a build directory, and a complete build loads read-only.
        """
        comm = comm or SerialCommunicator()
        build_dir = Path(build_dir).expanduser()
        start, cpu = time.perf_counter(), time.process_time()
        reused = self.build(build_dir, comm)
        build_s, build_cpu_s = time.perf_counter() - start, time.process_time() - cpu
        code_dir = str((build_dir / f"{self.model_name}_CODE").resolve())
        if code_dir in _LOADED:
            raise RuntimeError(f"the same compiled network is already loaded in this process "
                               f"({code_dir}); leave its `with` block first (GeNN would share "
                               f"one runtime between the two)")
        start, cpu = time.perf_counter(), time.process_time()
        recording = num_recording_timesteps or self.options.example_timesteps
        self._model.load(num_recording_timesteps=recording)
        self._release_host_copies()
        self._loaded = True
        self._code_dir = code_dir
        _LOADED.add(code_dir)
        self._input_views = {p.name: self.groups[p.name].vars[self.codes[p.name].input_var]
                             for p in self.network.inputs}
        return BuildInfo(self.model_name, str(build_dir), build_s, time.perf_counter() - start,
                         reused, build_cpu_s, time.process_time() - cpu)

    def build(self, build_dir: str | Path, comm: Optional[Communicator] = None) -> bool:
        """Generate and compile the model's code into ``build_dir`` (once per node; see
        :mod:`.build_dir`) without loading it; returns whether an existing build was reused."""
        from distsnn.genn.build_dir import build_shared
        from distsnn.genn.cuda import nvcc_environment
        with nvcc_environment() if self.options.backend == "cuda" else nullcontext():
            return build_shared(self._model, Path(build_dir).expanduser(), self.model_name,
                                comm or SerialCommunicator())

    def _release_host_copies(self) -> None:
        """Drop pygenn's Python-side copies of explicit synapses once GeNN holds them (sort
        order, indices, initial weights: 16 bytes per synapse that are only read by load)."""
        for sg in self.synapse_groups.values():
            if sg.connections_set:
                sg.synapse_order = sg.ind = None
                sg.vars["g"].init_values = None

    def unload(self) -> None:
        if self._loaded:
            self._model.unload()
            self._loaded = False
            _LOADED.discard(self._code_dir)

    # running -------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.options.batch_size

    @property
    def genn_model(self) -> GeNNModel:
        return self._model

    def reset_example_state(self, reset_vars: bool = True, reset_time: bool = True) -> None:
        """Prepare for a new batch of examples (rate mode): readouts always restart."""
        for group in ("ResetReadout", "ResetState") if reset_vars else ("ResetReadout",):
            if group in self.reset_groups:
                self._model.custom_update(group)
        if reset_time:
            self._model.timestep = 0

    def custom_update(self, name: str, reset_vars: bool = True) -> None:
        """Run a custom update group; mlGeNN's "Reset" runs the groups that a new batch
        runs (with ``reset_vars`` "ResetReadout" and "ResetState", else "ResetReadout")."""
        if name == RESET:
            self.reset_example_state(reset_vars, reset_time=False)
            return
        self._model.custom_update(self._known_group(name))

    def custom_update_time(self, name: str) -> float:
        """Seconds spent in a custom update group (needs kernel profiling); "Reset" is the
        sum of distsnn's reset groups (0.0 where the network has none, e.g. few-spike)."""
        if name == RESET:
            return sum(float(self._model.get_custom_update_time(g)) for g in self.reset_groups)
        return float(self._model.get_custom_update_time(self._known_group(name)))

    def _known_group(self, name: str) -> str:
        if name not in self.reset_groups:
            known = sorted(self.reset_groups | {RESET})
            raise ValueError(f"this network has no custom update group {name!r}; its groups "
                             f"are {known}")
        return name

    def set_timestep(self, timestep: int) -> None:
        self._model.timestep = timestep

    def set_examples(self, indices: np.ndarray) -> None:
        """Tell random inputs which (global) examples the batch lanes hold."""
        for pop in self.network.inputs:
            if "Stream" in self.groups[pop.name].vars:
                var = self.groups[pop.name].vars["Stream"]
                view = var.view.reshape(self.batch_size, pop.size)
                view[:len(indices)] = example_streams(self.options.seed, indices)[:, None]
                var.push_to_device()

    def set_input(self, pop: Population, x: np.ndarray) -> None:
        """Write a batch of inputs ``x[b, ...]`` (b <= batch size; the rest is zero), or for a
        SpikeInput a list of b PreprocessedSpikes (the rest spike nowhere)."""
        if isinstance(pop.neuron, RasterInput):
            from distsnn.genn.nir_models import write_raster
            write_raster(self.groups[pop.name], self.codes[pop.name], self.batch_size, x)
            return
        if self.codes[pop.name].max_spikes:
            self._set_spike_trains(pop, x)
            return
        if not isinstance(x, np.ndarray):
            raise TypeError(f"input population {pop.name!r} ({type(pop.neuron).__name__}) takes "
                            f"arrays, not {type(x).__name__}; PreprocessedSpikes need a "
                            f"SpikeInput population")
        var = self._input_views[pop.name]
        view = var.view.reshape(self.batch_size, pop.size)
        b = x.shape[0]
        view[:b] = x.reshape(b, pop.size)
        view[b:] = 0.0
        var.push_to_device()

    def _set_spike_trains(self, pop: Population, examples) -> None:
        """Lay a batch of PreprocessedSpikes out as one ``SpikeTimes`` array and per-lane
        ``[StartSpike, EndSpike)`` ranges of each neuron."""
        batch = batch_spikes(examples, self.batch_size, pop.size, pop.name)
        limit = self.codes[pop.name].max_spikes
        if len(batch.spike_times) > limit:
            raise UserError(f"input population {pop.name!r}: {len(batch.spike_times)} spikes in "
                            f"a batch of {len(examples)} example(s), but SpikeInput(max_spikes="
                            f"{limit}) takes at most {limit} per batch; raise max_spikes (e.g. "
                            f"calc_max_spikes(data) * batch_size)")
        group = self.groups[pop.name]
        times = group.extra_global_params["SpikeTimes"]
        times.view[:len(batch.spike_times)] = batch.spike_times
        times.push_to_device()
        for var, value in (("EndSpike", batch.end_spikes),
                           ("StartSpike", calc_start_spikes(batch.end_spikes))):
            group.vars[var].view.reshape(self.batch_size, pop.size)[...] = value
            group.vars[var].push_to_device()

    def step(self, n: int = 1) -> None:
        runtime = self._model._runtime  # one bound call per step: the hot loop
        for _ in range(n):
            runtime.step_time()

    def readout(self, pop: Population, kind: str) -> np.ndarray:
        """The readout variable of an output population, shape (batch, size)."""
        code = self.codes[pop.name]
        if kind not in code.readout_var:
            raise ValueError(f"population {pop.name!r} has no {kind!r} readout "
                             f"(available: {sorted(code.readout_var)})")
        return self.pull(pop, code.readout_var[kind]).astype(np.float64)

    def pull(self, pop: Population, var: str) -> np.ndarray:
        """A neuron variable copied to the host, shape (batch, size) or (1, size)."""
        v = self.groups[pop.name].vars[var]
        v.pull_from_device()
        return np.array(v.view).reshape(-1, pop.size)

    def push(self, pop: Population, var: str, value) -> None:
        v = self.groups[pop.name].vars[var]
        v.view[...] = value
        v.push_to_device()

    def scale_weights(self, conn: Connection, factor: float) -> None:
        """Multiply a connection's weights on the device (spike-norm rescaling)."""
        if conn.name not in self.synapse_groups:  # all-zero: nothing to scale
            return
        g = self.synapse_groups[conn.name].vars["g"]
        g.pull_from_device()
        g.view[...] *= np.float32(factor)
        g.push_to_device()

    def set_threshold(self, pop: Population, value: float) -> None:
        """Set a dynamic (spike-norm) threshold."""
        self.groups[pop.name].set_dynamic_param_value("Vthresh", float(value))

    def recorded_spikes(self, pop: Population) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per batch lane (times, ids) recorded since the last pull."""
        self._model.pull_recording_buffers_from_device()
        data = self.groups[pop.name].spike_recording_data
        return [(np.asarray(t), np.asarray(i)) for t, i in data]

    def kernel_times(self) -> dict[str, float]:
        """GeNN's kernel timings in seconds (needs kernel_profiling)."""
        m = self._model
        names = ("neuron_update_time", "presynaptic_update_time", "init_time",
                 "init_sparse_time")
        times = {n: float(getattr(m, n)) for n in names if hasattr(m, n)}
        for group in sorted(self.reset_groups):
            times[f"{group}_time"] = float(m.get_custom_update_time(group))
        return times


def _weight_update(source: NeuronCode) -> tuple:
    """Weight update model and presynaptic variable references of a source's connections."""
    if source.analog:
        return ANALOG_PULSE, {"Input": "Input"}
    if source.signed:
        return SIGNED_PULSE, {"Sgn": "Sgn"}
    return "StaticPulse", {}


def pipeline_depths(network: Network) -> dict[str, int]:
    """Few-spike pipeline depth: inputs 0, others 1 + max depth of their sources."""
    depth: dict[str, int] = {}
    for pop in network.topological_order():
        sources = [c.source.name for c in network.incoming(pop)]
        depth[pop.name] = 1 + max(depth[s] for s in sources) if sources else 0
    return depth


def few_spike_source(network: Network, pop: Population) -> tuple[float, bool]:
    """The alpha a FewSpikeRelu population decodes its sources' codes with (the largest of
    theirs: :func:`few_spike_weight_factor` rescales the others) and their shared signedness."""
    sources = [c.source.neuron for c in network.incoming(pop)]
    if not sources:
        return pop.neuron.alpha, False
    for s in sources:
        if not isinstance(s, (FewSpikeRelu, FewSpikeReluInput)) or s.k != pop.neuron.k:
            raise ValueError(f"population {pop.name!r}: every source of a FewSpikeRelu must be a "
                             f"few-spike population with K={pop.neuron.k}")
    signs = {bool(getattr(s, "signed_input", False)) for s in sources}
    if len(signs) > 1:
        raise ValueError(f"population {pop.name!r}: its sources must all be signed or all "
                         f"unsigned few-spike codes (a signed input's bits weigh differently)")
    return max(float(s.alpha) for s in sources), signs.pop()


def few_spike_weight_factor(network: Network, conn: Connection) -> float:
    """``alpha(source) / alpha(decoding)``: the target decodes every source's code with its
    largest source alpha, so the weights of a source with a smaller one are scaled down."""
    if not isinstance(conn.target.neuron, FewSpikeRelu):
        return 1.0
    reference, _ = few_spike_source(network, conn.target)
    return float(conn.source.neuron.alpha) / reference


def default_build_dir() -> Path:
    """``$DISTSNN_BUILD_DIR`` or ``~/.cache/distsnn/genn-build``."""
    env = os.environ.get("DISTSNN_BUILD_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "distsnn" / "genn-build"
