"""The evaluation loop every rank runs over its batches.

Rate schedule (``mode="rate"``): per batch, reset the state (mlGeNN's "Reset", before the
callbacks' ``on_batch_begin``), write the inputs, simulate T steps and read the outputs at
each checkpoint (e.g. 100, 200 and 500 of a 500-step run).

Few-spike schedule (``mode="few_spike"``): a pipeline of K-step windows. During window w the
input encodes batch w and a population at depth d latches batch ``w - d``; so an output at
depth D holds batch ``w - D`` after window w, and N batches take ``N + D_max`` windows.

Spike statistics count only the windows in which each population works on real examples
and only the batch lanes that hold real examples.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Optional

import numpy as np

from distsnn.callbacks import CallbackList
from distsnn.compilers.statistics import SpikeStats
from distsnn.network import Population
from distsnn.readouts import read_value

if TYPE_CHECKING:  # importing pygenn is deferred to `with compiled_net:`
    from distsnn.genn import GeNNNetwork

#: ``on_result(batch_index, checkpoint, population, readout[b, size])``
ResultSink = Callable[[int, int, Population, np.ndarray], None]


class _SpikeAccounting:
    """Counts each population's spikes over the windows in which it holds real examples.

    A population at pipeline depth d works on batch j during window ``j + d`` (d = 0 for
    every population in the rate schedule). Only the ends of that span and the windows of
    partial batches are pulled from the device, so full batches cost no transfers.
    """

    def __init__(self, genn: GeNNNetwork, depth: dict[str, int]):
        self.genn = genn
        self.depth = {p.name: depth.get(p.name, 0) for p in genn.network.populations}
        self.start: dict[str, np.ndarray] = {}
        self.totals = {p.name: np.zeros(p.size, np.int64) for p in genn.network.populations}
        self.partial: dict[str, np.ndarray] = {}
        self.done: set[str] = set()

    def _pull(self, name: str) -> np.ndarray:
        return self.genn.pull(self.genn.network.population(name), "SpikeTotal").astype(np.int64)

    def before_window(self, window: int, sizes: list[int], num_batches: Optional[int]) -> None:
        for name, d in self.depth.items():
            batch = window - d
            if batch == 0:
                self.start[name] = self._pull(name)
            if num_batches is not None and batch == num_batches and name not in self.done:
                self._finish(name)
            elif 0 <= batch < len(sizes) and sizes[batch] < self.genn.batch_size:
                self.partial[name] = self._pull(name)

    def after_window(self, window: int, sizes: list[int]) -> None:
        for name, d in self.depth.items():
            batch = window - d
            if name in self.partial and 0 <= batch < len(sizes):
                diff = self._pull(name) - self.partial.pop(name)
                # drop the padded lanes of a partial batch
                self.totals[name] += diff[:sizes[batch]].sum(axis=0) - diff.sum(axis=0)

    def _finish(self, name: str) -> None:
        if name in self.start:
            self.totals[name] += (self._pull(name) - self.start[name]).sum(axis=0)
        self.done.add(name)

    def finish(self) -> dict[str, np.ndarray]:
        for name in self.depth:
            if name not in self.done:
                self._finish(name)
        return self.totals


def run_rate(genn: GeNNNetwork, batches: Iterable[dict[Population, np.ndarray]],
             outputs: dict[Population, str], timesteps: int, checkpoints: list[int],
             on_result: ResultSink, callbacks: CallbackList, reset_vars: bool = True,
             reset_time: bool = True) -> SpikeStats:
    """Rate-coded schedule; returns the spike statistics of the examples run."""
    checkpoints = sorted(set(int(c) for c in checkpoints) | {timesteps})
    if checkpoints[0] < 1 or checkpoints[-1] > timesteps:
        raise ValueError(f"readout checkpoints must lie in 1..{timesteps}, not {checkpoints}")
    spikes = _SpikeAccounting(genn, {})
    sizes: list[int] = []
    for index, x in enumerate(batches):
        sizes.append(_batch_size(x))
        spikes.before_window(index, sizes, None)
        # mlGeNN's order: the "Reset" custom update, then the callbacks, then time
        genn.reset_example_state(reset_vars, reset_time=False)
        callbacks.on_batch_begin(index)
        if reset_time:
            genn.set_timestep(0)
        for pop, values in x.items():
            genn.set_input(pop, values)
        done = 0
        for checkpoint in checkpoints:
            _simulate(genn, checkpoint - done, done, callbacks)
            done = checkpoint
            for pop, kind in outputs.items():
                value = genn.readout(pop, kind)[:sizes[-1]]
                on_result(index, checkpoint, pop, read_value(value, kind, checkpoint))
        spikes.after_window(index, sizes)
        callbacks.on_batch_end(index)
    return SpikeStats(sum(sizes), timesteps, spikes.finish())


def run_few_spike(genn: GeNNNetwork, batches: Iterable[dict[Population, np.ndarray]],
                  outputs: list[Population], k: int, depth: dict[str, int],
                  on_result: ResultSink, callbacks: CallbackList) -> SpikeStats:
    """Pipelined few-spike schedule; the readout is each output's complete pre-activation."""
    max_depth = max(depth[o.name] for o in outputs)
    spikes = _SpikeAccounting(genn, depth)
    sizes: list[int] = []
    iterator: Iterator = iter(batches)
    num_batches: Optional[int] = None
    window = 0
    while num_batches is None or window < num_batches + max_depth:
        x = next(iterator, None) if num_batches is None else None
        if x is None and num_batches is None:
            num_batches = len(sizes)
            if num_batches == 0 or window >= num_batches + max_depth:
                break
        if x is not None:
            sizes.append(_batch_size(x))
        spikes.before_window(window, sizes, num_batches)
        callbacks.on_batch_begin(window)
        genn.set_timestep(0)
        for pop in genn.network.inputs:
            genn.set_input(pop, x[pop] if x is not None else np.zeros((0, pop.size), np.float32))
        _simulate(genn, k, 0, callbacks)
        spikes.after_window(window, sizes)
        for o in outputs:
            batch = window - depth[o.name]
            if 0 <= batch < len(sizes):
                on_result(batch, k, o, genn.readout(o, "var")[:sizes[batch]])
        callbacks.on_batch_end(window)
        window += 1
    return SpikeStats(sum(sizes), k, spikes.finish())


def _simulate(genn: GeNNNetwork, steps: int, first: int, callbacks: CallbackList) -> None:
    if not callbacks.has_timestep_hooks:
        genn.step(steps)
        return
    for ts in range(first, first + steps):
        callbacks.on_timestep_begin(ts)
        genn.step()
        callbacks.on_timestep_end(ts)


def _batch_size(x: dict[Population, np.ndarray]) -> int:
    sizes = {len(v) for v in x.values()}
    if len(sizes) != 1:
        raise ValueError(f"inputs of one batch differ in length: {sorted(sizes)}")
    return sizes.pop()
