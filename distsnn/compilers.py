"""mlGeNN-style inference API, distributed by passing a communicator.

Port an mlGeNN inference script by changing its imports; pass ``communicator=MPI()`` and
run it under ``mpiexec -n N``: each rank then evaluates its contiguous shard of ``x``/``y``
and every rank gets the global metrics, predictions and recordings.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from .callbacks import BatchInfo, BatchProgressBar, CallbackList
from .communicator import Communicator, SerialCommunicator
from .data import shard_bounds
from .metrics import MetricSpec, SparseCategoricalAccuracy, make_metric
from .network import Network, Population
from .neurons import FewSpikeRelu, IntegrateFire
from .simulation import run_few_spike, run_rate
from .statistics import SpikeStats, spike_report

log = logging.getLogger("distsnn")

PopulationLike = Union[Population, Any]


def draw_seed() -> int:
    """A random non-zero seed (what ``rng_seed=0`` means), to be logged and recorded."""
    return int.from_bytes(os.urandom(4), "little") or 1


class InferenceCompiler:
    """Compiler for rate-coded inference (mlGeNN's ``InferenceCompiler``).

    Args:
        evaluate_timesteps: timesteps each example is presented for (``example_timesteps``
            is accepted as the same parameter).
        dt: simulation timestep [ms].
        batch_size: global batch size; each of the communicator's ranks runs
            ``batch_size // num_ranks`` (at least 1; the CPU backend runs 1).
        rng_seed: base seed of the Poisson inputs; 0 draws one, which is logged and
            recorded. Each example's random numbers are a hash of (seed, example index,
            neuron, step), so results do not depend on the number of ranks.
        kernel_profiling: record GeNN kernel timings (``compiled.kernel_times()``).
        prefer_in_memory_connect: SPARSE matrices for convolutions instead of TOEPLITZ.
        reset_time_between_batches: start each batch at t=0.
        reset_vars_between_batches: reset neuron state per batch (readouts always are).
        reset_in_syn_between_batches: accepted for compatibility; distsnn's delta synapses
            keep no input between steps, and spikes in flight are always dropped.
        communicator: None for one process, or ``distsnn.communicators.MPI()``.
        backend: "auto" (CUDA when available and a GPU is visible), "cpu" or "cuda".
        build_dir: where GeNN code is generated (default ``~/.cache/distsnn/genn-build``).
        checkpoints: extra timesteps at which to read out (accuracy-vs-latency curves).
    accuracy_checkpoints: timesteps at which only the accuracy is read out (a cheap,
        dense accuracy-vs-time curve; ``evaluate`` only).
        metrics: default metrics of ``evaluate`` calls that give none (as in the mlGeNN
            documentation's example).
        **genn_kwargs: passed to ``pygenn.GeNNModel``.
    """

    mode = "rate"

    def __init__(self, evaluate_timesteps: Optional[int] = None, dt: float = 1.0,
                 batch_size: int = 1, rng_seed: int = 0, kernel_profiling: bool = False,
                 prefer_in_memory_connect: bool = True, reset_time_between_batches: bool = True,
                 reset_vars_between_batches: bool = True,
                 reset_in_syn_between_batches: bool = False,
                 communicator: Optional[Communicator] = None, *,
                 example_timesteps: Optional[int] = None, backend: str = "auto",
                 build_dir: Optional[str] = None, checkpoints: Sequence[int] = (),
                 accuracy_checkpoints: Sequence[int] = (),
                 metrics: Union[MetricSpec, dict, None] = None, **genn_kwargs):
        timesteps = evaluate_timesteps if evaluate_timesteps is not None else example_timesteps
        if timesteps is None or int(timesteps) < 1:
            raise ValueError("evaluate_timesteps (or example_timesteps) must be a positive "
                             "number of timesteps")
        self.timesteps = int(timesteps)
        self.dt = dt
        self.communicator = communicator or SerialCommunicator()
        self.batch_size = batch_size
        self.rank_batch_size = _rank_batch_size(batch_size, self.communicator.size)
        self.rng_seed = rng_seed
        self.kernel_profiling = kernel_profiling
        self.prefer_in_memory_connect = prefer_in_memory_connect
        self.reset_time = reset_time_between_batches
        self.reset_vars = reset_vars_between_batches
        self.backend = backend
        self.build_dir = build_dir
        self.checkpoints = tuple(int(c) for c in checkpoints)
        self.accuracy_checkpoints = tuple(int(c) for c in accuracy_checkpoints)
        self.metrics = metrics
        self.genn_kwargs = genn_kwargs

    def compile(self, network: Network, name: Optional[str] = None,
                inputs: Optional[Sequence[PopulationLike]] = None,
                outputs: Optional[Sequence[PopulationLike]] = None) -> "CompiledInferenceNetwork":
        """Prepare ``network`` for inference; GeNN builds and loads it on ``with compiled:``."""
        inputs = _populations(network, inputs, network.inputs, "inputs")
        outputs = _populations(network, outputs, network.outputs, "outputs")
        if not outputs:
            raise ValueError("the network has no outputs: pass outputs=[population, ...]")
        return self._compiled_type()(self, network, inputs, outputs, name)

    def _compiled_type(self) -> type:
        return CompiledInferenceNetwork

    def _seed(self) -> int:
        base = self.rng_seed
        if base == 0:
            base = self.communicator.broadcast_object(draw_seed() if self.communicator.rank == 0
                                                      else None)
            log.warning("rng_seed=0: drew base seed %d (pass rng_seed=%d to repeat this run)",
                        base, base)
        return base


class FewSpikeCompiler(InferenceCompiler):
    """Compiler for few-spike networks (Stöckl & Maass 2021): pipelined K-step windows."""

    mode = "few_spike"

    def __init__(self, k: int = 10, dt: float = 1.0, batch_size: int = 1, rng_seed: int = 0,
                 kernel_profiling: bool = False, prefer_in_memory_connect: bool = True,
                 communicator: Optional[Communicator] = None, *, backend: str = "auto",
                 build_dir: Optional[str] = None, **genn_kwargs):
        super().__init__(k, dt, batch_size, rng_seed, kernel_profiling,
                         prefer_in_memory_connect, communicator=communicator, backend=backend,
                         build_dir=build_dir, **genn_kwargs)
        self.k = int(k)

    def _compiled_type(self) -> type:
        return CompiledFewSpikeNetwork


@dataclass
class EvaluationReport:
    """Everything one evaluate/predict call measured (global on every rank)."""

    #: checkpoint -> output name -> metric name -> {"result": ..., counts}
    metrics: dict[int, dict[str, dict]] = field(default_factory=dict)
    spikes: dict = field(default_factory=dict)
    examples: int = 0
    seconds: float = 0.0
    reduce_seconds: float = 0.0


class MetricsResult(dict):
    """Metrics keyed by output population; with one output also by metric name
    (``metrics["mean_square_error"]``, as the mlGeNN documentation's example reads them)."""

    def __missing__(self, key):
        if isinstance(key, str) and len(self) == 1:
            only = next(iter(self.values()))
            found = only if isinstance(only, dict) else {only.name: only}
            if key in found:
                return found[key]
            for pop in self:
                if pop.name == key:
                    return self[pop]
        raise KeyError(key)


class CompiledInferenceNetwork:
    """A compiled network: ``with compiled:`` builds (once per node) and loads it."""

    def __init__(self, compiler: InferenceCompiler, network: Network,
                 inputs: list[Population], outputs: list[Population], name: Optional[str]):
        self.compiler = compiler
        self.network = network
        self.inputs = inputs
        self.outputs = outputs
        self.name = name
        self.communicator = compiler.communicator
        self.readouts = {o: _readout_kind(o) for o in outputs}
        self._genn = None
        self.build_info = None
        self.base_seed: Optional[int] = None
        self.backend: Optional[str] = None
        self.last_report: Optional[EvaluationReport] = None

    # context manager ---------------------------------------------------------------
    def __enter__(self) -> "CompiledInferenceNetwork":
        from .compile import CompileOptions, GeNNNetwork, default_build_dir, resolve_backend
        from .devices import select_gpu, visible_gpus
        c, comm = self.compiler, self.communicator
        gpus = visible_gpus()
        self.backend = resolve_backend(c.backend, bool(gpus))
        if self.backend == "cuda":
            select_gpu(comm.local_rank, comm.local_size)  # before any CUDA context exists
        self.base_seed = c._seed()
        options = CompileOptions(
            mode=c.mode, example_timesteps=c.timesteps, backend=self.backend,
            batch_size=c.rank_batch_size, seed=self.base_seed, dt=c.dt,
            prefer_in_memory_connect=c.prefer_in_memory_connect,
            kernel_profiling=c.kernel_profiling, genn_kwargs=c.genn_kwargs,
            readouts={o.name: kind for o, kind in self.readouts.items()},
            **self._extra_options())
        genn = GeNNNetwork(self.network, options)
        try:
            self.build_info = genn.build_and_load(c.build_dir or default_build_dir(), comm)
        except BaseException:
            genn.unload()
            raise
        self._genn = genn
        return self

    def _extra_options(self) -> dict:
        return {}

    def __exit__(self, *exc) -> None:
        if self._genn is not None:
            self._genn.unload()
            self._genn = None

    @property
    def genn_model(self):
        """The underlying ``pygenn.GeNNModel`` (for kernel timings and inspection)."""
        return self._require().genn_model

    def kernel_times(self) -> dict[str, float]:
        """GeNN's kernel timings in seconds (with ``kernel_profiling=True``)."""
        return self._require().kernel_times()

    def _require(self):
        if self._genn is None:
            raise RuntimeError("the compiled network is not loaded: use it inside "
                               "`with compiled_net:`")
        return self._genn

    # host access used by callbacks -------------------------------------------------
    def pull_var(self, pop: Population, var: str) -> np.ndarray:
        return self._require().pull(pop, var)

    def recorded_spikes(self, pop: Population):
        return self._require().recorded_spikes(pop)

    # public API ------------------------------------------------------------------
    def evaluate(self, x: dict, y: dict, metrics: Union[MetricSpec, dict, None] = None,
                 callbacks: Optional[Sequence] = None, *,
                 sharded: bool = False) -> tuple["MetricsResult", dict]:
        """Evaluate metrics on numpy datasets; returns ``(metrics, callback_data)``.

        ``x`` maps input populations to arrays ``(N, ...)``, ``y`` output populations to
        labels. ``metrics`` (default: the compiler's, else ``"sparse_categorical_accuracy"``)
        is a name, a metric object, a list of them, or a dict per output; the result maps each
        output to its metric (a dict of metrics when a list was given) and, with one output,
        also each metric's name to the metric. With a communicator the arrays are the full dataset and each rank takes its
        contiguous shard (``sharded=True``: they are already this rank's shard, the shards
        contiguous in rank order).
        """
        x = self._by_population(x, self.inputs, "x")
        y = self._by_population(y, self.outputs, "y")
        n = _common_length({**x, **y})
        start, stop, total, offset = self._shard(n, sharded)
        batches = self._slices({**x, **y}, start, stop, offset)
        return self._evaluate(batches, total, list(y), metrics, callbacks)

    def evaluate_batch_iter(self, inputs, outputs, data: Iterable, num_batches: Optional[int]
                            = None, metrics: Union[MetricSpec, dict, None] = None,
                            callbacks: Optional[Sequence] = None,
                            ) -> tuple["MetricsResult", dict]:
        """Evaluate metrics over an iterator of ``(batch_x, batch_y)`` (e.g. a tf.data set).

        Several inputs/outputs: ``batch_x``/``batch_y`` are sequences in the same order.
        With a communicator, rank r takes batches r, r + N, r + 2N, ... of the iterator.
        """
        inputs = _populations(self.network, _as_list(inputs), self.inputs, "inputs")
        outputs = _populations(self.network, _as_list(outputs), self.outputs, "outputs")
        comm = self.communicator

        def batches():
            offset = 0
            for i, (bx, by) in enumerate(data):
                bx = _split(bx, inputs)
                by = _split(by, outputs)
                size = _common_length({**bx, **by})
                if i % comm.size == comm.rank:
                    yield from self._slices({**bx, **by}, 0, size, index_offset=offset)
                offset += size
        total = None if num_batches is None else num_batches * self.compiler.batch_size
        return self._evaluate(batches(), total, outputs, metrics, callbacks)

    def predict(self, x: dict, outputs: Optional[Sequence] = None,
                callbacks: Optional[Sequence] = None, *, sharded: bool = False
                ) -> tuple[dict, dict]:
        """Readouts of ``outputs`` for every example, in dataset order on every rank."""
        outputs = _populations(self.network, _as_list(outputs), self.outputs, "outputs")
        x = self._by_population(x, self.inputs, "x")
        n = _common_length(x)
        start, stop, total, offset = self._shard(n, sharded)
        collected: dict[Population, list] = {o: [] for o in outputs}

        def sink(indices, checkpoint, pop, value, _labels):
            if checkpoint == self.compiler.timesteps and pop in collected:
                collected[pop].append((indices, value))
        cb_data = self._run(self._slices(x, start, stop, offset), total, outputs, sink, callbacks)
        comm = self.communicator
        predictions = {}
        for pop, parts in collected.items():
            indices = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
            values = (np.concatenate([p[1] for p in parts]) if parts
                      else np.zeros((0, pop.size)))
            all_idx = comm.gather_arrays(indices.astype(np.int64))
            all_val = comm.gather_arrays(values.astype(np.float64))
            if comm.rank == 0:
                all_val = all_val[np.argsort(all_idx, kind="stable")]
            predictions[pop] = comm.broadcast_array(all_val).reshape((-1,) + pop.shape)
        return predictions, cb_data

    # internals ---------------------------------------------------------------------
    def _evaluate(self, batches, total, outputs, metrics, callbacks):
        if metrics is None:
            metrics = self.compiler.metrics or "sparse_categorical_accuracy"
        specs = _metric_specs(metrics, outputs)
        checkpoints = sorted(set(self._checkpoints()) | {self.compiler.timesteps})
        per_checkpoint = {c: {o: [make_metric(s) for s in specs[o]] for o in outputs}
                          for c in checkpoints}
        for c in self._accuracy_checkpoints():
            per_checkpoint.setdefault(c, {o: [SparseCategoricalAccuracy()] for o in outputs})

        def sink(indices, checkpoint, pop, value, labels):
            if labels is not None and pop in labels and checkpoint in per_checkpoint:
                for metric in per_checkpoint[checkpoint][pop]:
                    metric.update(labels[pop], value)
        final = MetricsResult({o: ms[0] if len(ms) == 1 else {m.name: m for m in ms}
                               for o, ms in per_checkpoint[self.compiler.timesteps].items()})
        cb_data = self._run(batches, total, outputs, sink, callbacks, final, per_checkpoint,
                            self._accuracy_checkpoints())
        return final, cb_data

    def _checkpoints(self) -> Sequence[int]:
        return self.compiler.checkpoints

    def _accuracy_checkpoints(self) -> Sequence[int]:
        return self.compiler.accuracy_checkpoints

    def _run(self, batches, total, outputs, sink, callbacks, metrics=None,
             per_checkpoint=None, extra_checkpoints: Sequence[int] = ()) -> dict:
        genn = self._require()
        comm = self.communicator
        info = BatchInfo(total_examples=total or 0, ranks=comm.size)
        cb = CallbackList([BatchProgressBar()] if callbacks is None else callbacks,
                          compiled_network=self, batch_info=info, num_batches=None,
                          communicator=comm)
        cb.metrics = metrics or {}
        pending: dict[int, tuple] = {}

        def feed() -> Iterator[dict]:
            for index, (indices, arrays) in enumerate(batches):
                pending[index] = (indices, {o: arrays[o] for o in outputs if o in arrays})
                info.example_indices = indices
                genn.set_examples(indices)
                yield {p: arrays[p] for p in self.inputs}

        def on_result(batch, checkpoint, pop, value):
            indices, labels = pending[batch]
            sink(indices, checkpoint, pop, value, labels)

        start = time.perf_counter()
        cb.on_test_begin()
        stats = self._schedule(genn, feed(), outputs, on_result, cb, extra_checkpoints)
        seconds = time.perf_counter() - start
        reduce_start = time.perf_counter()
        report = EvaluationReport(seconds=seconds)
        for checkpoint, by_output in (per_checkpoint or {}).items():
            for metrics_of_output in by_output.values():
                for metric in metrics_of_output:
                    metric.reduce(comm)
            report.metrics[checkpoint] = {o.name: {m.name: m.as_dict() for m in ms}
                                          for o, ms in by_output.items()}
        report.spikes = _reduce_spikes(stats, self.network, comm)
        report.examples = report.spikes["examples"]
        report.reduce_seconds = time.perf_counter() - reduce_start
        self.last_report = report
        cb.on_test_end(metrics or {})
        return cb.get_data()

    def _schedule(self, genn, batches, outputs, on_result, cb, extra_checkpoints) -> SpikeStats:
        c = self.compiler
        readouts = {o: self.readouts[o] for o in outputs}
        checkpoints = [*self._checkpoints(), *extra_checkpoints]
        return run_rate(genn, batches, readouts, c.timesteps, checkpoints,
                        on_result, cb, reset_vars=c.reset_vars, reset_time=c.reset_time)

    def _shard(self, n: int, sharded: bool) -> tuple[int, int, int, int]:
        """``(start, stop, total, offset)``: this rank's rows, the global example count and
        the global index of row 0 (so Poisson streams follow the global example index)."""
        comm = self.communicator
        if sharded:
            counts = np.zeros(comm.size, np.int64)
            counts[comm.rank] = n
            counts = comm.allreduce_sum(counts)
            return 0, n, int(counts.sum()), int(counts[:comm.rank].sum())
        if comm.size == 1:
            return 0, n, n, 0
        start, stop = shard_bounds(n, comm.rank, comm.size)
        return start, stop, n, 0

    def _slices(self, arrays: dict, start: int, stop: int, index_offset: int = 0
                ) -> Iterator[tuple[np.ndarray, dict]]:
        """Batches of rows [start, stop), tagged with global example indices (row + offset)."""
        b = self._require().batch_size
        for s in range(start, stop, b):
            e = min(s + b, stop)
            yield (np.arange(s, e, dtype=np.int64) + index_offset,
                   {p: np.asarray(v[s:e]) for p, v in arrays.items()})

    def _by_population(self, data: dict, expected: list[Population], what: str) -> dict:
        if not isinstance(data, dict):
            if len(expected) == 1:
                return {expected[0]: data}
            raise TypeError(f"{what} must be a dict mapping populations to arrays")
        out = {}
        for key, value in data.items():
            pop = _population(self.network, key)
            out[pop] = value
        return out


class CompiledFewSpikeNetwork(CompiledInferenceNetwork):
    """A compiled few-spike network; evaluation runs the pipelined window schedule."""

    def _checkpoints(self) -> Sequence[int]:
        return ()

    def _accuracy_checkpoints(self) -> Sequence[int]:
        return ()

    def _schedule(self, genn, batches, outputs, on_result, cb, extra_checkpoints) -> SpikeStats:
        from .compile import pipeline_depths
        return run_few_spike(genn, batches, outputs, self.compiler.k,
                             pipeline_depths(self.network), on_result, cb)


def _rank_batch_size(batch_size: int, ranks: int) -> int:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if batch_size <= ranks:
        return 1
    if batch_size % ranks:
        raise ValueError(f"the global batch_size {batch_size} must be divisible by the number "
                         f"of ranks ({ranks}); each rank runs batch_size // ranks examples")
    return batch_size // ranks


def _readout_kind(pop: Population) -> str:
    neuron = pop.neuron
    if isinstance(neuron, FewSpikeRelu):
        return "var"
    if isinstance(neuron, IntegrateFire):
        return neuron.readout or "spike_count"
    raise ValueError(f"population {pop.name!r} ({type(neuron).__name__}) cannot be an output")


def _population(network: Network, key) -> Population:
    if isinstance(key, Population):
        if not any(p is key for p in network.populations):
            raise ValueError(f"population {key.name!r} is not part of this network")
        return key
    if isinstance(key, str):
        return network.population(key)
    raise TypeError(f"expected a Population or its name, not {type(key).__name__}")


def _populations(network, given, default, what) -> list[Population]:
    if given is None:
        return list(default)
    return [_population(network, p) for p in _as_list(given)]


def _as_list(value) -> Optional[list]:
    if value is None:
        return None
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _split(batch, pops: list[Population]) -> dict:
    if len(pops) == 1:
        return {pops[0]: np.asarray(batch)}
    if len(batch) != len(pops):
        raise ValueError(f"a batch has {len(batch)} parts but there are {len(pops)} "
                         f"populations {[p.name for p in pops]}")
    return {p: np.asarray(b) for p, b in zip(pops, batch)}


def _common_length(arrays: dict) -> int:
    lengths = {getattr(p, "name", p): len(v) for p, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs and labels must have the same number of examples: {lengths}")
    return next(iter(lengths.values()), 0)


def _metric_specs(metrics, outputs: list[Population]) -> dict[Population, list]:
    """Metric specs per output: one spec, a list of specs, or a dict per output."""
    if isinstance(metrics, dict):
        by_name = {getattr(k, "name", k): v for k, v in metrics.items()}
        if set(by_name) != {o.name for o in outputs}:
            raise ValueError(f"metrics must have one entry per output {[o.name for o in outputs]}"
                             f", not {sorted(map(str, by_name))}")
        return {o: _as_list(by_name[o.name]) for o in outputs}
    return {o: _as_list(metrics) for o in outputs}


def _reduce_spikes(stats: SpikeStats, network: Network, comm: Communicator) -> dict:
    """Global spike statistics: this rank's totals summed over ranks."""
    totals = stats.totals()
    names = list(totals)
    local = np.array([stats.examples, stats.synaptic_operations(network)]
                     + [totals[n] for n in names], np.int64)
    reduced = comm.allreduce_sum(local)
    return spike_report(network, int(reduced[0]), stats.timesteps,
                        dict(zip(names, (int(v) for v in reduced[2:]))), int(reduced[1]))
