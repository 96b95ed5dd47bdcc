"""Where the network of a job comes from: a network file, or a Keras or ONNX model that rank 0
converts (only rank 0 imports Keras, onnx or onnxruntime), broadcast as the file's bytes.
Spike-norm's threshold search then runs on every rank."""
from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import h5py

from distsnn.data.files import inspect_dataset, read_shard
from distsnn.data.inputs import as_network_input
from distsnn.errors import UserError
from distsnn.netfile import FORMAT_NAME, load_network, network_to_bytes
from distsnn.network import Network
from distsnn.parallel.agreement import agree, on_root
from distsnn.parallel.communicator import Communicator
from distsnn.parallel.sharding import shard_bounds
from distsnn.utils.timings import Timings


@dataclass
class ConversionOptions:
    """How to convert a Keras or ONNX model (ignored for a network file)."""

    method: str = "few-spike"
    norm_data: Optional[str] = None
    timesteps: int = 500
    k: int = 8
    rounding: str = "floor"
    headroom: float = 1.0
    input_type: str = "poisson"
    signed_input: bool = False
    percentile: float = 100.0
    reset: str = "subtract"
    readout: str = "spikes"
    norm_x_name: str = "x"
    seed: int = 1
    build_dir: Optional[str] = None
    #: NIR graphs: the source preset and its overrides (``make_preset``'s keywords) and the
    #: readout of non-spiking outputs
    nir: dict = field(default_factory=dict)


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
    meanwhile, leaving their cores to rank 0. ``timings`` gets ``conversion_wait`` (rank 0:
    reading or converting; the others: waiting for it), ``broadcast`` (the bytes, then
    parsing them) and the bytes read from the file (rank 0) or received (the others).
    """
    def rank0() -> bytes:
        try:
            return _read_or_convert(path, options, timings)
        finally:
            comm.sleeping_barrier()  # wakes the others

    with timings.measure("conversion_wait"):  # rank 0: reading or converting
        if comm.rank != 0:
            comm.sleeping_barrier()
        data = on_root(comm, rank0, broadcast=False)
    with timings.measure("broadcast"):
        data = comm.broadcast_bytes(data)
        if comm.rank != 0:
            timings.bytes["network_received"] = len(data)
        network = load_network(data)
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
        data = Path(path).read_bytes()
        timings.bytes["network_file_read"] = len(data)
        return data
    if Path(path).suffix.lower() == ".nir":
        from distsnn.convert.nir_frontend import convert_nir_file  # rank 0 alone
        with timings.measure("conversion"):
            return network_to_bytes(convert_nir_file(path, **options.nir))
    from distsnn.convert.api import convert_file, import_keras_lean  # rank 0 alone
    from distsnn.convert.frontends import is_onnx
    with timings.measure("conversion"):
        if not is_onnx(path) and import_keras_lean():
            gc.freeze()  # TensorFlow's objects: left out of later collections and the exit's (1 s)
        net = convert_file(path, options.method, norm_data=options.norm_data,
                           timesteps=options.timesteps, k=options.k, rounding=options.rounding,
                           headroom=options.headroom,
                           input_type=options.input_type, signed_input=options.signed_input,
                           percentile=options.percentile, reset=options.reset,
                           x_name=options.norm_x_name, readout=options.readout)
    return network_to_bytes(net)


def spike_norm_search(network: Network, options: ConversionOptions, comm: Communicator) -> None:
    """Run the distributed spike-norm search with each rank's shard of the norm data."""
    from distsnn.spike_norm import spike_normalise
    if options.norm_data is None:
        raise UserError("--method spike-norm needs --norm-data FILE (a slice of the training set)")
    info = on_root(comm, lambda: inspect_dataset(options.norm_data, options.norm_x_name, None))
    start, stop = agree(comm, lambda: shard_bounds(info.n_examples, comm.rank, comm.size))
    x, _ = agree(comm, lambda: read_shard(options.norm_data, start, stop, options.norm_x_name,
                                          None))
    x = as_network_input(x, network, options.norm_data, options.norm_x_name)
    spike_normalise(network, norm_data=x, evaluate_timesteps=options.timesteps,
                    rng_seed=options.seed, communicator=comm, sharded=True,
                    percentile=options.percentile, build_dir=options.build_dir)
    network.metadata["spike_norm"]["norm_examples"] = info.n_examples
