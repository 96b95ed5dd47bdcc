"""The network IR: populations and connections, independent of Keras and GeNN.

Networks are built with distsnn's calls (``net.add_population(name, shape, neuron)``,
``net.connect(source, target, connectivity)``) or by hand as in mlGeNN, with only the imports
changed::

    network = SequentialNetwork()
    with network:
        inp = InputLayer(BinarySpikeInput(), 10)
        out = Layer(Dense(1.0), IntegrateFire(readout="var"), 5)

    with Network() as net:
        a = Population("poisson_input", 10)
        b = Population(IntegrateFire(), 5)
        Connection(a, b, Dense(weights))

As in mlGeNN, neuron and connectivity objects are shallow-copied into each population and
connection (so one object can serve several), a target without a shape gets the
connectivity's output shape, and populations, connections and layers can be called
(``conn.target()``, ``layer.population()``), which returns the object itself.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from itertools import count
from typing import Any, ClassVar, Optional, Sequence, Union

import numpy as np

from distsnn.connectivity import Connectivity, Shape
from distsnn.neurons import NEURON_TYPES, Neuron
from distsnn.synapses import Synapse, make_synapse, synapse_params

ShapeLike = Union[None, int, Sequence[int]]
NeuronLike = Union[Neuron, str]

_POPULATION_IDS = count()


def neuron_from_name(name: str) -> Neuron:
    """A default-constructed neuron from its mlGeNN name, e.g. ``"integrate_fire"``."""
    names = {re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower(): cls
             for cls in NEURON_TYPES.values()}
    if name not in names:
        raise ValueError(f"unknown neuron {name!r}; use one of {sorted(names)} or a neuron object")
    return names[name]()


class Population:
    """A group of neurons of one kind with a (channels-last) shape.

    ``Population(neuron, shape=None, record_spikes=False, name=None, add_to_model=True)`` as
    in mlGeNN: created inside ``with network:`` it is added to that network. ``neuron`` is a
    neuron object (copied) or its name; ``shape`` an int, a sequence or None (set when a
    connection reaches it); the default name is ``Pop<n>``.
    """

    def __init__(self, neuron: NeuronLike, shape: ShapeLike = None, record_spikes: bool = False,
                 name: Optional[str] = None, add_to_model: bool = True):
        if isinstance(neuron, str):
            neuron = neuron_from_name(neuron)
        elif not isinstance(neuron, Neuron):
            raise TypeError(f"a population's neuron must be a distsnn neuron or its name, not "
                            f"{type(neuron).__name__}")
        self.neuron = copy.copy(neuron)
        self.shape = shape
        self.record_spikes = bool(record_spikes)
        self.name = f"Pop{next(_POPULATION_IDS)}" if name is None else str(name)
        self.incoming_connections: list[Connection] = []
        self.outgoing_connections: list[Connection] = []
        if add_to_model:
            Network.current("a Population")._add_population(self)

    @property
    def shape(self) -> Optional[Shape]:
        return self._shape

    @shape.setter
    def shape(self, shape: ShapeLike) -> None:
        self._shape = None if shape is None else tuple(int(s) for s in np.atleast_1d(shape))

    @property
    def size(self) -> int:
        if self._shape is None:
            raise ValueError(f"population {self.name!r} has no shape: give it one or connect "
                             f"a source to it")
        return math.prod(self._shape)  # on the per-batch hot path: much cheaper than np.prod

    def __call__(self) -> "Population":
        return self

    def __repr__(self) -> str:
        return f"Population({self.name!r}, shape={self.shape}, {type(self.neuron).__name__})"


class Connection:
    """Synapses from ``source`` to ``target`` described by a connectivity.

    ``Connection(source, target, connectivity, synapse="delta", name=None,
    max_delay_steps=None, add_to_model=True)`` as in mlGeNN: created inside ``with network:``
    it is added to that network. A target without a shape gets the connectivity's output
    shape; scalar weights are then expanded (``connectivity.resolve``) and the geometry
    checked against both shapes. ``synapse``: ``"delta"`` (default) or ``"exponential"`` /
    ``Exponential(tau, scale_i)`` (see :mod:`distsnn.synapses`).
    """

    def __init__(self, source: Population, target: Population, connectivity: Connectivity,
                 synapse: Union[str, Synapse] = "delta", name: Optional[str] = None,
                 max_delay_steps: Optional[int] = None, add_to_model: bool = True):
        self.name = name or f"{source.name}_to_{target.name}"
        synapse = make_synapse(synapse, f"connection {self.name!r}")
        if not isinstance(connectivity, Connectivity):
            raise TypeError(f"connection {self.name!r}: connectivity must be a distsnn "
                            f"connectivity (Dense, Conv2D, ...), not {type(connectivity).__name__}")
        if source.shape is None:
            raise ValueError(f"connection {self.name!r}: the source population {source.name!r} "
                             f"has no shape")
        connectivity = copy.copy(connectivity)
        if target.shape is None:
            target.shape = connectivity.target_shape(source.shape)
        connectivity.resolve(source.shape, target.shape)
        connectivity.check(source.shape, target.shape)
        self.source, self.target, self.connectivity = source, target, connectivity
        self.synapse = synapse
        self.max_delay_steps = max_delay_steps
        source.outgoing_connections.append(self)
        target.incoming_connections.append(self)
        if add_to_model:
            Network.current("a Connection")._add_connection(self)

    def __call__(self) -> "Connection":
        return self

    def __repr__(self) -> str:
        return (f"Connection({self.name!r}, {self.source.name} -> {self.target.name}, "
                f"{type(self.connectivity).__name__})")


@dataclass(eq=False)
class Network:
    """Populations and connections, plus which populations are inputs and outputs.

    ``metadata`` records how the network was made (conversion method and its parameters,
    source model hash, ...) and travels with the network file. ``with network:`` makes it
    the network that Populations and Connections created inside join.
    """

    populations: list[Population] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    inputs: list[Population] = field(default_factory=list)
    outputs: list[Population] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    #: Networks entered with ``with``, innermost last.
    _active: ClassVar[list["Network"]] = []

    def __enter__(self) -> "Network":
        Network._active.append(self)
        return self

    def __exit__(self, *exc) -> None:
        Network._active.pop()

    @staticmethod
    def current(what: str) -> "Network":
        """The innermost network entered with ``with``."""
        if not Network._active:
            raise RuntimeError(f"{what} must be created inside a `with network:` block (or "
                               f"added with network.add_population / network.connect)")
        return Network._active[-1]

    def add_population(self, name: str, shape: Shape, neuron: Neuron, *,
                       record_spikes: bool = False) -> Population:
        pop = Population(neuron, shape, record_spikes, name=name, add_to_model=False)
        self._add_population(pop)
        return pop

    def _add_population(self, pop: Population) -> None:
        if any(p.name == pop.name for p in self.populations):
            raise ValueError(f"population name {pop.name!r} is already used")
        self.populations.append(pop)
        if pop.neuron.is_input:
            self.inputs.append(pop)

    def connect(self, source: Population, target: Population, connectivity: Connectivity,
                name: Optional[str] = None) -> Connection:
        """Add a connection after checking that its geometry fits both populations."""
        conn = Connection(source, target, connectivity, name=name, add_to_model=False)
        self._add_connection(conn)
        return conn

    def _add_connection(self, conn: Connection) -> None:
        """Add ``conn``, renamed with a numeric suffix if its name is already used."""
        base = name = conn.name
        used = {c.name for c in self.connections}
        suffix = len(self.connections)
        while name in used:
            name, suffix = f"{base}_{suffix}", suffix + 1
        conn.name = name
        self.connections.append(conn)

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
            if conn.synapse.kind != "delta":  # delta networks keep their earlier hashes
                _hash_item(digest, ["synapse", synapse_params(conn.synapse)])
        _hash_item(digest, [[p.name for p in self.inputs], [p.name for p in self.outputs]])
        return digest.hexdigest()


class SequentialNetwork(Network):
    """A feed-forward chain of layers (mlGeNN's ``SequentialNetwork``): each
    :class:`Layer` created inside ``with network:`` connects from the previous one. Its
    inputs default to its InputLayer and its outputs to its last Layer."""

    def __init__(self, metadata: Optional[dict[str, Any]] = None):
        super().__init__(metadata=dict(metadata or {}))
        self.layers: list[Union[InputLayer, Layer]] = []

    @staticmethod
    def current(what: str) -> "SequentialNetwork":
        network = Network.current(what)
        if not isinstance(network, SequentialNetwork):
            raise RuntimeError(f"{what} must be created inside a `with sequential_network:` "
                               f"block, not inside a plain Network")
        return network


class _LayerBase:
    """A layer compares and hashes as its population, so the dicts of populations that
    evaluate and predict return (metrics, predictions) can be read with the layer."""

    population: Population

    def __eq__(self, other) -> bool:
        return other is self or other is self.population

    def __hash__(self) -> int:
        return hash(self.population)

    @property
    def name(self) -> str:
        return self.population.name


class InputLayer(_LayerBase):
    """The input layer of a :class:`SequentialNetwork` (mlGeNN's ``InputLayer``);
    ``.population`` is its :class:`Population`."""

    def __init__(self, neuron: NeuronLike, shape: ShapeLike = None, record_spikes: bool = False,
                 name: Optional[str] = None):
        network = SequentialNetwork.current("an InputLayer")
        self.population = Population(neuron, shape, record_spikes, name, add_to_model=False)
        if not self.population.neuron.is_input:
            raise ValueError(f"InputLayer {self.population.name!r}: "
                             f"{type(self.population.neuron).__name__} is not an input neuron; "
                             f"use BinarySpikeInput, PoissonInput, IntegrateFireInput, ...")
        network._add_population(self.population)
        network.layers.append(self)


class Layer(_LayerBase):
    """A layer of a :class:`SequentialNetwork` connected from the previous layer
    (mlGeNN's ``Layer``); ``.population`` is its :class:`Population` and ``.connection``
    its incoming :class:`Connection` (None for a first layer)."""

    def __init__(self, connectivity: Connectivity, neuron: NeuronLike, shape: ShapeLike = None,
                 synapse: Union[str, Synapse] = "delta", record_spikes: bool = False,
                 name: Optional[str] = None):
        network = SequentialNetwork.current("a Layer")
        self.population = Population(neuron, shape, record_spikes, name, add_to_model=False)
        self.connection: Optional[Connection] = None
        if network.layers:
            self.connection = Connection(network.layers[-1].population, self.population,
                                         connectivity, synapse, add_to_model=False)
        network._add_population(self.population)
        if self.connection is not None:
            network._add_connection(self.connection)
        network.layers.append(self)
        network.outputs = [self.population]


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
