"""GeNN code of the spiking max-pool (:class:`~distsnn.connectivity.MaxPool2D` into a
:class:`~distsnn.neurons.SpikingMax` population) and the rules its networks must follow.

Each source neuron counts its spikes of the current example (``Count`` of an
integrate-and-fire neuron; a max-pool's own count is its ``Max``). A presynaptic spike
delivered in step t carries the source's count at the end of step t-1 and the synapse adds
``g`` (1) to its pool neuron only when that count exceeds the pool neuron's ``Max``: a count
grows by one per spike, so this happens exactly in the steps in which the window's largest
count grows. The pool neuron then spikes once and increments ``Max``, whatever the number of
inputs that crossed together, so its spike count is at every step the window's largest count
one step earlier. Both variables are per batch lane; GeNN indexes the pre- and postsynaptic
variable references of the synapse code by batch.
"""
from __future__ import annotations

from pygenn import VarAccess, VarAccessMode, create_neuron_model, create_weight_update_model

from distsnn.connectivity import MaxPool2D
from distsnn.errors import UserError
from distsnn.genn.models import NeuronCode
from distsnn.network import Network, Population
from distsnn.neurons import IntegrateFire, SpikingMax

#: The synapse of a max-pool: count of the spiking source against the pool's held maximum.
MAX_POOL_SYNAPSE = create_weight_update_model(
    "max_pool_synapse", vars=[("g", "scalar", VarAccess.READ_ONLY)],
    pre_neuron_var_refs=[("CountPre", "unsigned int", VarAccessMode.READ_ONLY)],
    post_neuron_var_refs=[("MaxPost", "unsigned int", VarAccessMode.READ_ONLY)],
    pre_spike_syn_code="if (CountPre > MaxPost) {\n    addToPost(g);\n}")


class MaxPoolError(UserError, ValueError):
    """A max-pool connection that the GeNN lowering cannot build."""


def spiking_max(name: str) -> NeuronCode:
    """A pool neuron: spikes (and raises ``Max`` by one) in each step with a crossing input."""
    model = create_neuron_model(
        f"spiking_max_{name}",
        vars=[("Max", "unsigned int", VarAccess.READ_WRITE),
              ("SpikeTotal", "unsigned int", VarAccess.READ_WRITE)],
        threshold_condition_code="Isyn > 0.0",
        reset_code="Max++;\nSpikeTotal++;")
    return NeuronCode(model, {}, {"Max": 0, "SpikeTotal": 0}, {"Max": 0})


def count_var(pop: Population) -> str:
    """The variable that holds a max-pool source's spike count in the current example."""
    return "Max" if isinstance(pop.neuron, SpikingMax) else "Count"


def counted_sources(network: Network) -> set[str]:
    """Check every max-pool connection; the integrate-and-fire populations that feed one."""
    counted = set()
    for conn in network.connections:
        is_pool = isinstance(conn.connectivity, MaxPool2D)
        if isinstance(conn.target.neuron, SpikingMax) != is_pool:
            raise MaxPoolError(f"connection {conn.name!r}: a MaxPool2D connection must target a "
                               f"SpikingMax population, and a SpikingMax population takes "
                               f"MaxPool2D connections only")
        if not is_pool:
            continue
        if len(network.incoming(conn.target)) != 1:
            raise MaxPoolError(f"population {conn.target.name!r}: a SpikingMax population takes "
                               f"exactly one MaxPool2D connection")
        if int(conn.connectivity.delay) or conn.synapse.kind != "delta":
            raise MaxPoolError(f"connection {conn.name!r}: a MaxPool2D connection takes no delay "
                               f"and a delta synapse")
        source = conn.source.neuron
        if not isinstance(source, (IntegrateFire, SpikingMax)):
            raise MaxPoolError(f"connection {conn.name!r}: a MaxPool2D connection must come from "
                               f"an IntegrateFire or SpikingMax population, not "
                               f"{type(source).__name__}")
        if isinstance(source, IntegrateFire):
            counted.add(conn.source.name)
    return counted


def weight_update(conn_source: Population) -> tuple:
    """Weight update model and pre/postsynaptic variable references of a max-pool."""
    return MAX_POOL_SYNAPSE, {"CountPre": count_var(conn_source)}, {"MaxPost": "Max"}
