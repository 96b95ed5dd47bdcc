"""The network IR: populations and connections, independent of Keras and GeNN."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .connectivity import Connectivity, Shape
from .neurons import Neuron


@dataclass(eq=False)
class Population:
    """A group of neurons of one kind with a (channels-last) shape."""

    name: str
    shape: Shape
    neuron: Neuron
    record_spikes: bool = False

    def __post_init__(self):
        self.shape = tuple(int(s) for s in np.atleast_1d(self.shape))

    @property
    def size(self) -> int:
        return math.prod(self.shape)  # on the per-batch hot path: much cheaper than np.prod

    def __repr__(self) -> str:
        return f"Population({self.name!r}, shape={self.shape}, {type(self.neuron).__name__})"


@dataclass(eq=False)
class Connection:
    """Synapses from ``source`` to ``target`` described by a connectivity."""

    name: str
    source: Population
    target: Population
    connectivity: Connectivity

    def __repr__(self) -> str:
        return (f"Connection({self.name!r}, {self.source.name} -> {self.target.name}, "
                f"{type(self.connectivity).__name__})")


@dataclass(eq=False)
class Network:
    """Populations and connections, plus which populations are inputs and outputs.

    ``metadata`` records how the network was made (conversion method and its parameters,
    source model hash, ...) and travels with the network file.
    """

    populations: list[Population] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    inputs: list[Population] = field(default_factory=list)
    outputs: list[Population] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def add_population(self, name: str, shape: Shape, neuron: Neuron, *,
                       record_spikes: bool = False) -> Population:
        if any(p.name == name for p in self.populations):
            raise ValueError(f"population name {name!r} is already used")
        pop = Population(name, shape, neuron, record_spikes)
        self.populations.append(pop)
        if neuron.is_input:
            self.inputs.append(pop)
        return pop

    def connect(self, source: Population, target: Population, connectivity: Connectivity,
                name: Optional[str] = None) -> Connection:
        """Add a connection after checking that its geometry fits both populations."""
        base = name = name or f"{source.name}_to_{target.name}"
        used = {c.name for c in self.connections}
        suffix = len(self.connections)
        while name in used:
            name, suffix = f"{base}_{suffix}", suffix + 1
        connectivity.check(source.shape, target.shape)
        conn = Connection(name, source, target, connectivity)
        self.connections.append(conn)
        return conn

    def population(self, name: str) -> Population:
        for pop in self.populations:
            if pop.name == name:
                return pop
        raise KeyError(f"no population named {name!r}; populations are "
                       f"{[p.name for p in self.populations]}")

    def incoming(self, pop: Population) -> list[Connection]:
        return [c for c in self.connections if c.target is pop]

    def outgoing(self, pop: Population) -> list[Connection]:
        return [c for c in self.connections if c.source is pop]

    def topological_order(self) -> list[Population]:
        """Populations ordered so every source comes before its targets (Kahn's algorithm)."""
        indegree = {id(p): 0 for p in self.populations}
        for c in self.connections:
            indegree[id(c.target)] += 1
        ready = [p for p in self.populations if indegree[id(p)] == 0]
        order: list[Population] = []
        while ready:
            pop = ready.pop(0)
            order.append(pop)
            for c in self.outgoing(pop):
                indegree[id(c.target)] -= 1
                if indegree[id(c.target)] == 0:
                    ready.append(c.target)
        if len(order) != len(self.populations):
            raise ValueError("the network has a cycle; only feed-forward networks are supported")
        return order

    def content_hash(self) -> str:
        """SHA-256 over structure, parameters and weights: equal hash, equal network."""
        digest = hashlib.sha256()
        for pop in self.populations:
            _hash_item(digest, ["pop", pop.name, pop.shape, pop.neuron.kind, pop.record_spikes])
            _hash_params(digest, pop.neuron.params())
        for conn in self.connections:
            _hash_item(digest, ["conn", conn.name, conn.source.name, conn.target.name,
                                conn.connectivity.kind])
            _hash_params(digest, conn.connectivity.params())
        _hash_item(digest, [[p.name for p in self.inputs], [p.name for p in self.outputs]])
        return digest.hexdigest()


def connectivity_hash(conn: Connection) -> str:
    """SHA-256 of a connection's connectivity (kind, parameters, weights) and source shape."""
    digest = hashlib.sha256()
    _hash_item(digest, [conn.connectivity.kind, conn.source.shape])
    _hash_params(digest, conn.connectivity.params())
    return digest.hexdigest()


def _hash_default(value):
    if isinstance(value, np.generic):
        return value.item()  # as the network file stores it
    return str(value)


def _hash_item(digest, item) -> None:
    digest.update(json.dumps(item, default=_hash_default).encode())


def _hash_params(digest, params: dict) -> None:
    for key in sorted(params):
        value = params[key]
        if isinstance(value, np.ndarray):
            digest.update(key.encode())
            digest.update(str(value.shape).encode())
            digest.update(np.ascontiguousarray(value, np.float32).tobytes())
        else:
            _hash_item(digest, [key, value])
