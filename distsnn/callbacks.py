"""Callbacks run by the evaluation loop: mlGeNN's callback protocol.

Hooks: ``on_test_begin()``, ``on_test_end(metrics)``, ``on_batch_begin(batch)``,
``on_batch_end(batch, metrics)``, ``on_timestep_begin(step)``, ``on_timestep_end(step)``.
Only hooks a callback overrides are called (any object with the method, for callbacks that
do not derive from :class:`Callback`); timestep hooks make the loop step one timestep at a
time, so leave them out where speed matters.

Set-up, as mlGeNN's ``CallbackList`` does it: ``set_params`` is called with the keywords
``data`` (a dict shared by the list), ``compiled_network`` and ``num_batches`` (this rank's
batches, when known), plus distsnn's ``batch_info`` and ``communicator``; a ``set_params``
without ``**kwargs`` gets only the keywords it names. ``set_first()`` is called on the first
callback of each type that has it. ``get_data()`` returns ``(key, data)``, collected into the
dict that ``evaluate``/``predict`` return (a ``None`` key: the callback's index); returning
None (the base class) adds nothing.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

HOOKS = ("on_test_begin", "on_test_end", "on_batch_begin", "on_batch_end",
         "on_timestep_begin", "on_timestep_end")

#: mlGeNN's default ``callbacks`` of evaluate, evaluate_batch_iter and predict.
DEFAULT_CALLBACKS = ("batch_progress_bar",)


@dataclass
class BatchInfo:
    """What is being simulated now: the global example index of each batch lane."""

    example_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    total_examples: int = 0
    ranks: int = 1


class Callback:
    """Base class; override the hooks you need. ``key`` names the data in the results."""

    key: Any = None

    def set_params(self, compiled_network=None, batch_info: Optional[BatchInfo] = None,
                   num_batches: Optional[int] = None, communicator=None, *,
                   data: Optional[dict] = None, **kwargs) -> None:
        """Called when an evaluation starts (mlGeNN's keywords and distsnn's)."""
        self.compiled_network = compiled_network
        self.batch_info = batch_info
        self.num_batches = num_batches
        self.communicator = communicator

    def on_test_begin(self) -> None: ...
    def on_test_end(self, metrics) -> None: ...
    def on_batch_begin(self, batch: int) -> None: ...
    def on_batch_end(self, batch: int, metrics) -> None: ...
    def on_timestep_begin(self, timestep: int) -> None: ...
    def on_timestep_end(self, timestep: int) -> None: ...

    def get_data(self) -> Optional[tuple[Any, Any]]:
        """``(key, data)`` to return (None: nothing)."""
        return None


def _overrides(cb, hook: str) -> bool:
    if hook in vars(cb):  # a CustomHook's function
        return True
    method = getattr(type(cb), hook, None)
    return method is not None and method is not getattr(Callback, hook)


class CallbackList:
    """Dispatches hooks to the callbacks that define them."""

    def __init__(self, callbacks: Sequence[Union[Callback, str]], **params):
        self.callbacks = [make_callback(c) for c in callbacks]
        self.metrics: dict = {}
        self.data: dict = {}
        first: dict[type, Any] = {}
        for cb in self.callbacks:
            if hasattr(cb, "set_params"):
                _call_accepting(cb.set_params, data=self.data, **params)
            first.setdefault(type(cb), cb)
        for cb in first.values():
            if hasattr(cb, "set_first"):
                cb.set_first()
        self._hooks = {h: [getattr(c, h) for c in self.callbacks
                           if (_overrides(c, h) if isinstance(c, Callback) else hasattr(c, h))]
                       for h in HOOKS}
        self.has_timestep_hooks = bool(self._hooks["on_timestep_begin"]
                                       or self._hooks["on_timestep_end"])

    def on_test_begin(self):
        for h in self._hooks["on_test_begin"]:
            h()

    def on_test_end(self, metrics):
        for h in self._hooks["on_test_end"]:
            h(metrics)

    def on_batch_begin(self, batch):
        for h in self._hooks["on_batch_begin"]:
            h(batch)

    def on_batch_end(self, batch, metrics=None):
        for h in self._hooks["on_batch_end"]:
            h(batch, self.metrics if metrics is None else metrics)

    def on_timestep_begin(self, timestep):
        for h in self._hooks["on_timestep_begin"]:
            h(timestep)

    def on_timestep_end(self, timestep):
        for h in self._hooks["on_timestep_end"]:
            h(timestep)

    def get_data(self) -> dict:
        """Every callback's ``(key, data)`` as a dict (a None key: the callback's index)."""
        data = {}
        for i, cb in enumerate(self.callbacks):
            if not hasattr(cb, "get_data"):
                continue
            value = cb.get_data()
            if value is None:
                continue
            if not (isinstance(value, tuple) and len(value) == 2):
                raise TypeError(f"callback {type(cb).__name__}: get_data() must return a "
                                f"(key, data) pair, as mlGeNN's callbacks do, or None")
            key, value = value
            key = i if key is None else key
            if key in data:
                raise KeyError(f"two callbacks return data under the key {key!r}")
            data[key] = value
        return data


def _call_accepting(fn: Callable, **params) -> Any:
    """Call ``fn`` with the keyword arguments it accepts (all of them with ``**kwargs``)."""
    signature = inspect.signature(fn)
    kinds = {p.kind for p in signature.parameters.values()}
    if inspect.Parameter.VAR_KEYWORD not in kinds:
        params = {k: v for k, v in params.items() if k in signature.parameters}
    return fn(**params)


class BatchProgressBar(Callback):
    """Progress on rank 0 with the estimated global examples/s (see :mod:`distsnn.utils.progress`):
    a bar on a terminal, plain lines every 10 % in a log file."""

    def set_params(self, compiled_network=None, batch_info=None, num_batches=None,
                   communicator=None, **kwargs):
        super().set_params(compiled_network, batch_info, num_batches, communicator, **kwargs)
        self.progress = None

    def on_test_begin(self):
        if self.communicator.rank == 0:
            from distsnn.utils.progress import Progress
            self.progress = Progress(self.batch_info.total_examples or None)

    def on_batch_end(self, batch, metrics):
        if self.progress is not None:
            # ranks hold equal shards (+-1), so rank 0's progress times the rank count
            # estimates the global progress without any communication
            done = len(self.batch_info.example_indices) * self.batch_info.ranks
            shown = {getattr(m, "name", "metric"): f"{m.result:.4f}"
                     for m in metrics.values() if getattr(m, "result", None) is not None}
            self.progress.update(self.progress.done + done, shown)

    def on_test_end(self, metrics):
        if self.progress is not None:
            if self.progress.total:
                self.progress.update(self.progress.total)  # the estimate may fall short
            self.progress.close()
            self.progress = None


def example_mask(example_filter, indices: np.ndarray) -> np.ndarray:
    """Which of the global example ``indices`` an example filter selects."""
    if example_filter is None:
        return np.ones(len(indices), bool)
    if isinstance(example_filter, (int, np.integer)):
        return indices == int(example_filter)
    f = np.asarray(example_filter)
    if f.dtype == bool:
        padded = np.zeros(max(int(indices.max(initial=-1)) + 1, len(f)), bool)
        padded[:len(f)] = f
        return padded[indices]
    if np.issubdtype(f.dtype, np.integer):
        return np.isin(indices, f)
    raise TypeError(f"example_filter must be None, an int, an int array or a bool mask, "
                    f"not {type(example_filter).__name__}")


def neuron_mask(neuron_filter, shape: tuple[int, ...]) -> np.ndarray:
    """Flat bool mask over a population from a slice, bool array, int array or index tuple."""
    mask = np.zeros(shape, bool)
    if neuron_filter is None:
        mask[...] = True
    elif isinstance(neuron_filter, slice):
        mask.reshape(-1)[neuron_filter] = True
    else:
        f = neuron_filter if isinstance(neuron_filter, tuple) else np.asarray(neuron_filter)
        if isinstance(f, np.ndarray) and f.dtype == bool:
            if f.shape != tuple(shape):
                raise ValueError(f"a bool neuron filter must have the population shape {shape}, "
                                 f"not {f.shape}")
            mask = f.copy()
        elif isinstance(f, np.ndarray):
            mask.reshape(-1)[f] = True
        else:
            mask[f] = True
    return mask.reshape(-1)


class _Recorder(Callback):
    """Shared bookkeeping of the recorders: per-example data tagged with global indices."""

    def __init__(self, pop, key, example_filter, neuron_filter):
        self.pop = getattr(pop, "population", pop)  # an InputLayer or Layer: its population
        self.key = key
        self.example_filter = example_filter
        self.neuron_filter = neuron_filter
        self.records: list[tuple[int, Any]] = []

    def set_params(self, compiled_network=None, batch_info=None, num_batches=None,
                   communicator=None, **kwargs):
        super().set_params(compiled_network, batch_info, num_batches, communicator, **kwargs)
        self.neurons = neuron_mask(self.neuron_filter, self.pop.shape)
        self.records = []

    def _selected(self) -> tuple[np.ndarray, np.ndarray]:
        indices = self.batch_info.example_indices
        mask = example_mask(self.example_filter, indices)
        return np.flatnonzero(mask), indices[mask]

    def get_data(self):
        """``(key, per-example records in dataset order, from every rank)``."""
        gathered = self.communicator.gather_object(self.records)
        gathered = self.communicator.broadcast_object(gathered)
        ordered = sorted((r for rank in gathered for r in rank), key=lambda r: r[0])
        return self.key, self._format([data for _, data in ordered])

    def _format(self, records):
        return records


class SpikeRecorder(_Recorder):
    """Spike times (ms, from the example start) and neuron ids per selected example.

    The population must have been created with ``record_spikes=True``. With
    ``record_counts=True`` each example gives per-neuron spike counts instead.
    """

    def __init__(self, pop, key=None, example_filter=None, neuron_filter=None,
                 record_counts: bool = False):
        super().__init__(pop, key, example_filter, neuron_filter)
        self.record_counts = record_counts
        if not self.pop.record_spikes:
            raise ValueError(f"SpikeRecorder: population {self.pop.name!r} was not created with "
                             f"record_spikes=True")

    def on_batch_end(self, batch, metrics):
        lanes, indices = self._selected()
        recorded = self.compiled_network.recorded_spikes(self.pop)
        flat_ids = np.flatnonzero(self.neurons)
        for lane, index in zip(lanes, indices):
            times, ids = recorded[lane]
            keep = self.neurons[ids.astype(np.int64)]
            if self.record_counts:
                counts = np.bincount(ids[keep].astype(np.int64), minlength=self.pop.size)
                self.records.append((int(index), counts[flat_ids]))
            else:
                self.records.append((int(index), (times[keep], ids[keep])))

    def _format(self, records):
        if self.record_counts:
            return records
        return [t for t, _ in records], [i for _, i in records]


class VarRecorder(_Recorder):
    """A neuron variable after every timestep: per selected example an array (T, neurons)."""

    def __init__(self, pop, var: Optional[str] = None, key=None, example_filter=None,
                 neuron_filter=None, genn_var: Optional[str] = None):
        super().__init__(pop, key, example_filter, neuron_filter)
        self.var = genn_var or {"v": "V", None: "V"}.get(var, var)
        self._steps: list[np.ndarray] = []

    def on_batch_begin(self, batch):
        self._steps = []

    def on_timestep_end(self, timestep):
        self._steps.append(self.compiled_network.pull_var(self.pop, self.var)[:, self.neurons])

    def on_batch_end(self, batch, metrics):
        lanes, indices = self._selected()
        steps = np.stack(self._steps) if self._steps else np.zeros((0, 1, self.neurons.sum()))
        for lane, index in zip(lanes, indices):
            lane = min(lane, steps.shape[1] - 1)  # variables shared by the batch have one lane
            self.records.append((int(index), steps[:, lane].copy()))


class CustomHook(Callback):
    """Wrap plain functions as hooks, e.g. ``CustomHook(on_batch_end=lambda b, m: ...)``."""

    def __init__(self, key=None, **hooks):
        unknown = set(hooks) - set(HOOKS)
        if unknown:
            raise ValueError(f"unknown hooks {sorted(unknown)}; use {HOOKS}")
        self.key = key
        for name, fn in hooks.items():
            setattr(self, name, fn)


class CustomUpdate(Callback):
    """Base of the callbacks that run custom update group ``name`` (e.g. "Reset") when
    ``filter_fn(index)`` is true or absent (mlGeNN's ``CustomUpdate``)."""

    def __init__(self, name: str, filter_fn: Optional[Callable[[int], bool]] = None):
        self.name = name
        self.filter_fn = filter_fn

    def _custom_update(self, index: int) -> None:
        if self.filter_fn is None or self.filter_fn(index):
            self.compiled_network.custom_update(self.name)


class CustomUpdateOnBatchBegin(CustomUpdate):
    """Run custom update ``name`` at the start of every (filtered) batch."""

    def on_batch_begin(self, batch):
        self._custom_update(batch)


class CustomUpdateOnBatchEnd(CustomUpdate):
    """Run custom update ``name`` at the end of every (filtered) batch."""

    def on_batch_end(self, batch, metrics):
        self._custom_update(batch)


class CustomUpdateOnTimestepBegin(CustomUpdate):
    """Run custom update ``name`` before every (filtered) timestep of an example."""

    def on_timestep_begin(self, timestep):
        self._custom_update(timestep)


class CustomUpdateOnTimestepEnd(CustomUpdate):
    """Run custom update ``name`` after every (filtered) timestep of an example."""

    def on_timestep_end(self, timestep):
        self._custom_update(timestep)


class Checkpoint(Callback):
    """mlGeNN's ``Checkpoint(serialiser, epoch_interval)``, for inference.

    mlGeNN's saves training state every ``epoch_interval`` epochs, so it does nothing during
    inference (there are no epochs). Here each evaluation run with the callback (evaluate,
    evaluate_batch_iter, evaluate_batch, predict) counts as one epoch: at the end of
    evaluations 0, interval, 2 * interval, ... rank 0 saves the network, keyed by that count
    as mlGeNN keys by epoch. ``serialiser="numpy"`` writes mlGeNN's layout, each weighted
    connection's weights (its kernel or matrix) as ``<path>/<epoch>-<connection>-g.npy``;
    ``"network"`` writes distsnn's network file ``<path>/<epoch>.h5`` (weights, neurons,
    metadata; ``distsnn.load_network`` and ``distsnn evaluate`` read it).
    """

    SERIALISERS = ("numpy", "network")

    def __init__(self, serialiser: str = "numpy", epoch_interval: int = 1, path: str = ""):
        if serialiser not in self.SERIALISERS:
            raise ValueError(f"Checkpoint: serialiser must be one of {self.SERIALISERS}, not "
                             f"{serialiser!r}")
        if int(epoch_interval) < 1:
            raise ValueError(f"Checkpoint: epoch_interval must be at least 1, not "
                             f"{epoch_interval}")
        self.serialiser = serialiser
        self.epoch_interval = int(epoch_interval)
        self.path = Path(path)
        self.epoch = 0

    def on_test_end(self, metrics):
        epoch, self.epoch = self.epoch, self.epoch + 1
        if epoch % self.epoch_interval or getattr(self.communicator, "rank", 0) != 0:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        network = self.compiled_network.network
        if self.serialiser == "network":
            from distsnn.netfile import save_network
            save_network(network, self.path / f"{epoch}.h5")
            return
        from distsnn.utils.files import atomic_path
        for conn in network.connections:
            weight = getattr(conn.connectivity, "weight", None)
            if weight is not None:
                with atomic_path(self.path / f"{epoch}-{conn.name}-g.npy", "checkpoint") as tmp:
                    np.save(tmp, np.asarray(weight))


def make_callback(spec):
    """A callback from an object or a name (``"batch_progress_bar"``, ``"checkpoint"``)."""
    if isinstance(spec, str):
        names = {"batch_progress_bar": BatchProgressBar, "checkpoint": Checkpoint}
        if spec not in names:
            raise ValueError(f"unknown callback {spec!r}; use one of {sorted(names)}")
        return names[spec]()
    return spec
