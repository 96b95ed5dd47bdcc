"""Conversion of trained Keras or ONNX models to distsnn networks (mlGeNN-compatible API),
and of NIR graphs of spiking networks (:func:`convert_nir`).

The only part of distsnn that imports TensorFlow/Keras, onnx/onnxruntime or nir; it does so
when a converter first meets such a model, so ``import distsnn.convert`` itself is cheap::

    from distsnn.convert import DataNorm
    net, inputs, outputs, layer_pops = DataNorm(500, norm_data=x_train[:256]).convert(model)
    net, *_ = FewSpike(k=8, norm_data=x_train[:256]).convert("model.onnx")  # e.g. from PyTorch
"""
from __future__ import annotations

import importlib
from typing import Any

from distsnn.convert.enums import InputType, Readout
from distsnn.convert.errors import ConversionError, ModelFileError, NormDataError

_LAZY = {
    "Converter": ".converters", "Simple": ".converters", "DataNorm": ".converters",
    "FewSpike": ".converters", "QCFSConverter": ".qcfs", "DataNormOutput": ".converters",
    "FewSpikeOutput": ".converters",
    "convert_file": ".api", "METHODS": ".api",
    "build_graph": ".graph", "ConversionGraph": ".plan", "PopulationSpec": ".plan",
    "LayerInfo": ".plan", "NormData": ".norm", "load_model": ".model_io",
    "open_model": ".frontends", "convert_nir": ".nir_frontend", "make_preset": ".nir_presets",
}

__all__ = ["InputType", "Readout", "ConversionError", "ModelFileError", "NormDataError",
           "spike_normalise", *_LAZY]


def __getattr__(name: str) -> Any:
    if name == "spike_normalise":
        from distsnn.spike_norm import spike_normalise

        return spike_normalise
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
