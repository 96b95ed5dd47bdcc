"""``convert_file``: the command line's entry point into conversion."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from distsnn.convert.converters import DataNorm, FewSpike, Simple
from distsnn.convert.errors import ConversionError, NormDataError
from distsnn.convert.frontends import is_onnx
from distsnn.network import Network

METHODS = ("simple", "data-norm", "few-spike", "spike-norm", "qcfs")

#: Packages Keras imports only for features a conversion never uses (its scikit-learn
#: wrappers, its matplotlib image-gallery plots): 1-1.5 s of its 2.5-4 s import on 2 cores.
KERAS_OPTIONAL_IMPORTS = ("sklearn", "matplotlib")


def convert_file(model_path: Union[str, Path], method: str, *, norm_data: Any = None,
                 timesteps: int = 500, k: int = 8, input_type: str = "poisson",
                 signed_input: bool = False, percentile: float = 100.0, reset: str = "subtract",
                 x_name: str = "x", readout: str = "spikes", rounding: str = "floor",
                 headroom: float = 1.0) -> Network:
    """Convert the Keras model file ``model_path`` with ``method`` and return the network.

    ``norm_data`` is an array or an array file (``x_name`` inside .npz/.h5). For
    ``spike-norm`` the network is the ``simple`` one (thresholds 1); its metadata say that the
    threshold search (:func:`distsnn.convert.spike_normalise`) is still to be run.
    """
    method = method.lower().replace("_", "-")
    if method not in METHODS:
        raise ConversionError(f"unknown conversion method {method!r}; choose one of "
                              f"{', '.join(METHODS)}")
    if method == "data-norm":
        if norm_data is None:
            raise NormDataError("data-norm needs normalisation data (a slice of the training "
                                "inputs as an .npz/.npy/.h5 file)")
        converter = DataNorm(timesteps, signed_input, norm_data, input_type, percentile,
                             reset=reset, x_name=x_name, readout=readout)
    elif method == "few-spike":
        converter = FewSpike(k=k, signed_input=signed_input, norm_data=norm_data, x_name=x_name,
                             rounding=rounding, headroom=headroom)
    elif method == "qcfs":
        from distsnn.convert.qcfs import QCFSConverter

        converter = QCFSConverter(timesteps, signed_input, input_type, readout=readout)
    else:
        converter = Simple(timesteps, signed_input, input_type, reset=reset, readout=readout)
        converter.method = method  # spike-norm starts from the simple network; name it in errors
    if not is_onnx(model_path):
        import_keras_lean()
    network = converter.convert(model_path)[0]
    if method == "spike-norm":
        network.metadata["method"] = "spike-norm"
        network.metadata["spike_norm"] = {
            "status": "pending",
            "note": "thresholds are 1 until the spike-norm threshold search has run",
            "norm_data": None if norm_data is None else _describe(norm_data),
            "evaluate_timesteps": int(timesteps),
        }
    return network


def _describe(norm_data: Any) -> Optional[str]:
    return str(norm_data) if isinstance(norm_data, (str, Path)) else type(norm_data).__name__


def import_keras_lean() -> bool:
    """Import Keras with :data:`KERAS_OPTIONAL_IMPORTS` hidden from it, unless they are
    imported already; they stay importable afterwards. Keras then lacks only its scikit-learn
    wrappers and image-gallery plots. False if Keras was imported already."""
    if "keras" in sys.modules:
        return False
    with _hidden(KERAS_OPTIONAL_IMPORTS):
        from distsnn.convert import _backend  # noqa: F401 - imports Keras quietly
    return True


@contextmanager
def _hidden(names: tuple[str, ...]) -> Iterator[None]:
    """Within the block, importing one of ``names`` (not yet imported) raises ImportError."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment] - Python's "import blocked" mark
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
