"""distsnn: evaluate spiking networks converted from Keras ANNs on many GPUs or CPU cores.

The public names are importable from here (loaded on first use, so ``import distsnn`` stays
light): the mlGeNN-style compilers, converters, communicators, callbacks and metrics, and
the network description with its HDF5 file format.
"""
from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "InferenceCompiler": "compilers", "FewSpikeCompiler": "compilers",
    "CompiledInferenceNetwork": "compilers", "CompiledFewSpikeNetwork": "compilers",
    "Simple": "convert", "DataNorm": "convert", "FewSpike": "convert", "InputType": "convert",
    "Converter": "convert", "spike_normalise": "spike_norm",
    "MPI": "parallel.communicator", "SerialCommunicator": "parallel.communicator",
    "Communicator": "parallel.communicator",
    "BatchProgressBar": "callbacks", "SpikeRecorder": "callbacks", "VarRecorder": "callbacks",
    "CustomHook": "callbacks", "Callback": "callbacks", "Checkpoint": "callbacks",
    "CustomUpdateOnBatchBegin": "callbacks", "CustomUpdateOnBatchEnd": "callbacks",
    "CustomUpdateOnTimestepBegin": "callbacks", "CustomUpdateOnTimestepEnd": "callbacks",
    "SparseCategoricalAccuracy": "metrics", "TopKAccuracy": "metrics",
    "MeanSquareError": "metrics", "ConfusionMatrix": "metrics",
    "Network": "network", "Population": "network", "Connection": "network",
    "SequentialNetwork": "network", "InputLayer": "network", "Layer": "network",
    "load_network": "netfile", "save_network": "netfile",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"distsnn.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'distsnn' has no attribute {name!r}")
