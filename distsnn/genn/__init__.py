"""IR -> GeNN: the only part of distsnn that imports pygenn.

:mod:`distsnn.genn.lowering` decides how each connection is lowered and what it costs in
memory, without pygenn; the builder and models import pygenn, which this package does only
when one of its names below is first used (``import distsnn.genn`` itself stays light).
"""
from importlib import import_module
from typing import Any

_EXPORTS = {
    "BuildInfo": "builder", "CompileOptions": "builder", "GeNNNetwork": "builder",
    "available_backends": "backends", "default_build_dir": "builder",
    "pipeline_depths": "builder", "resolve_backend": "builder",
    "SynapseCache": "synapse_cache",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"distsnn.genn.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'distsnn.genn' has no attribute {name!r}")
