"""``convert_file``: the command line's entry point into conversion."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

from ..network import Network
from .converters import DataNorm, FewSpike, Simple
from .errors import ConversionError, NormDataError

METHODS = ("simple", "data-norm", "few-spike", "spike-norm")


def convert_file(model_path: Union[str, Path], method: str, *, norm_data: Any = None,
                 timesteps: int = 500, k: int = 8, input_type: str = "poisson",
                 signed_input: bool = False, percentile: float = 100.0, reset: str = "subtract",
                 x_name: str = "x", readout: str = "spikes") -> Network:
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
        converter = FewSpike(k=k, signed_input=signed_input, norm_data=norm_data, x_name=x_name)
    else:
        converter = Simple(timesteps, signed_input, input_type, reset=reset, readout=readout)
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
