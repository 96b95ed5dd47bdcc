"""The compilers of mlGeNN's inference API: options checked now, GeNN built on ``with``."""
from __future__ import annotations

import logging
import os
from typing import Optional, Sequence, Union

from distsnn.compilers.arguments import PopulationLike, populations
from distsnn.compilers.compiled_network import CompiledFewSpikeNetwork, CompiledInferenceNetwork
from distsnn.metrics import MetricSpec
from distsnn.network import Network
from distsnn.parallel.communicator import Communicator, SerialCommunicator

log = logging.getLogger("distsnn")


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
        connectivity: "auto" (default; see ``distsnn.genn.lowering``), "toeplitz", "sparse" or
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
        inputs = populations(network, inputs, network.inputs, "inputs")
        outputs = populations(network, outputs, network.outputs, "outputs")
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


def _rank_batch_size(batch_size: int, ranks: int) -> int:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if batch_size <= ranks:
        return 1
    if batch_size % ranks:
        raise ValueError(f"the global batch_size {batch_size} must be divisible by the number "
                         f"of ranks ({ranks}); each rank runs batch_size // ranks examples")
    return batch_size // ranks


