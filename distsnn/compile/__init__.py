"""GeNN compilation: the only part of distsnn that imports pygenn."""
from .builder import (BuildInfo, CompileOptions, GeNNNetwork, available_backends,
                      default_build_dir, pipeline_depths, resolve_backend)

__all__ = ["BuildInfo", "CompileOptions", "GeNNNetwork", "available_backends",
           "default_build_dir", "pipeline_depths", "resolve_backend"]
