"""mlGeNN-style inference API, distributed by passing a communicator.

Port an mlGeNN inference script by changing its imports; pass ``communicator=MPI()`` and
run it under ``mpiexec -n N``: each rank then evaluates its contiguous shard of ``x``/``y``
and every rank gets the global metrics, predictions and recordings.
"""
from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from .callbacks import DEFAULT_CALLBACKS, BatchInfo, CallbackList
from .chunks import ChunkResult, EvaluationStopped, add_counts
from .communicator import Communicator, SerialCommunicator
from .data import shard_bounds
from .errors import SharedUserError
from .metrics import MetricSpec, SparseCategoricalAccuracy, make_metric
from .model_handle import GeNNModelHandle
from .network import Network, Population
from .neurons import FewSpikeRelu, IntegrateFire, Integrator, LeakyIntegrate, LeakyIntegrateFire
from .readouts import read_value
from .simulation import run_few_spike, run_rate
from .statistics import SpikeStats, spike_report
from .utils.data import as_examples, take_rows

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
        prefer_in_memory_connect: lower convolutions to in-memory Toeplitz connectivity
            (only the kernel is stored; the fastest on the CPU backend too) rather than
            converting them into explicit synapse matrices (SPARSE).
        reset_time_between_batches: start each batch at t=0.
        reset_vars_between_batches: reset neuron state per batch (readouts always are).
        reset_in_syn_between_batches: accepted for compatibility; synaptic input always
            restarts at 0 with every example, and spikes in flight are dropped.
        communicator: None for one process, or ``distsnn.communicators.MPI()``.
        backend: "auto" (CUDA when available and a GPU is visible), "cpu" or "cuda".
        build_dir: where GeNN code is generated (default ``~/.cache/distsnn/genn-build``).
        checkpoints: extra timesteps at which to read out (accuracy-vs-latency curves).
        accuracy_checkpoints: timesteps at which only the accuracy is read out (a cheap,
            dense accuracy-vs-time curve; ``evaluate`` only).
        metrics: default metrics of ``evaluate`` calls that give none (as in the mlGeNN
            documentation's example).
        connectivity: "auto" (default; see ``distsnn.lowering``), "toeplitz", "sparse" or
            "procedural" (CUDA);
            overrides ``prefer_in_memory_connect``.
        memory_budget: per-rank memory budget ("4GiB", bytes); default 90% of the node's
            memory divided by the ranks on the node. A network estimated over it is refused
            before anything large is allocated.
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
                 metrics: Union[MetricSpec, dict, None] = None,
                 connectivity: Optional[str] = None,
                 memory_budget: Union[str, int, None] = None, **genn_kwargs):
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
        self.connectivity = connectivity or ("auto" if prefer_in_memory_connect else "sparse")
        self.memory_budget = memory_budget
        self.reset_time = reset_time_between_batches
        self.reset_vars = reset_vars_between_batches
        self.backend = backend
        self.build_dir = build_dir
        self.checkpoints = tuple(int(c) for c in checkpoints)
        self.accuracy_checkpoints = tuple(int(c) for c in accuracy_checkpoints)
        self.metrics = metrics
        self.genn_kwargs = genn_kwargs

    @property
    def evaluate_timesteps(self) -> int:
        """mlGeNN's name of :attr:`timesteps` (K for the few-spike compiler)."""
        return self.timesteps

    @property
    def example_timesteps(self) -> int:
        """The other accepted name of :attr:`timesteps`."""
        return self.timesteps

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
                 build_dir: Optional[str] = None, connectivity: Optional[str] = None,
                 memory_budget: Union[str, int, None] = None, **genn_kwargs):
        super().__init__(k, dt, batch_size, rng_seed, kernel_profiling,
                         prefer_in_memory_connect, communicator=communicator, backend=backend,
                         build_dir=build_dir, connectivity=connectivity,
                         memory_budget=memory_budget, **genn_kwargs)
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
    """A compiled network: ``with compiled:`` builds (once per node) and loads it.

    Besides evaluate/predict it has mlGeNN's attributes: ``genn_model`` (usable before
    ``with``, see :mod:`distsnn.model_handle`), ``neuron_populations``,
    ``connection_populations``, ``evaluate_timesteps``, ``num_recording_timesteps`` and the
    step-by-step methods ``set_input``, ``step_time``, ``get_readout``, ``reset_time`` and
    ``custom_update``. On entering, every rank checks that all ranks hold the same network.
    """

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
        self._model_handle = GeNNModelHandle(self)
        self._examples_fed = 0  # examples numbered by set_input (Poisson streams)
        self._batches_evaluated = 0  # examples numbered by evaluate_batch

    # context manager ---------------------------------------------------------------
    def __enter__(self) -> "CompiledInferenceNetwork":
        from .genn import (CompileOptions, GeNNNetwork, SynapseCache, default_build_dir,
                              resolve_backend)
        from .devices import select_gpu, visible_gpus
        from .lowering import memory_budget
        c, comm = self.compiler, self.communicator
        check_same_network(self.network, comm)
        settings = self._model_handle.settings
        profiling = bool(settings.pop("timing_enabled", c.kernel_profiling))
        gpus = visible_gpus()
        self.backend = resolve_backend(c.backend, bool(gpus))
        if self.backend == "cuda":
            select_gpu(comm.local_rank, comm.local_size)  # before any CUDA context exists
        self.base_seed = c._seed()
        budget, budget_source = memory_budget(c.memory_budget, comm.local_size)
        build_dir = Path(c.build_dir or default_build_dir()).expanduser()
        options = CompileOptions(
            mode=c.mode, example_timesteps=c.timesteps, backend=self.backend,
            batch_size=self._genn_batch_size(), seed=self.base_seed, dt=c.dt,
            connectivity=c.connectivity, memory_budget=budget,
            memory_budget_source=budget_source, kernel_profiling=profiling,
            genn_kwargs=c.genn_kwargs, model_settings=settings,
            readouts={o.name: kind for o, kind in self.readouts.items()},
            **self._extra_options())
        genn = GeNNNetwork(self.network, options, SynapseCache(build_dir / "synapses"))
        try:
            self.build_info = genn.build_and_load(build_dir, comm)
        except BaseException:
            genn.unload()
            raise
        self._genn = genn
        self._examples_fed = self._batches_evaluated = 0
        return self

    def _genn_batch_size(self) -> int:
        """GeNN's batch size: the rank's batch on CUDA; 1 on the single-threaded CPU backend,
        which cannot batch, so a rank's batch there runs one example after another."""
        if self.backend == "cuda" or self.compiler.rank_batch_size == 1:
            return self.compiler.rank_batch_size
        log.info("the CPU backend simulates one example at a time: each batch of %d runs as "
                 "%d GeNN batches of 1", self.compiler.rank_batch_size,
                 self.compiler.rank_batch_size)
        return 1

    def _extra_options(self) -> dict:
        return {}

    def __exit__(self, *exc) -> None:
        if self._genn is not None:
            self._genn.unload()
            self._genn = None

    @property
    def genn_model(self) -> GeNNModelHandle:
        """mlGeNN's ``genn_model``, usable before ``with`` too (see :mod:`distsnn.model_handle`):
        settings made before loading (``timing_enabled = True``) reach the model distsnn
        creates; once loaded it is the ``pygenn.GeNNModel`` (timings, ``timestep``, ...)."""
        return self._model_handle

    @property
    def evaluate_timesteps(self) -> int:
        """Timesteps per example (mlGeNN's attribute; K for few-spike networks)."""
        return self.compiler.timesteps

    @property
    def num_recording_timesteps(self) -> int:
        """Size of the spike recording buffers (mlGeNN's attribute): one example."""
        return self.compiler.timesteps

    @property
    def neuron_populations(self) -> dict:
        """mlGeNN's map from each Population to its pygenn NeuronGroup (inside ``with``)."""
        genn = self._require()
        return {p: genn.groups[p.name] for p in self.network.populations}

    @property
    def connection_populations(self) -> dict:
        """mlGeNN's map from each Connection to its pygenn SynapseGroup (inside ``with``); a
        connection whose weights are all zero has none and is left out."""
        groups = self._require().synapse_groups
        return {c: groups[c.name] for c in self.network.connections if c.name in groups}

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

    # mlGeNN's step-by-step API -------------------------------------------------------
    def set_input(self, inputs: dict) -> None:
        """Write one batch (at most this rank's batch size) to input populations.

        Poisson inputs draw the streams of examples numbered consecutively over the
        ``set_input`` calls since loading (from 0, as ``evaluate`` numbers its examples).
        """
        genn = self._require()
        arrays = {_population(self.network, p): np.asarray(v) for p, v in inputs.items()}
        if not arrays:
            return
        n = _common_length(arrays)
        if n > genn.batch_size:
            raise ValueError(f"set_input takes one batch of at most {genn.batch_size} examples "
                             f"(this rank's batch size), not {n}")
        genn.set_examples(np.arange(n, dtype=np.int64) + self._examples_fed)
        self._examples_fed += n
        for pop, x in arrays.items():
            genn.set_input(pop, x)

    def get_readout(self, outputs):
        """Readout of an output population ``(batch,) + shape``; a list for a sequence.

        Padded lanes are included, as in mlGeNN. Averaging readouts are divided by
        ``evaluate_timesteps`` (mlGeNN scales them by 1/T)."""
        if isinstance(outputs, (list, tuple)):
            return [self.get_readout(o) for o in outputs]
        pop = _population(self.network, outputs)
        kind = self.readouts.get(pop) or _readout_kind(pop)
        value = read_value(self._require().readout(pop, kind), kind, self.compiler.timesteps)
        return value.reshape((-1,) + pop.shape)

    def step_time(self, callback_list: Optional[CallbackList] = None) -> None:
        """Simulate one timestep, calling ``callback_list``'s timestep hooks with its index.

        As mlGeNN's ``CompiledNetwork.step_time``: ``on_timestep_begin`` and
        ``on_timestep_end`` both get the index of the step simulated."""
        genn = self._require()
        step = genn.genn_model.timestep
        if callback_list is not None:
            callback_list.on_timestep_begin(step)
        genn.step()
        if callback_list is not None:
            callback_list.on_timestep_end(step)

    def reset_time(self) -> None:
        """Set the simulation time back to step 0 (t = 0 ms)."""
        self._require().set_timestep(0)

    def custom_update(self, name: str) -> None:
        """Run custom update group ``name`` ("Reset": what each new batch runs).

        "Reset" (mlGeNN's name) resets the readout accumulators and, with
        ``reset_vars_between_batches``, the neuron state."""
        self._require().custom_update(name, reset_vars=self.compiler.reset_vars)

    # public API ------------------------------------------------------------------
    def evaluate(self, x: dict, y: dict, metrics: Union[MetricSpec, dict, None] = None,
                 callbacks: Optional[Sequence] = DEFAULT_CALLBACKS, *,
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
        return self._evaluate(batches, total, list(y), metrics, callbacks,
                              self._local_batches(start, stop))

    def evaluate_batch(self, x: dict, y: dict, metrics: Union[MetricSpec, dict, None] = None,
                       callbacks: Optional[Sequence] = ()) -> tuple["MetricsResult", dict]:
        """Evaluate one batch per rank (mlGeNN's); returns ``(metrics, callback_data)``.

        ``x``/``y`` hold at most this rank's batch size of examples (each rank its own batch,
        as in mlGeNN); the metrics are global. No progress bar by default (mlGeNN's ``[]``).
        Examples are numbered on from the previous ``evaluate_batch`` calls, in rank order.
        """
        x = self._by_population(x, self.inputs, "x")
        y = self._by_population(y, self.outputs, "y")
        n = _common_length({**x, **y})
        if n > self.compiler.rank_batch_size:
            raise ValueError(f"evaluate_batch takes one batch of at most "
                             f"{self.compiler.rank_batch_size} examples per rank, not {n}; "
                             f"use evaluate for more")
        _, _, total, offset = self._shard(n, sharded=True)
        batches = self._slices({**x, **y}, 0, n, self._batches_evaluated + offset)
        self._batches_evaluated += total
        return self._evaluate(batches, total, list(y), metrics, callbacks, num_batches=1)

    def evaluate_batch_iter(self, inputs, outputs, data: Iterable, num_batches: Optional[int]
                            = None, metrics: Union[MetricSpec, dict, None] = None,
                            callbacks: Optional[Sequence] = DEFAULT_CALLBACKS,
                            ) -> tuple["MetricsResult", dict]:
        """Evaluate metrics over an iterator of ``(batch_x, batch_y)`` (e.g. a tf.data set).

        Several inputs/outputs: ``batch_x``/``batch_y`` are sequences in the same order.
        With a communicator rank r evaluates batches r, r + N, r + 2N, ... of the global
        sequence of N ranks, and reads only those when ``data`` is a per-rank pipeline:

        * an object with ``shard(num_shards, index)`` (a ``tf.data.Dataset``): each rank
          iterates ``data.shard(N, r)``, so it decodes only its own batches;
        * a callable ``data(rank, num_ranks)`` returning rank r's batches r, r + N, ...;
        * any other iterable: every rank iterates all of it and skips the others' batches.

        Example indices (which seed the Poisson streams) count from the first example of
        batch 0, so every batch but the last must hold the same number of examples.
        """
        inputs = _populations(self.network, _as_list(inputs), self.inputs, "inputs")
        outputs = _populations(self.network, _as_list(outputs), self.outputs, "outputs")
        comm = self.communicator

        def split(batch):
            bx, by = batch
            arrays = {**_split(bx, inputs), **_split(by, outputs)}
            return arrays, _common_length(arrays)

        def every_batch():
            offset = 0
            for i, batch in enumerate(data):
                arrays, size = split(batch)
                if i % comm.size == comm.rank:
                    yield from self._slices(arrays, 0, size, index_offset=offset)
                offset += size

        def own_batches(source):
            iterator = iter(source)
            first = next(iterator, None)
            first_size = 0 if first is None else split(first)[1]
            # the global batch size, from the ranks' first batches (rank 0 has a full one)
            size = int(comm.allreduce_max(np.array([first_size], np.int64))[0])
            for k, batch in enumerate([] if first is None
                                                else itertools.chain([first], iterator)):
                arrays, n = split(batch)
                yield from self._slices(arrays, 0, n, index_offset=(k * comm.size + comm.rank)
                                        * size)

        if comm.size > 1 and hasattr(data, "shard"):
            batches = own_batches(data.shard(comm.size, comm.rank))
        elif callable(data):
            batches = own_batches(data(comm.rank, comm.size))
        else:
            batches = every_batch()
        total = None if num_batches is None else num_batches * self.compiler.batch_size
        return self._evaluate(batches, total, outputs, metrics, callbacks, num_batches)

    def predict(self, x: dict, outputs: Optional[Sequence] = None,
                callbacks: Optional[Sequence] = DEFAULT_CALLBACKS, *, sharded: bool = False
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
        cb_data = self._run(self._slices(x, start, stop, offset), total, outputs, sink,
                            callbacks, num_batches=self._local_batches(start, stop))
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
    def _local_batches(self, start: int, stop: int) -> int:
        """How many batches this rank runs for its rows [start, stop)."""
        return -(-(stop - start) // self._require().batch_size)

    def _evaluate(self, batches, total, outputs, metrics, callbacks, num_batches=None):
        if metrics is None:
            metrics = self.compiler.metrics or "sparse_categorical_accuracy"
        per_checkpoint = self._checkpoint_metrics(_metric_specs(metrics, outputs), outputs)

        def sink(indices, checkpoint, pop, value, labels):
            if labels is not None and pop in labels and checkpoint in per_checkpoint:
                for metric in per_checkpoint[checkpoint][pop]:
                    metric.update(labels[pop], value)
        final = MetricsResult({o: ms[0] if len(ms) == 1 else {m.name: m for m in ms}
                               for o, ms in per_checkpoint[self.compiler.timesteps].items()})
        cb_data = self._run(batches, total, outputs, sink, callbacks, final, per_checkpoint,
                            num_batches)
        return final, cb_data

    def _checkpoints(self) -> Sequence[int]:
        return self.compiler.checkpoints

    def _accuracy_checkpoints(self) -> Sequence[int]:
        return self.compiler.accuracy_checkpoints

    def _checkpoint_metrics(self, specs: dict, outputs: list) -> dict:
        """Fresh metrics per readout checkpoint and output; accuracy-only checkpoints get a
        SparseCategoricalAccuracy."""
        checkpoints = sorted(set(self._checkpoints()) | {self.compiler.timesteps})
        per_checkpoint = {c: {o: [make_metric(s) for s in specs[o]] for o in outputs}
                          for c in checkpoints}
        for c in self._accuracy_checkpoints():
            per_checkpoint.setdefault(c, {o: [SparseCategoricalAccuracy()] for o in outputs})
        return per_checkpoint

    def _run(self, batches, total, outputs, sink, callbacks, metrics=None,
             per_checkpoint=None, num_batches=None) -> dict:
        cb = self._callback_list(callbacks, total, metrics, num_batches)
        cb.on_test_begin()
        start = time.perf_counter()
        stats = self._run_local(batches, outputs, sink, cb)
        seconds = time.perf_counter() - start
        reduce_start = time.perf_counter()
        report = EvaluationReport(seconds=seconds)
        self._reduce_metrics(report, per_checkpoint or {})
        report.spikes = _reduce_spikes(stats, self.network, self.communicator)
        report.examples = report.spikes["examples"]
        report.reduce_seconds = time.perf_counter() - reduce_start
        self.last_report = report
        cb.on_test_end(metrics or {})
        return cb.get_data()

    def _callback_list(self, callbacks, total, metrics, num_batches=None) -> CallbackList:
        comm = self.communicator
        info = BatchInfo(total_examples=total or 0, ranks=comm.size)
        cb = CallbackList(DEFAULT_CALLBACKS if callbacks is None else callbacks,
                          compiled_network=self, batch_info=info, num_batches=num_batches,
                          communicator=comm)
        cb.metrics = metrics or {}
        cb.batch_info = info
        return cb

    def _run_local(self, batches, outputs, sink, cb: CallbackList,
                   stop: Optional[Callable[[], bool]] = None) -> SpikeStats:
        """Simulate this rank's batches (no communication); ``stop()`` ends the feed early."""
        genn = self._require()
        pending: dict[int, tuple] = {}

        def feed() -> Iterator[dict]:
            for index, (indices, arrays) in enumerate(batches):
                pending[index] = (indices, {o: arrays[o] for o in outputs if o in arrays})
                cb.batch_info.example_indices = indices
                genn.set_examples(indices)
                yield {p: arrays[p] for p in self.inputs}
                if stop is not None and stop():
                    return

        def on_result(batch, checkpoint, pop, value):
            indices, labels = pending[batch]
            sink(indices, checkpoint, pop, value, labels)

        return self._schedule(genn, feed(), outputs, on_result, cb)

    def _reduce_metrics(self, report: "EvaluationReport", per_checkpoint: dict) -> None:
        for checkpoint, by_output in per_checkpoint.items():
            for metrics_of_output in by_output.values():
                for metric in metrics_of_output:
                    metric.reduce(self.communicator)
            report.metrics[checkpoint] = {o.name: {m.name: m.as_dict() for m in ms}
                                          for o, ms in by_output.items()}

    def evaluate_stream(self, chunks: Iterable[tuple[np.ndarray, dict, dict]],
                        total: Optional[int] = None,
                        metrics: Union[MetricSpec, dict, None] = None,
                        callbacks: Optional[Sequence] = None, *,
                        on_chunk: Optional[Callable[["ChunkResult"], None]] = None,
                        stop: Optional[Callable[[], bool]] = None,
                        initial: Optional["ChunkResult"] = None) -> "MetricsResult":
        """Evaluate this rank's data one chunk at a time; memory is bounded by one chunk.

        ``chunks`` yields ``(indices, x, y)``: the global example indices of a chunk and dicts
        mapping input/output populations to its arrays. After each chunk ``on_chunk`` gets
        that chunk's local counts (a :class:`ChunkResult`, e.g. for a journal). ``stop()`` is
        asked after each batch: when true the chunk ends early, ``on_chunk`` gets the part
        done and :class:`EvaluationStopped` is raised before any communication. ``initial``:
        counts already done (pass them on one rank only). Metrics are reduced once, at the end.
        """
        outputs = list(self.outputs)
        if metrics is None:
            metrics = self.compiler.metrics or "sparse_categorical_accuracy"
        specs = _metric_specs(metrics, outputs)
        names = [p.name for p in self.network.populations]
        totals = initial or ChunkResult.empty(names)
        accumulated = self._checkpoint_metrics(specs, outputs)
        for checkpoint, by_output in accumulated.items():
            for o, ms in by_output.items():
                for m in ms:
                    known = totals.metrics.get(checkpoint, {}).get(o.name, {}).get(m.name)
                    if known is not None:
                        m.set_counts(np.asarray(known))
        cb = self._callback_list(callbacks, total, None)
        cb.on_test_begin()
        start = time.perf_counter()
        for indices, x, y in chunks:
            fresh = self._checkpoint_metrics(specs, outputs)
            done: list[np.ndarray] = []

            def sink(batch_indices, checkpoint, pop, value, labels, fresh=fresh, done=done):
                if checkpoint == self.compiler.timesteps and pop is outputs[0]:
                    done.append(batch_indices)
                if labels is not None and pop in labels:
                    for metric in fresh[checkpoint][pop]:
                        metric.update(labels[pop], value)
            stats = self._run_local(self._slices({**x, **y}, 0, len(indices), indices=indices),
                                    outputs, sink, cb, stop)
            result = ChunkResult.of(np.concatenate(done) if done else np.zeros(0, np.int64),
                                    fresh, stats, self.network)
            for checkpoint, by_output in fresh.items():
                for o, ms in by_output.items():
                    for into, m in zip(accumulated[checkpoint][o], ms):
                        into.set_counts(add_counts(into.counts(), m.counts()))
            totals = totals.plus(result)
            if on_chunk is not None:
                on_chunk(result)
            if stop is not None and stop():
                raise EvaluationStopped(totals.examples)
        seconds = time.perf_counter() - start
        reduce_start = time.perf_counter()
        report = EvaluationReport(seconds=seconds)
        self._reduce_metrics(report, accumulated)
        report.spikes = _spike_report(self.network, totals.spike_vector(names), names,
                                      self.compiler.timesteps, self.communicator)
        report.examples = report.spikes["examples"]
        report.reduce_seconds = time.perf_counter() - reduce_start
        self.last_report = report
        final = MetricsResult({o: ms[0] if len(ms) == 1 else {m.name: m for m in ms}
                               for o, ms in accumulated[self.compiler.timesteps].items()})
        cb.on_test_end(final)
        return final

    def _schedule(self, genn, batches, outputs, on_result, cb) -> SpikeStats:
        c = self.compiler
        readouts = {o: self.readouts[o] for o in outputs}
        checkpoints = [*self._checkpoints(), *self._accuracy_checkpoints()]
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

    def _slices(self, arrays: dict, start: int, stop: int, index_offset: int = 0,
                indices: Optional[np.ndarray] = None) -> Iterator[tuple[np.ndarray, dict]]:
        """Batches of rows [start, stop), tagged with global example indices (row + offset,
        or ``indices[row]``)."""
        b = self._require().batch_size
        for s in range(start, stop, b):
            e = min(s + b, stop)
            tags = (np.arange(s, e, dtype=np.int64) + index_offset if indices is None
                    else np.asarray(indices[s:e], np.int64))
            yield tags, {p: take_rows(v, s, e) for p, v in arrays.items()}

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

    @property
    def k(self) -> int:
        """Timesteps per window (mlGeNN's attribute)."""
        return self.compiler.k

    def _checkpoints(self) -> Sequence[int]:
        return ()

    def _accuracy_checkpoints(self) -> Sequence[int]:
        return ()

    def _schedule(self, genn, batches, outputs, on_result, cb) -> SpikeStats:
        from .genn import pipeline_depths
        return run_few_spike(genn, batches, outputs, self.compiler.k,
                             pipeline_depths(self.network), on_result, cb)


def check_same_network(network: Network, comm: Communicator) -> None:
    """Raise the same error on every rank unless all ranks hold the same network.

    Ranks that built or converted different networks would otherwise fail later with GeNN's
    misleading "Unable to load library ... librunner.so" (they load each other's builds).
    """
    if comm.size == 1:
        return
    hashes = comm.broadcast_object(comm.gather_object(network.content_hash()))
    if len(set(hashes)) > 1:
        differ = ", ".join(f"rank {r}: {h[:12]}" for r, h in enumerate(hashes))
        raise SharedUserError(
            f"the ranks hold different networks (content hashes {differ}); every rank must "
            f"build or convert the same network: seed every random draw that shapes it (e.g. "
            f"np.random.seed(...) before np.random.choice picks the normalisation data), or "
            f"convert on rank 0 alone and share the result (distsnn.save_network, then "
            f"distsnn.load_network on every rank)")


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
    if isinstance(neuron, Integrator):
        return neuron.readout or "avg_input"
    if isinstance(neuron, (LeakyIntegrate, LeakyIntegrateFire)):
        if neuron.readout is None:
            raise ValueError(f"output population {pop.name!r} ({type(neuron).__name__}) has no "
                             f"readout: give it one, e.g. readout='avg_var' or AvgVar()")
        return neuron.readout
    raise ValueError(f"population {pop.name!r} ({type(neuron).__name__}) cannot be an output")


def _population(network: Network, key) -> Population:
    key = getattr(key, "population", key)  # an InputLayer or Layer stands for its population
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
        return {pops[0]: as_examples(batch)}
    if len(batch) != len(pops):
        raise ValueError(f"a batch has {len(batch)} parts but there are {len(pops)} "
                         f"populations {[p.name for p in pops]}")
    return {p: as_examples(b) for p, b in zip(pops, batch)}


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
    return _spike_report(network, local, names, stats.timesteps, comm)


def _spike_report(network: Network, local: np.ndarray, names: list[str], timesteps: int,
                  comm: Communicator) -> dict:
    """Spike report from each rank's [examples, synaptic operations, spikes per population]."""
    reduced = comm.allreduce_sum(np.asarray(local, np.int64))
    return spike_report(network, int(reduced[0]), timesteps,
                        dict(zip(names, (int(v) for v in reduced[2:]))), int(reduced[1]))
