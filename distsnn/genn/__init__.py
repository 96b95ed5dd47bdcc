"""GeNN lowering: the only part of distsnn that imports pygenn."""
from .builder import (BuildInfo, CompileOptions, GeNNNetwork, available_backends,
                      default_build_dir, pipeline_depths, resolve_backend)
from .synapse_cache import SynapseCache

__all__ = ["BuildInfo", "CompileOptions", "GeNNNetwork", "SynapseCache", "available_backends",
           "default_build_dir", "pipeline_depths", "resolve_backend"]
