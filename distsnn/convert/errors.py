"""Exceptions raised by the converters."""
from __future__ import annotations

from distsnn.errors import UserError


class ConversionError(UserError, ValueError):
    """A model (or one of its layers or nodes) cannot be converted; the message says why and
    what to use instead."""


class ModelFileError(ConversionError):
    """A model file is missing or cannot be read as a Keras or ONNX model; the message names
    it."""


class NormDataError(ConversionError):
    """Normalisation data are missing or unusable; the message says what was expected."""
