"""Installed versions and one-line error texts, for reports (doctor, results files)."""
from __future__ import annotations

import importlib.metadata as metadata
from typing import Optional


def installed_version(distribution: str) -> Optional[str]:
    """Installed version of a distribution, without importing it (None if absent)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def error_text(err: BaseException) -> str:
    """``Type: first line of the message``."""
    return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
