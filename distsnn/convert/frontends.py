"""Pick the front-end of a model: Keras (``.keras``/``.h5``, ``keras.Model``) or ONNX
(``.onnx``, ``onnx.ModelProto``). Neither framework is imported before it is needed."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Union

from .plan import Frontend


def file_sha256(path: Union[str, Path]) -> str:
    """SHA-256 of a model file (read in 1 MiB blocks), recorded in the network's metadata."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
        from .onnx_graph import OnnxFrontend

        return OnnxFrontend.load(model)
    from .graph import KerasFrontend
    from .model_io import load_model

    return KerasFrontend(load_model(model))
