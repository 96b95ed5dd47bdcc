"""Pick the front-end of a model: Keras (``.keras``/``.h5``, ``keras.Model``) or ONNX
(``.onnx``, ``onnx.ModelProto``). Neither framework is imported before it is needed."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from distsnn.convert.plan import Frontend


def is_onnx(model: Any) -> bool:
    """True for a path ending in ``.onnx`` or an ``onnx.ModelProto``."""
    if isinstance(model, (str, Path)):
        return Path(model).suffix.lower() == ".onnx"
    return type(model).__name__ == "ModelProto" and type(model).__module__.startswith("onnx")


def open_model(model: Any) -> Frontend:
    """The front-end of ``model`` (a path, a ``keras.Model`` or an ``onnx.ModelProto``)."""
    if isinstance(model, Frontend):
        return model
    if is_onnx(model):
        from distsnn.convert.onnx_frontend import OnnxFrontend

        return OnnxFrontend.load(model)
    from distsnn.convert.keras_frontend import KerasFrontend
    from distsnn.convert.model_io import load_model

    return KerasFrontend(load_model(model))
