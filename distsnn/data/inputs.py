"""How stored examples become network inputs: scaling, normalisation and sanity checks.

Inputs stored as integers (uint8 images, 0-255) must be given an explicit ``scale`` (e.g.
1/255, as the model was trained), because guessing silently costs accuracy. Every chunk
is checked for NaN/inf before it reaches the network.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Optional, Sequence

import numpy as np

from distsnn.data.files import DataError
from distsnn.errors import UserError
from distsnn.layout import to_network_layout
from distsnn.network import Network


@dataclass(frozen=True)
class InputScaling:
    """``(x * scale - mean) / std``; mean and std are one value or one per channel (last axis)."""

    scale: Optional[float] = None
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The examples as float32 network inputs."""
        out = np.asarray(x, np.float32)
        if self.scale is not None and self.scale != 1.0:
            out = out * np.float32(self.scale)
        if self.mean is not None:
            out = out - np.asarray(self.mean, np.float32)
        if self.std is not None:
            out = out / np.asarray(self.std, np.float32)
        return out

    def describe(self) -> dict:
        return {"scale": self.scale, "mean": self.mean, "std": self.std}


def parse_scale(text: Optional[str]) -> Optional[float]:
    """``--scale`` as a number or a fraction (``1/255``)."""
    if text is None:
        return None
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise DataError(f"--scale must be a number or a fraction like 1/255, not {text!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise DataError(f"--scale must be positive, not {text!r}")
    return value


def parse_channels(text: Optional[str], option: str) -> Optional[tuple[float, ...]]:
    """``--mean``/``--std``: one number or comma-separated numbers per channel."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise DataError(f"{option} must be numbers separated by commas (one per channel), e.g. "
                        f"0.485,0.456,0.406, not {text!r}") from None
    if not values or (option == "--std" and min(values) <= 0):
        raise DataError(f"{option} must be {'positive ' if option == '--std' else ''}numbers, "
                        f"not {text!r}")
    return values


def check_dtype(dtype: np.dtype, scaling: InputScaling, where: str) -> None:
    """Integer (or bool) inputs need an explicit scale; say which one to pass."""
    dtype = np.dtype(dtype)
    if dtype.kind in "biu" and scaling.scale is None:
        hint = ("--scale 1/255 maps 0-255 images to 0-1" if dtype == np.uint8
                else "--scale S multiplies them by S")
        raise DataError(f"{where}: inputs are {dtype} integers but no scale was given; pass the "
                        f"scale the model was trained with ({hint}; --scale 1 uses them "
                        f"unchanged, e.g. when the model had a Rescaling layer)")


def check_channels(values: Optional[Sequence[float]], shape: tuple, option: str) -> None:
    if values is not None and len(values) not in (1, shape[-1] if shape else 1):
        raise DataError(f"{option} has {len(values)} values but the examples have "
                        f"{shape[-1] if shape else 1} channels (last axis of {shape})")


def check_finite(x: np.ndarray, first_index: int, where: str) -> None:
    """Raise naming the first example (global index) that holds NaN or inf."""
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        kind = "NaN" if np.isnan(x[row]).any() else "inf"
        raise DataError(f"{where}: example {first_index + row} holds {kind}; fix or drop it "
                        f"(np.isfinite(x).all(axis=...) finds them all)")


def as_network_input(x: np.ndarray, network: Network, path: str = "the dataset",
                     name: str = "x") -> np.ndarray:
    """Examples in the input population's shape (from the model's layout, see
    :func:`~distsnn.layout.to_network_layout`), after checking their size matches."""
    check_input_shape(tuple(x.shape[1:]), network, path, name)
    return to_network_layout(x, network)


def check_input_shape(shape: tuple, network: Network, path: str, name: str) -> None:
    """Refuse examples whose shape (or size) does not match the network's input."""
    pop = network.inputs[0]
    if shape != pop.shape and int(np.prod(shape)) != pop.size:
        raise UserError(f"{path}: examples of {name!r} have shape {shape} but the network input "
                        f"{pop.name!r} expects {pop.shape}; reshape the data or use the model it "
                        f"was made for")
