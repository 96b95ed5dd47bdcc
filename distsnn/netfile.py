"""Versioned HDF5 network files (h5py).

Layout::

    /                  attrs: format ("distsnn-network"), format_version, distsnn_version,
                              inputs, outputs (JSON lists of population names), metadata (JSON)
    /populations/<i>   attrs: name, kind, shape, record_spikes, params (JSON scalars);
                       datasets: array-valued neuron parameters
    /connections/<i>   attrs: name, kind, source, target, params (JSON scalars), synapse
                       (JSON, only when not delta);
                       datasets: array-valued connectivity parameters (weights)

Groups are numbered so the population and connection order survives a round trip. A
parameter an older file lacks takes its default (an integrate-and-fire ``v``: its ``v_reset``,
which is also left out when equal, so files of networks without new parameters read both ways).
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Union

import h5py
import numpy as np

from distsnn import __version__
from distsnn.connectivity import CONNECTIVITY_TYPES
from distsnn.errors import UserError
from distsnn.network import Connection, Network, Population
from distsnn.neurons import NEURON_TYPES
from distsnn.nir_neurons import NIRNeuron  # noqa: F401 - registers the NIR neuron kinds
from distsnn.synapses import synapse_from_params, synapse_params
from distsnn.utils.files import atomic_path

FORMAT_NAME = "distsnn-network"
FORMAT_VERSION = 2  # 2: per-neuron arrays that repeat per channel are stored once ("tile")
READABLE_VERSIONS = (1, 2)

Source = Union[str, Path, bytes]


class NetworkFileError(UserError, ValueError):
    """A network file cannot be read; the message names the file and the problem."""


def save_network(network: Network, path: Union[str, Path]) -> None:
    """Write ``network`` to an HDF5 file at ``path`` (whole or not at all: written beside it,
    then renamed)."""
    with atomic_path(Path(path), "network file") as tmp:
        tmp.write_bytes(network_to_bytes(network))


def network_to_bytes(network: Network) -> bytes:
    """The network file's bytes (for broadcasting to other ranks)."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["distsnn_version"] = __version__
        f.attrs["inputs"] = json.dumps([p.name for p in network.inputs])
        f.attrs["outputs"] = json.dumps([p.name for p in network.outputs])
        f.attrs["metadata"] = json.dumps(network.metadata, default=_json_default)
        pops = f.create_group("populations")
        for i, pop in enumerate(network.populations):
            g = pops.create_group(f"{i:05d}")
            g.attrs.update(name=pop.name, kind=pop.neuron.kind, shape=list(pop.shape),
                           record_spikes=pop.record_spikes)
            _write_params(g, pop.neuron.params(), pop.shape[-1])
        conns = f.create_group("connections")
        for i, conn in enumerate(network.connections):
            g = conns.create_group(f"{i:05d}")
            g.attrs.update(name=conn.name, kind=conn.connectivity.kind,
                           source=conn.source.name, target=conn.target.name)
            _write_params(g, conn.connectivity.params(), conn.source.shape[-1])
            if conn.synapse.kind != "delta":  # absent: delta (and files stay readable as before)
                g.attrs["synapse"] = json.dumps(synapse_params(conn.synapse))
    return buffer.getvalue()


def load_network(source: Source) -> Network:
    """Read a network from a file path or from the bytes of a network file."""
    label = "<network bytes>" if isinstance(source, bytes) else str(source)
    if not isinstance(source, bytes):
        if not Path(source).is_file():
            raise NetworkFileError(f"{label}: no such file")
        source = Path(source).read_bytes()
    try:
        f = h5py.File(io.BytesIO(source), "r")
    except OSError as err:
        raise NetworkFileError(f"{label}: not a readable HDF5 file (truncated or another "
                               f"format?): {err}") from None
    with f:
        try:
            return _read(f, label)
        except NetworkFileError:
            raise
        except KeyError as err:
            raise NetworkFileError(f"{label}: missing {err.args[0]}; the file is incomplete, "
                                   f"convert the model again") from None
        except (TypeError, ValueError) as err:  # JSONDecodeError is a ValueError
            raise NetworkFileError(f"{label}: invalid record ({err}); the file is damaged or "
                                   f"from another distsnn, convert the model again") from None


def _read(f: h5py.File, label: str) -> Network:
    if f.attrs.get("format") != FORMAT_NAME:
        raise NetworkFileError(f"{label}: not a distsnn network file (no format "
                               f"{FORMAT_NAME!r} attribute)")
    version = int(f.attrs["format_version"])
    if version not in READABLE_VERSIONS:
        raise NetworkFileError(f"{label}: network file format version {version} is not supported "
                               f"(this distsnn {__version__} reads versions "
                               f"{', '.join(map(str, READABLE_VERSIONS))}); "
                               f"convert the model again with this version")
    net = Network(metadata=json.loads(f.attrs["metadata"]))
    for key in sorted(f["populations"]):
        g = f["populations"][key]
        kind = str(g.attrs["kind"])
        if kind not in NEURON_TYPES:
            raise NetworkFileError(f"{label}: population {g.attrs['name']!r} has unknown neuron "
                                   f"kind {kind!r}")
        neuron = NEURON_TYPES[kind].from_params(_read_params(g))
        net.populations.append(Population(neuron, tuple(int(s) for s in g.attrs["shape"]),
                                          bool(g.attrs["record_spikes"]),
                                          name=str(g.attrs["name"]), add_to_model=False))
    by_name = {p.name: p for p in net.populations}
    for key in sorted(f["connections"]):
        g = f["connections"][key]
        kind = str(g.attrs["kind"])
        if kind not in CONNECTIVITY_TYPES:
            raise NetworkFileError(f"{label}: connection {g.attrs['name']!r} has unknown "
                                   f"connectivity kind {kind!r}")
        connectivity = CONNECTIVITY_TYPES[kind](**_read_params(g))
        source, target = by_name[str(g.attrs["source"])], by_name[str(g.attrs["target"])]
        synapse = synapse_from_params(json.loads(g.attrs.get("synapse", '{"kind": "delta"}')))
        net.connections.append(Connection(source, target, connectivity, synapse,
                                          name=str(g.attrs["name"]), add_to_model=False))
    net.inputs = [by_name[n] for n in json.loads(f.attrs["inputs"])]
    net.outputs = [by_name[n] for n in json.loads(f.attrs["outputs"])]
    return net


def _write_params(g: h5py.Group, params: dict, channels: int) -> None:
    """Scalars as JSON, arrays as datasets; a per-neuron vector that repeats every
    ``channels`` values (a per-channel bias or weight broadcast over an image) is stored once
    with a ``tile`` count."""
    scalars = {}
    for key, value in params.items():
        if isinstance(value, np.ndarray):
            tile = _channel_tile(value, channels)
            g.create_dataset(key, data=value[:channels] if tile > 1 else value)
            if tile > 1:
                g[key].attrs["tile"] = tile
        else:
            scalars[key] = value
    g.attrs["params"] = json.dumps(scalars, default=_json_default)
    g.attrs["array_params"] = json.dumps(sorted(k for k, v in params.items()
                                                if isinstance(v, np.ndarray)))


def _read_params(g: h5py.Group) -> dict:
    params = json.loads(g.attrs["params"])
    for key in json.loads(g.attrs["array_params"]):
        if key not in g:
            raise KeyError(f"dataset {g.name}/{key}")
        params[key] = np.tile(g[key][()], int(g[key].attrs.get("tile", 1)))
    return {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}


def _channel_tile(value: np.ndarray, channels: int) -> int:
    """How many times ``value`` repeats its first ``channels`` entries (1: it does not)."""
    n = value.size
    if value.ndim != 1 or channels < 1 or n <= channels or n % channels:
        return 1
    rows = value.reshape(-1, channels)
    return n // channels if np.array_equal(rows, np.broadcast_to(rows[0], rows.shape)) else 1


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a network file")
