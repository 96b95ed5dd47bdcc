"""Loading Keras models (``.keras`` and legacy ``.h5``) and identifying them by hash."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from distsnn.convert._backend import keras, to_numpy
from distsnn.convert.errors import ModelFileError
from distsnn.utils.files import file_sha256

MODEL_EXTENSIONS = (".keras", ".h5", ".hdf5")


@dataclass
class LoadedModel:
    """A Keras model, where it came from and its SHA-256 (of the file, or of the weights)."""

    model: Any
    sha256: str
    hash_of: str  # "file" or "weights"
    path: Optional[str] = None


def load_model(source: Union[str, Path, Any]) -> LoadedModel:
    """Load ``source`` (a path to a .keras/.h5 file) or wrap a ``keras.Model`` object."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such model file")
        if path.suffix.lower() not in MODEL_EXTENSIONS:
            raise ModelFileError(f"{path}: not a Keras or ONNX model file (expected one of "
                                 f"{', '.join(MODEL_EXTENSIONS)} or .onnx)")
        _check_container(path)
        try:
            model = keras.models.load_model(path, compile=False)
        except Exception as err:  # noqa: BLE001 - any loader failure names the file
            raise ModelFileError(f"{path}: cannot be read as a Keras model "
                                 f"({type(err).__name__}: {err})") from None
        return LoadedModel(model, file_sha256(path), "file", str(path))
    if not isinstance(source, keras.Model):
        raise ModelFileError(f"expected a keras.Model or a path to a .keras/.h5 file, not "
                             f"{type(source).__name__}")
    return LoadedModel(source, weights_sha256(source), "weights")


def _check_container(path: Path) -> None:
    """Name a truncated or foreign file for what it is (Keras says "File not found")."""
    import zipfile

    import h5py
    if path.suffix.lower() == ".keras":
        ok, kind = zipfile.is_zipfile(path), "a .keras file is a zip archive"
    else:
        ok, kind = h5py.is_hdf5(path), f"a {path.suffix} Keras model is an HDF5 file"
    if not ok:
        raise ModelFileError(f"{path}: not a complete Keras model file ({kind}; this one, "
                             f"{path.stat().st_size} bytes, is truncated or of another format)")


def weights_sha256(model) -> str:
    """SHA-256 over the shapes and float32 values of all the model's weights, in order."""
    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.ascontiguousarray(to_numpy(weight))
        digest.update(str(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()
