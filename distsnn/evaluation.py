"""The distributed job behind ``distsnn evaluate``: load or convert, broadcast, evaluate.

Rank 0 reads a network file or converts a Keras or ONNX model (only rank 0 imports Keras,
onnx or onnxruntime) and broadcasts the network file's bytes; each rank reads only its
contiguous shard of the dataset, evaluates it, and the counts are all-reduced. Every step is
timed.
"""
from __future__ import annotations

import gc
import platform
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from contextlib import contextmanager
from typing import Iterator, Optional

import h5py
import numpy as np

from . import __version__
from .communicator import Communicator
from .compilers import FewSpikeCompiler, InferenceCompiler
from .data import inspect_dataset, iter_rows, read_shard, shard_bounds
from .errors import UserError, agree, on_root
from .inputs import InputScaling, check_channels, check_dtype
from .jobs import JobOptions, evaluate_job
from .layout import to_network_layout
from .netfile import FORMAT_NAME, load_network, network_to_bytes
from .network import Network
from .neurons import FewSpikeReluInput, SpikeInput


#: Points of the accuracy-vs-time curve read out in every rate-coded evaluation (every 2 %).
CURVE_POINTS = 50


@dataclass
class ConversionOptions:
    """How to convert a Keras or ONNX model (ignored for a network file)."""

    method: str = "few-spike"
    norm_data: Optional[str] = None
    timesteps: int = 500
    k: int = 8
    input_type: str = "poisson"
    signed_input: bool = False
    percentile: float = 100.0
    reset: str = "subtract"
    readout: str = "spikes"
    norm_x_name: str = "x"
    seed: int = 1
    build_dir: Optional[str] = None


@dataclass
class Timings:
    """Wall-clock seconds per named step of a run (repeated steps add up)."""

    values: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.values[name] = self.values.get(name, 0.0) + time.perf_counter() - start


def is_network_file(path: str | Path) -> bool:
    """True for a distsnn network file (as opposed to a Keras or ONNX model)."""
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT_NAME
    except OSError:
        return False


def load_or_convert(path: str, options: ConversionOptions, comm: Communicator,
                    timings: Timings) -> Network:
    """The network on every rank: rank 0 loads or converts it, then broadcasts its bytes.

    Spike-norm conversion then runs the threshold search on all ranks. The other ranks sleep
    meanwhile, leaving their cores to rank 0.
    """
    def rank0() -> bytes:
        try:
            return _read_or_convert(path, options, timings)
        finally:
            comm.sleeping_barrier()  # wakes the others

    if comm.rank != 0:
        comm.sleeping_barrier()
    data = on_root(comm, rank0, broadcast=False)
    with timings.measure("broadcast"):
        network = load_network(comm.broadcast_bytes(data))
    if network.metadata.get("spike_norm", {}).get("status") == "pending":
        with timings.measure("spike_norm_search"):
            spike_norm_search(network, options, comm)
    return network


def _read_or_convert(path: str, options: ConversionOptions, timings: Timings) -> bytes:
    """The network file's bytes: read, or converted from a Keras or ONNX model."""
    if not Path(path).exists():
        raise UserError(f"{path}: no such file (expected a .keras/.h5 Keras model, an .onnx "
                        f"model or a distsnn network file)")
    if is_network_file(path):
        return Path(path).read_bytes()
    from .convert.api import convert_file, import_keras_lean  # only rank 0 imports Keras/onnx
    from .convert.frontends import is_onnx
    with timings.measure("conversion"):
        if not is_onnx(path) and import_keras_lean():
            gc.freeze()  # TensorFlow's objects: left out of later collections and the exit's (1 s)
        net = convert_file(path, options.method, norm_data=options.norm_data,
                           timesteps=options.timesteps, k=options.k,
                           input_type=options.input_type, signed_input=options.signed_input,
                           percentile=options.percentile, reset=options.reset,
                           x_name=options.norm_x_name, readout=options.readout)
    return network_to_bytes(net)


def spike_norm_search(network: Network, options: ConversionOptions, comm: Communicator) -> None:
    """Run the distributed spike-norm search with each rank's shard of the norm data."""
    from .spike_norm import spike_normalise
    if options.norm_data is None:
        raise UserError("--method spike-norm needs --norm-data FILE (a slice of the training set)")
    info = on_root(comm, lambda: inspect_dataset(options.norm_data, options.norm_x_name, None))
    start, stop = agree(comm, lambda: shard_bounds(info.n_examples, comm.rank, comm.size))
    x, _ = agree(comm, lambda: read_shard(options.norm_data, start, stop, options.norm_x_name,
                                          None))
    x = _as_input(x, network, options.norm_data, options.norm_x_name)
    spike_normalise(network, norm_data=x, evaluate_timesteps=options.timesteps,
                    rng_seed=options.seed, communicator=comm, sharded=True,
                    percentile=options.percentile, build_dir=options.build_dir)
    network.metadata["spike_norm"]["norm_examples"] = info.n_examples


def _as_input(x: np.ndarray, network: Network, path: str = "the dataset",
              name: str = "x") -> np.ndarray:
    """Examples in the input population's shape (from the model's layout, see
    :func:`~distsnn.layout.to_network_layout`), after checking their size matches."""
    _check_shape(tuple(x.shape[1:]), network, path, name)
    return to_network_layout(x, network)


def _check_shape(shape: tuple, network: Network, path: str, name: str) -> None:
    pop = network.inputs[0]
    if shape != pop.shape and int(np.prod(shape)) != pop.size:
        raise UserError(f"{path}: examples of {name!r} have shape {shape} but the network input "
                        f"{pop.name!r} expects {pop.shape}; reshape the data or use the model it "
                        f"was made for")


def evaluate_file(network: Network, data: str, comm: Communicator, timings: Timings, *,
                  x_name: str = "x", y_name: str = "y", timesteps: list[int] = (500,),
                  batch_size: int = 1, backend: str = "auto", seed: int = 1,
                  build_dir: Optional[str] = None, top_k: int = 5,
                  progress: bool = True, job: Optional[JobOptions] = None,
                  connectivity: str = "auto", memory_budget: Optional[str] = None) -> dict:
    """Evaluate ``network`` on a dataset file, every rank streaming its own examples in
    chunks (see :mod:`distsnn.jobs` for the journal and resuming)."""
    from .callbacks import BatchProgressBar
    job = job or JobOptions()
    if len(network.inputs) != 1 or len(network.outputs) != 1:
        raise UserError("the command line evaluates networks with one input and one output; "
                        "use the library API for more")
    inp, out = network.inputs[0], network.outputs[0]
    if isinstance(inp.neuron, SpikeInput):
        raise UserError(f"input population {inp.name!r} is a SpikeInput, whose examples are "
                        f"spike trains: evaluate it with the library API and a list of "
                        f"distsnn.utils.data.PreprocessedSpikes")
    if Path(data).is_dir():  # an image folder: rank 0 lists it, each rank decodes its shard
        folder, info, identity = on_root(comm, lambda: _scan_images(data, network, job))
        read = folder.iter_rows
    else:
        info = on_root(comm, lambda: _check_dataset(data, x_name, y_name, network, job.scaling))
        identity = on_root(comm, lambda: _dataset_identity(info))
        read = lambda ranges, chunk: iter_rows(data, ranges, chunk, x_name, y_name, True)  # noqa: E731
    agree(comm, lambda: shard_bounds(info.n_examples, comm.rank, comm.size))
    num_classes = out.size
    few_spike = isinstance(inp.neuron, FewSpikeReluInput)
    metrics = ["sparse_categorical_accuracy", f"top_{min(top_k, num_classes)}_accuracy",
               "confusion_matrix"]
    common = dict(batch_size=batch_size * comm.size, rng_seed=seed, communicator=comm,
                  backend=backend, build_dir=build_dir, connectivity=connectivity,
                  memory_budget=memory_budget)
    if few_spike:
        compiler = FewSpikeCompiler(k=inp.neuron.k, **common)
    else:
        compiler = InferenceCompiler(max(timesteps), checkpoints=timesteps,
                                     accuracy_checkpoints=curve_checkpoints(max(timesteps)),
                                     **common)
    compiled = compiler.compile(network)
    with timings.measure("build_and_load"):
        compiled.__enter__()
    try:
        timings.values["build"] = compiled.build_info.build_s
        timings.values["load"] = compiled.build_info.load_s
        comm.barrier()
        callbacks = [BatchProgressBar()] if progress else []
        job.fingerprint = {**job.fingerprint, "network": network.content_hash(),
                           "dataset": identity, "seed": compiled.base_seed,
                           "schedule": ["few-spike", inp.neuron.k] if few_spike
                           else ["rate", sorted(set(timesteps))], "metrics": metrics,
                           "inputs": job.scaling.describe()}
        outcome = evaluate_job(
            compiled, read, info.n_examples, f"{data}",
            lambda y, first: _check_labels(y, num_classes, data, first),
            metrics, callbacks, comm, job)
        report = compiled.last_report
        timings.values["evaluation"] = report.seconds
        timings.values["reduction"] = report.reduce_seconds
        devices = comm.gather_object(_device_info(comm, compiled.backend))
        build_reused = comm.gather_object(compiled.build_info.reused)
    finally:
        compiled.__exit__(None, None, None)
    slowest = comm.allreduce_max(np.array([report.seconds]))[0]
    return {
        "distsnn_version": __version__,
        "network": {"hash": network.content_hash(), "metadata": network.metadata,
                    "input": {"name": inp.name, "shape": list(inp.shape)},
                    "output": {"name": out.name, "shape": list(out.shape)},
                    "neurons": sum(p.size for p in network.populations)},
        "dataset": {"path": str(data), "examples": info.n_examples, "x_name": x_name,
                    "y_name": y_name},
        "schedule": ({"mode": "few-spike", "k": inp.neuron.k} if few_spike else
                     {"mode": "rate", "timesteps": sorted(set(timesteps))}),
        "ranks": comm.size, "batch_size_per_rank": batch_size, "backend": compiled.backend,
        "devices": devices,
        "seeds": {"base": compiled.base_seed,
                  "poisson_streams": "hash(base seed, global example index, neuron, step)"},
        "build_reused": build_reused,
        "metrics": {str(c): m[out.name] for c, m in sorted(report.metrics.items())
                    if few_spike or c in timesteps},
        "accuracy_curve": _accuracy_curve(report.metrics, out.name),
        "spikes": report.spikes,
        "timings_s": dict(timings.values),
        "examples_per_second": ((report.examples - outcome.resumed_examples) / slowest
                                if slowest else None),
        "journal": {"path": None if job.journal is None else str(job.journal),
                    "resumed_examples": outcome.resumed_examples},
        "versions": _versions(),
    }


def curve_checkpoints(timesteps: int, points: int = CURVE_POINTS) -> list[int]:
    """Readout steps of the accuracy-vs-time curve: every ``1/points`` of the run."""
    return sorted({max(1, round(timesteps * i / points)) for i in range(1, points + 1)})


def _accuracy_curve(metrics: dict, output: str) -> dict:
    steps = sorted(metrics)
    return {"timesteps": steps,
            "accuracy": [metrics[s][output]["sparse_categorical_accuracy"]["result"]
                         for s in steps]}


def _check_dataset(path: str, x_name: str, y_name: str, network: Network,
                   scaling: InputScaling):
    info = inspect_dataset(path, x_name, y_name, require_labels=True)
    _check_shape(tuple(info.x_shape), network, path, x_name)
    check_dtype(info.x_dtype, scaling, f"{path}[{info.x_name}]")
    check_channels(scaling.mean, network.inputs[0].shape, "--mean")  # in the network's layout
    check_channels(scaling.std, network.inputs[0].shape, "--std")
    return info


def _scan_images(path: str, network: Network, job: JobOptions):
    from .images import ImageFolder
    folder = ImageFolder.scan(path, network.inputs[0].shape[-1], **job.images)
    info = folder.info()
    _check_shape(tuple(info.x_shape), network, path, "images")
    check_dtype(info.x_dtype, job.scaling, path)
    return folder, info, {"images": folder.identity(), "examples": info.n_examples,
                          "x": list(info.x_shape)}


def _dataset_identity(info) -> dict:
    """What identifies a dataset for a journal: size, shape and a hash of its first and last
    MiB (so a copy elsewhere, e.g. on node-local disk, is the same dataset)."""
    import hashlib
    digest = hashlib.sha256()
    size = Path(info.path).stat().st_size
    with open(info.path, "rb") as f:
        digest.update(f.read(1 << 20))
        f.seek(max(size - (1 << 20), 0))
        digest.update(f.read(1 << 20))
    return {"bytes": size, "sha256_ends": digest.hexdigest()[:16], "examples": info.n_examples,
            "x": [info.x_name, list(info.x_shape), str(info.x_dtype)], "y": info.y_name}


def _check_labels(y: np.ndarray, num_classes: int, path: str, start: int) -> None:
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if bad.size:
        raise UserError(f"{path}: label {int(y[bad[0]])} of example {start + int(bad[0])} is out "
                        f"of range for an output with {num_classes} classes (0..{num_classes - 1})")


def _device_info(comm: Communicator, backend: str) -> dict:
    import os
    return {"rank": comm.rank, "host": socket.gethostname(), "backend": backend,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def _versions() -> dict:
    import importlib.metadata as md
    versions = {"python": platform.python_version()}
    for name in ("numpy", "h5py", "mpi4py", "pygenn"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return versions
