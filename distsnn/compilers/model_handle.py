"""``compiled_net.genn_model``: mlGeNN's ``GeNNModel`` attribute, before and inside ``with``.

mlGeNN creates the pygenn ``GeNNModel`` in ``compile()``; distsnn creates it when ``with
compiled_net:`` loads the network, once the ranks have agreed on the network, the backend
(GPU selection must precede any CUDA context) and the base seed. Scripts written for mlGeNN
set model attributes between the two, e.g. ``compiled_net.genn_model.timing_enabled = True``.
:class:`GeNNModelHandle` is a proxy for that: before loading it records the attributes set
on it and hands them to the model distsnn creates (``timing_enabled`` turns on kernel
profiling; they are part of the build key, so a changed setting rebuilds); once loaded,
every attribute and method is the real ``pygenn.GeNNModel``'s. Two methods take mlGeNN's
group name "Reset" for distsnn's per-batch reset groups ("ResetReadout", "ResetState"):
``custom_update("Reset")`` runs them and ``get_custom_update_time("Reset")`` is their sum.
This module does not import pygenn.
"""
from __future__ import annotations

from typing import Any

#: Model attributes the compiler decides, and the compiler argument that sets each.
COMPILER_OWNED = {"dt": "dt=... to the compiler", "batch_size": "batch_size=... to the compiler",
                  "seed": "rng_seed=... to the compiler", "name": "name=... to compile()"}


class GeNNModelHandle:
    """The compiled network's GeNN model: recorded settings until loaded, then the model."""

    def __init__(self, compiled) -> None:
        object.__setattr__(self, "_compiled", compiled)
        object.__setattr__(self, "_settings", {})

    @property
    def settings(self) -> dict:
        """Attributes set before loading (applied to the model when it is created)."""
        return dict(self._settings)

    @property
    def loaded(self) -> bool:
        return self._compiled._genn is not None

    def _model(self):
        genn = self._compiled._genn
        return None if genn is None else genn.genn_model

    def __getattr__(self, name: str) -> Any:
        model = self._model()
        if model is not None:
            return getattr(model, name)
        if name.startswith("__"):
            raise AttributeError(name)
        if name in self._settings:
            return self._settings[name]
        c = self._compiled.compiler
        before = {"timing_enabled": c.kernel_profiling, "batch_size": c.rank_batch_size,
                  "dt": c.dt}
        if name in before:
            return before[name]
        raise AttributeError(f"genn_model.{name} is available inside `with compiled_net:` "
                             f"(distsnn creates the GeNN model when it loads the network)")

    def __setattr__(self, name: str, value: Any) -> None:
        model = self._model()
        if model is not None:
            setattr(model, name, value)
            return
        if name in COMPILER_OWNED:
            raise ValueError(f"genn_model.{name} is set by the compiler: pass "
                             f"{COMPILER_OWNED[name]} instead")
        self._settings[name] = value

    def custom_update(self, name: str) -> None:
        """Run custom update group ``name`` ("Reset": distsnn's per-batch reset groups)."""
        self._compiled.custom_update(name)

    def get_custom_update_time(self, name: str) -> float:
        """Seconds spent in custom update group ``name`` ("Reset": the reset groups' sum)."""
        return self._compiled._require().custom_update_time(name)
