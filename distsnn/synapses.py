"""Synapse models (mlGeNN's ``ml_genn.synapses``): how a spike's weight reaches the target.

Both start every example with no input current, so examples stay independent.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from math import exp
from typing import ClassVar, Union


@dataclass(frozen=True)
class Delta:
    """Each spike adds its weight to the target's input of the next step (the default,
    ``synapse="delta"``)."""

    kind: ClassVar[str] = "delta"


@dataclass(frozen=True)
class Exponential:
    """Each spike adds its weight to a current ``I`` that the target receives every step and
    that then decays, ``I *= exp(-dt / tau)`` (mlGeNN's ``Exponential``); with ``scale_i`` the
    injected current is ``I * (tau / dt) * (1 - exp(-dt / tau))``."""

    kind: ClassVar[str] = "exponential"
    tau: float = 5.0
    scale_i: bool = False

    def __post_init__(self):
        if not float(self.tau) > 0:
            raise ValueError(f"Exponential synapse: tau must be a positive time [ms], not "
                             f"{self.tau!r}")

    def decay(self, dt: float) -> float:
        return exp(-dt / self.tau)

    def current_scale(self, dt: float) -> float:
        return (self.tau / dt) * (1.0 - self.decay(dt)) if self.scale_i else 1.0


Synapse = Union[Delta, Exponential]
SYNAPSE_TYPES: dict[str, type] = {"delta": Delta, "exponential": Exponential}


def make_synapse(spec, owner: str = "connection") -> Synapse:
    """A synapse from an object or a name (``"delta"``, ``"exponential"``)."""
    if isinstance(spec, (Delta, Exponential)):
        return spec
    if isinstance(spec, str) and spec in SYNAPSE_TYPES:
        return SYNAPSE_TYPES[spec]()
    raise ValueError(f"{owner}: synapse must be \"delta\", \"exponential\", Delta() or "
                     f"Exponential(tau), not {spec!r}")


def synapse_params(synapse: Synapse) -> dict:
    """``{"kind": ..., **parameters}`` (what the network file stores)."""
    return {"kind": synapse.kind, **asdict(synapse)}


def synapse_from_params(params: dict) -> Synapse:
    params = dict(params)
    return SYNAPSE_TYPES[params.pop("kind")](**params)
