"""The evaluation of a dataset on every rank (what ``distsnn evaluate`` runs once the network
is there, see :mod:`distsnn.jobs.network_source`): each rank streams its own contiguous shard
of a dataset file or image folder through the compiled network in journaled chunks
(:mod:`distsnn.jobs.stream`); the counts are all-reduced and returned as the results record.
"""
from __future__ import annotations

import hashlib
import os
import platform
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from distsnn import __version__
from distsnn.compilers import FewSpikeCompiler, InferenceCompiler
from distsnn.data.events import (
    check_raster_dtype,
    inspect_events,
    is_raster_network,
    iter_event_rows,
    raster_to_network,
    source_shape,
)
from distsnn.data.files import inspect_dataset, iter_rows
from distsnn.data.inputs import InputScaling, check_channels, check_dtype, check_input_shape
from distsnn.errors import UserError
from distsnn.jobs.predictions import gather_predictions, write_predictions
from distsnn.jobs.stream import JobOptions, evaluate_job
from distsnn.network import Network
from distsnn.neurons import FewSpikeReluInput, SpikeInput
from distsnn.parallel.agreement import agree, on_root
from distsnn.parallel.communicator import Communicator
from distsnn.parallel.sharding import shard_bounds
from distsnn.utils.timings import Timings
from distsnn.utils.versions import installed_version

#: Points of the accuracy-vs-time curve read out in every rate-coded evaluation (every 2 %).
CURVE_POINTS = 50


@dataclass
class EvaluateOptions:
    """What ``distsnn evaluate`` asks of one evaluation of a dataset (conversion apart)."""

    data: str
    timesteps: list[int] = field(default_factory=lambda: [500])
    x_name: str = "x"
    y_name: str = "y"
    batch_size: int = 1
    backend: str = "auto"
    seed: int = 1
    build_dir: Optional[str] = None
    connectivity: str = "auto"
    memory_budget: Optional[str] = None
    top_k: int = 5
    progress: bool = True
    #: event lists (NIR networks): frame length in the events' time unit, number of frames
    frame_length: Optional[float] = None
    frames: Optional[int] = None
    #: where to write each example's predicted classes and readouts (.npz or .csv; see
    #: :mod:`distsnn.jobs.predictions`), or None
    predictions: Optional[str] = None
    job: JobOptions = field(default_factory=JobOptions)


def evaluate_file(network: Network, options: EvaluateOptions, comm: Communicator,
                  timings: Timings) -> dict:
    """Evaluate ``network`` on a dataset file or image folder, every rank streaming its own
    examples in chunks (see :mod:`distsnn.jobs.stream` for the journal and resuming)."""
    from distsnn.callbacks import BatchProgressBar
    o, job, data, timesteps = options, options.job, options.data, options.timesteps
    if len(network.inputs) != 1 or len(network.outputs) != 1:
        raise UserError("the command line evaluates networks with one input and one output; "
                        "use the library API for more")
    inp, out = network.inputs[0], network.outputs[0]
    if isinstance(inp.neuron, SpikeInput):
        raise UserError(f"input population {inp.name!r} is a SpikeInput, whose examples are "
                        f"spike trains: evaluate it with the library API and a list of "
                        f"distsnn.utils.data.PreprocessedSpikes")
    if o.frame_length is not None:  # event lists, binned into rasters chunk by chunk
        info = on_root(comm, lambda: _check_events(data, network, o))
        identity = on_root(comm, lambda: {**_dataset_identity(info), "frame": info.frame})
        read = lambda ranges, chunk: iter_event_rows(info, ranges, chunk)  # noqa: E731
    elif Path(data).is_dir():  # an image folder: rank 0 lists it, each rank decodes its shard
        folder, info, identity = on_root(comm, lambda: _scan_images(data, network, job))
        read = folder.iter_rows
    else:
        info = on_root(comm, lambda: _check_dataset(data, o.x_name, o.y_name, network,
                                                   job.scaling))
        identity = on_root(comm, lambda: _dataset_identity(info))
        read = lambda ranges, chunk: iter_rows(data, ranges, chunk, o.x_name, o.y_name, True)  # noqa: E731
    agree(comm, lambda: shard_bounds(info.n_examples, comm.rank, comm.size))
    if is_raster_network(network):  # a NIR network: the raster's T steps plus its depth
        timesteps = raster_timesteps(network, info.x_shape[0], timesteps)
    num_classes = out.size
    few_spike = isinstance(inp.neuron, FewSpikeReluInput)
    metrics = ["sparse_categorical_accuracy", f"top_{min(o.top_k, num_classes)}_accuracy",
               "confusion_matrix"]
    common = dict(batch_size=o.batch_size * comm.size, rng_seed=o.seed, communicator=comm,
                  backend=o.backend, build_dir=o.build_dir, connectivity=o.connectivity,
                  memory_budget=o.memory_budget)
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
        built = compiled.build_info
        timings.add("build", built.build_s, built.build_cpu_s)  # or the node's build's wait
        timings.add("load", built.load_s, built.load_cpu_s)
        with timings.measure("ready_wait"):  # for the slowest rank to load
            comm.barrier()
        callbacks = [BatchProgressBar()] if o.progress else []
        readouts = [inp.neuron.k] if few_spike else sorted(set(timesteps))
        if o.predictions is not None:  # a journal without them cannot complete the file
            job.record = readouts
            job.fingerprint = {**job.fingerprint, "predictions": readouts}
        job.fingerprint = {**job.fingerprint, "network": network.content_hash(),
                           "dataset": identity, "seed": compiled.base_seed,
                           "schedule": ["few-spike", inp.neuron.k] if few_spike
                           else ["rate", sorted(set(timesteps))], "metrics": metrics,
                           "inputs": job.scaling.describe()}
        outcome = evaluate_job(
            compiled, read, info.n_examples, f"{data}",
            lambda y, first: _check_labels(y, num_classes, data, first),
            metrics, callbacks, comm, job, timings)
        report = compiled.last_report
        if report.first_batch is not None:
            timings.add("first_batch", *report.first_batch)
        timings.add("evaluation", report.seconds, report.cpu_seconds)
        timings.add("reduction", report.reduce_seconds, report.reduce_cpu_seconds)
        with timings.measure("gather"):
            devices = comm.gather_object(_device_info(comm, compiled.backend))
            build_reused = comm.gather_object(compiled.build_info.reused)
    finally:
        compiled.__exit__(None, None, None)
    slowest = comm.allreduce_max(np.array([report.seconds]))[0]
    if o.predictions is not None:
        with timings.measure("predictions"):
            rows = gather_predictions(outcome.predictions, info.n_examples, len(readouts),
                                      num_classes, comm)
            if rows is not None:
                write_predictions(Path(o.predictions), rows, readouts)
    by_rank = comm.gather_object(timings.rank_record(comm.rank, socket.gethostname()))
    return {
        "distsnn_version": __version__,
        "network": {"hash": network.content_hash(), "metadata": network.metadata,
                    "input": {"name": inp.name, "shape": list(inp.shape)},
                    "output": {"name": out.name, "shape": list(out.shape)},
                    "neurons": sum(p.size for p in network.populations)},
        "dataset": {"path": str(data), "examples": info.n_examples, "x_name": o.x_name,
                    "y_name": o.y_name},
        "schedule": ({"mode": "few-spike", "k": inp.neuron.k} if few_spike else
                     {"mode": "rate", "timesteps": sorted(set(timesteps))}),
        "ranks": comm.size, "batch_size_per_rank": o.batch_size, "backend": compiled.backend,
        "devices": devices,
        "seeds": {"base": compiled.base_seed,
                  "poisson_streams": "hash(base seed, global example index, neuron, step)"},
        "build_reused": build_reused,
        "metrics": {str(c): m[out.name] for c, m in sorted(report.metrics.items())
                    if few_spike or c in timesteps},
        "accuracy_curve": _accuracy_curve(report.metrics, out.name),
        "spikes": report.spikes,
        "timings_s": dict(timings.values),
        "timings_by_rank": by_rank,
        "examples_per_second": ((report.examples - outcome.resumed_examples) / slowest
                                if slowest else None),
        "journal": {"path": None if job.journal is None else str(job.journal),
                    "resumed_examples": outcome.resumed_examples},
        "predictions": None if o.predictions is None else {"path": str(o.predictions),
                                                           "timesteps": readouts},
        "versions": _versions(comm),
    }




def raster_timesteps(network: Network, frames: int, readouts: list[int]) -> list[int]:
    """Readout steps of a raster of ``frames`` steps: the given ones that lie within it
    (always its end), each after the network's depth."""
    span = int(network.metadata["nir"]["span"])
    return [t + span for t in sorted({min(int(t), frames) for t in readouts} | {frames})]


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
    if is_raster_network(network):
        raster_to_network(np.zeros((0,) + tuple(info.x_shape)), network, f"{path}[{x_name}]")
        check_raster_dtype(info.x_dtype, f"{path}[{x_name}]")
        return info
    check_input_shape(tuple(info.x_shape), network, path, x_name)
    check_dtype(info.x_dtype, scaling, f"{path}[{info.x_name}]")
    check_channels(scaling.mean, network.inputs[0].shape, "--mean")  # in the network's layout
    check_channels(scaling.std, network.inputs[0].shape, "--std")
    return info


def _check_events(path: str, network: Network, o: EvaluateOptions):
    shape = source_shape(network)
    if not is_raster_network(network) or len(shape) != 3:
        raise UserError(f"--frame-length bins event lists into frames of a NIR network whose "
                        f"input is (channels, height, width); this network's input is {shape}")
    return inspect_events(path, shape, o.frame_length, o.frames)


def _scan_images(path: str, network: Network, job: JobOptions):
    from distsnn.data.images import ImageFolder
    folder = ImageFolder.scan(path, network.inputs[0].shape[-1], **job.images)
    info = folder.info()
    check_input_shape(tuple(info.x_shape), network, path, "images")
    check_dtype(info.x_dtype, job.scaling, path)
    return folder, info, {"images": folder.identity(), "examples": info.n_examples,
                          "x": list(info.x_shape)}


def _dataset_identity(info) -> dict:
    """What identifies a dataset for a journal: size, shape and a hash of its first and last
    MiB (so a copy elsewhere, e.g. on node-local disk, is the same dataset)."""
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
    return {"rank": comm.rank, "host": socket.gethostname(), "backend": backend,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def _versions(comm: Communicator) -> dict:
    return {"python": platform.python_version(),
            **{name: installed_version(name) for name in ("numpy", "h5py", "mpi4py", "pygenn")},
            "mpi_library": comm.library_version}
