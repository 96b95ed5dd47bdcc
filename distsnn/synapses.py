"""Synapse models (mlGeNN's ``ml_genn.synapses``): distsnn simulates delta synapses only."""
from __future__ import annotations


class Delta:
    """Each spike adds its weight to the target's input of the next step (the default,
    ``synapse="delta"``)."""
