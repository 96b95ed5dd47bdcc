"""A compiled network (mlGeNN's ``CompiledInferenceNetwork``): builds and loads GeNN on
``with``, then evaluates, predicts or steps. Each rank simulates its own shard; the metrics
and spike statistics are reduced once, at the end (:mod:`distsnn.compilers.report`).
"""
from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from distsnn.callbacks import DEFAULT_CALLBACKS, BatchInfo, CallbackList
from distsnn.compilers.arguments import (
    as_list,
    common_length,
    metric_specs,
    population,
    populations,
    readout_kind,
    split_batch,
)
from distsnn.compilers.chunks import ChunkResult, EvaluationStopped, PredictionRows, add_counts
from distsnn.compilers.model_handle import GeNNModelHandle
from distsnn.compilers.report import EvaluationReport, MetricsResult, final_metrics, reduce_report
from distsnn.compilers.simulation import run_few_spike, run_rate
from distsnn.compilers.statistics import SpikeStats
from distsnn.errors import SharedUserError
from distsnn.metrics import MetricSpec, SparseCategoricalAccuracy, make_metric
from distsnn.network import Network, Population
from distsnn.parallel.communicator import Communicator
from distsnn.parallel.sharding import shard_bounds
from distsnn.readouts import read_value
from distsnn.utils.data import take_rows

if TYPE_CHECKING:  # a type only: the compiler module imports this one
    from distsnn.compilers.compiler import InferenceCompiler

log = logging.getLogger("distsnn")


class CompiledInferenceNetwork:
    """A compiled network: ``with compiled:`` builds (once per node) and loads it.

    Besides evaluate/predict it has mlGeNN's attributes: ``genn_model`` (usable before
    ``with``, see :mod:`distsnn.compilers.model_handle`), ``neuron_populations``,
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
        self.readouts = {o: readout_kind(o) for o in outputs}
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
        from distsnn.genn import (
            CompileOptions,
            GeNNNetwork,
            SynapseCache,
            default_build_dir,
            resolve_backend,
        )
        from distsnn.genn.lowering import memory_budget
        from distsnn.parallel.devices import answering_gpus, select_gpu
        c, comm = self.compiler, self.communicator
        check_same_network(self.network, comm)
        settings = self._model_handle.settings
        profiling = bool(settings.pop("timing_enabled", c.kernel_profiling))
        gpus = answering_gpus()
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
        """mlGeNN's ``genn_model``, usable before ``with`` too (see :mod:`distsnn.compilers.model_handle`):
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
        arrays = {population(self.network, p): np.asarray(v) for p, v in inputs.items()}
        if not arrays:
            return
        n = common_length(arrays)
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
        pop = population(self.network, outputs)
        kind = self.readouts.get(pop) or readout_kind(pop)
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
        n = common_length({**x, **y})
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
        n = common_length({**x, **y})
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
        inputs = populations(self.network, as_list(inputs), self.inputs, "inputs")
        outputs = populations(self.network, as_list(outputs), self.outputs, "outputs")
        comm = self.communicator

        def split(batch):
            bx, by = batch
            arrays = {**split_batch(bx, inputs), **split_batch(by, outputs)}
            return arrays, common_length(arrays)

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
        outputs = populations(self.network, as_list(outputs), self.outputs, "outputs")
        x = self._by_population(x, self.inputs, "x")
        n = common_length(x)
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
        per_checkpoint = self._checkpoint_metrics(metric_specs(metrics, outputs), outputs)

        def sink(indices, checkpoint, pop, value, labels):
            if labels is not None and pop in labels and checkpoint in per_checkpoint:
                for metric in per_checkpoint[checkpoint][pop]:
                    metric.update(labels[pop], value)
        final = final_metrics(per_checkpoint, self.compiler.timesteps)
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
        local_spikes, names = stats.vector(self.network)
        self.last_report = reduce_report(per_checkpoint or {}, local_spikes, names, self.network,
                                         stats.timesteps, self.communicator, seconds)
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

    def evaluate_stream(self, chunks: Iterable[tuple[np.ndarray, dict, dict]],
                        total: Optional[int] = None,
                        metrics: Union[MetricSpec, dict, None] = None,
                        callbacks: Optional[Sequence] = None, *,
                        on_chunk: Optional[Callable[["ChunkResult"], None]] = None,
                        stop: Optional[Callable[[], bool]] = None,
                        initial: Optional["ChunkResult"] = None,
                        record: Sequence[int] = ()) -> "MetricsResult":
        """Evaluate this rank's data one chunk at a time; memory is bounded by one chunk.

        ``chunks`` yields ``(indices, x, y)``: the global example indices of a chunk and dicts
        mapping input/output populations to its arrays. After each chunk ``on_chunk`` gets
        that chunk's local counts (a :class:`ChunkResult`, e.g. for a journal). ``stop()`` is
        asked after each batch: when true the chunk ends early, ``on_chunk`` gets the part
        done and :class:`EvaluationStopped` is raised before any communication. ``initial``:
        counts already done (pass them on one rank only). Metrics are reduced once, at the end.
        ``record``: readout timesteps at which each example's readout of the first output is
        kept (in each chunk's ``predictions``; none by default).
        """
        outputs = list(self.outputs)
        if metrics is None:
            metrics = self.compiler.metrics or "sparse_categorical_accuracy"
        specs = metric_specs(metrics, outputs)
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
        start, cpu = time.perf_counter(), time.process_time()
        first_batch: list[tuple[float, float]] = []
        for indices, x, y in chunks:
            fresh = self._checkpoint_metrics(specs, outputs)
            done: list[np.ndarray] = []
            rows = _RowRecorder(outputs[0], record)

            def sink(batch_indices, checkpoint, pop, value, labels, fresh=fresh, done=done,
                     rows=rows):
                if checkpoint == self.compiler.timesteps and pop is outputs[0]:
                    done.append(batch_indices)
                    if not first_batch:
                        first_batch.append((time.perf_counter() - start,
                                            time.process_time() - cpu))
                rows.add(batch_indices, checkpoint, pop, value, labels)
                if labels is not None and pop in labels:
                    for metric in fresh[checkpoint][pop]:
                        metric.update(labels[pop], value)
            stats = self._run_local(self._slices({**x, **y}, 0, len(indices), indices=indices),
                                    outputs, sink, cb, stop)
            result = ChunkResult.of(np.concatenate(done) if done else np.zeros(0, np.int64),
                                    fresh, stats, self.network, rows.rows)
            for checkpoint, by_output in fresh.items():
                for o, ms in by_output.items():
                    for into, m in zip(accumulated[checkpoint][o], ms):
                        into.set_counts(add_counts(into.counts(), m.counts()))
            totals = totals.plus(result)
            if on_chunk is not None:
                on_chunk(result)
            if stop is not None and stop():
                raise EvaluationStopped(totals.examples)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        self.last_report = reduce_report(accumulated, totals.spike_vector(names), names,
                                         self.network, self.compiler.timesteps,
                                         self.communicator, seconds, cpu)
        self.last_report.first_batch = first_batch[0] if first_batch else None
        final = final_metrics(accumulated, self.compiler.timesteps)
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
            total = int(comm.allreduce_sum(np.array([n], np.int64))[0])
            return 0, n, total, comm.exclusive_sum(n)
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
            pop = population(self.network, key)
            out[pop] = value
        return out


class _RowRecorder:
    """Collects one output's per-example readouts at the ``record`` timesteps, batch by batch
    (a batch's rows are complete once every recorded timestep has been read out)."""

    def __init__(self, output: Population, record: Sequence[int]):
        self.output = output
        self.record = sorted(set(record))
        self.rows: list[PredictionRows] = []
        self._pending: dict[int, dict[int, np.ndarray]] = {}

    def add(self, indices: np.ndarray, checkpoint: int, pop: Population, value: np.ndarray,
            labels: Optional[dict]) -> None:
        if pop is not self.output or checkpoint not in self.record or len(indices) == 0:
            return
        values = self._pending.setdefault(int(indices[0]), {})
        values[checkpoint] = value
        if len(values) == len(self.record):
            del self._pending[int(indices[0])]
            label = (labels[pop] if labels is not None and pop in labels
                     else np.full(len(indices), -1))
            self.rows.append(PredictionRows.of(indices, label, [values[c] for c in self.record]))


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
        from distsnn.genn import pipeline_depths
        return run_few_spike(genn, batches, outputs, self.compiler.k,
                             pipeline_depths(self.network), on_result, cb)




def check_same_network(network: Network, comm: Communicator) -> None:
    """Raise the same error on every rank unless all ranks hold the same network.

    Ranks that built or converted different networks would otherwise fail later with GeNN's
    misleading "Unable to load library ... librunner.so" (they load each other's builds).
    """
    if comm.size == 1:
        return
    mine = network.content_hash()
    same = comm.broadcast_object(mine) == mine  # rank 0's hash, then one flag all-reduced
    if comm.allreduce_min(np.array([int(same)], np.int64))[0] == 0:
        hashes = comm.broadcast_object(comm.gather_object(mine))  # the error's details only
        differ = ", ".join(f"rank {r}: {h[:12]}" for r, h in enumerate(hashes))
        raise SharedUserError(
            f"the ranks hold different networks (content hashes {differ}); every rank must "
            f"build or convert the same network: seed every random draw that shapes it (e.g. "
            f"np.random.seed(...) before np.random.choice picks the normalisation data), or "
            f"convert on rank 0 alone and share the result (distsnn.save_network, then "
            f"distsnn.load_network on every rank)")
