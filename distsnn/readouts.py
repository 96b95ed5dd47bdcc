"""mlGeNN's readouts (``from ml_genn.readouts import AvgVar`` ...), by name.

A readout object *is* its mlGeNN string name (``AvgVar() == "avg_var"``), so
``readout=AvgVar()`` and ``readout="avg_var"`` are the same everywhere, network files included.
What each readout accumulates lives in the GeNN lowering (``distsnn/genn/models.py``); all are
reset at the start of every example. ``<var>`` is the neuron's output variable ``V``:

* ``var``: its value after the last step;
* ``avg_var`` / ``sum_var``: the mean / sum over the steps so far of its value after
  integration, before threshold and reset;
* ``avg_var_exp_weight``: ``sum_n exp(-n / T) V_n`` over steps n of the example, divided by the
  number of steps so far (mlGeNN's weighting, with n counted from the example's start);
* ``max_var``: its maximum over the example (from the lowest float, not mlGeNN's 0);
* ``spike_count``: spikes emitted in the example;
* ``first_spike_time``: minus the time [ms, from the example's start] of the first spike, or
  float32's lowest value when there was none (so the argmax is the earliest neuron).
"""
from __future__ import annotations

from typing import ClassVar, Optional


class Readout(str):
    """Base class of the readouts; an instance equals its mlGeNN name."""

    name: ClassVar[str] = ""

    def __new__(cls) -> "Readout":
        if not cls.name:
            raise TypeError("Readout is abstract: use a readout such as AvgVar() or 'avg_var'")
        return super().__new__(cls, cls.name)

    def __getnewargs__(self) -> tuple:  # pickling and copying rebuild from the class alone
        return ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Var(Readout):
    """The output variable after the last step."""

    name = "var"


class AvgVar(Readout):
    """Mean of the output variable over the example's steps."""

    name = "avg_var"


class AvgVarExpWeight(Readout):
    """Mean of ``exp(-n / T)`` times the output variable over steps n (Nowotny et al. 2024)."""

    name = "avg_var_exp_weight"


class SumVar(Readout):
    """Sum of the output variable over the example's steps."""

    name = "sum_var"


class MaxVar(Readout):
    """Maximum of the output variable over the example's steps."""

    name = "max_var"


class SpikeCount(Readout):
    """Number of spikes emitted in the example."""

    name = "spike_count"


class FirstSpikeTime(Readout):
    """Minus the time of the first spike in the example (float32 lowest without one)."""

    name = "first_spike_time"


default_readouts: dict[str, type[Readout]] = {
    cls.name: cls for cls in (Var, AvgVar, AvgVarExpWeight, SumVar, MaxVar, SpikeCount,
                              FirstSpikeTime)}

#: Readouts divided by the number of steps simulated when read.
AVERAGED = ("avg_var", "avg_var_exp_weight", "avg_input")


def read_value(value, kind: str, steps: int):
    """A readout variable as the readout reports it after ``steps`` steps (averaging
    readouts divided by ``steps``, as mlGeNN scales them by 1/T)."""
    return value / steps if kind in AVERAGED else value


def readout_name(readout: Optional[str], owner: str = "neuron") -> Optional[str]:
    """The plain name of a readout given as a name or a :class:`Readout` (None stays None)."""
    if readout is None:
        return None
    if isinstance(readout, type) and issubclass(readout, Readout):
        readout = readout()
    if not isinstance(readout, str) or str(readout) not in default_readouts:
        raise ValueError(f"{owner}: unknown readout {readout!r}; use one of "
                         f"{sorted(default_readouts)} or the classes of distsnn.readouts")
    return str(readout)


__all__ = ["AvgVar", "AvgVarExpWeight", "FirstSpikeTime", "MaxVar", "Readout", "SpikeCount",
           "SumVar", "Var", "default_readouts", "readout_name"]
