"""mlGeNN-style inference API, distributed by passing a communicator.

Port an mlGeNN inference script by changing its imports; pass ``communicator=MPI()`` and
run it under ``mpiexec -n N``: each rank then evaluates its contiguous shard of ``x``/``y``
and every rank gets the global metrics, predictions and recordings. Importing this package
imports neither pygenn nor mpi4py: GeNN is built and loaded on ``with compiled_net:``.
"""
from distsnn.compilers.compiled_network import CompiledFewSpikeNetwork, CompiledInferenceNetwork
from distsnn.compilers.compiler import FewSpikeCompiler, InferenceCompiler, draw_seed
from distsnn.compilers.report import EvaluationReport, MetricsResult

__all__ = ["CompiledFewSpikeNetwork", "CompiledInferenceNetwork", "EvaluationReport",
           "FewSpikeCompiler", "InferenceCompiler", "MetricsResult", "draw_seed"]
