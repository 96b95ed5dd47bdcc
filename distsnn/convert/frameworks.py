"""Whether the converters' frameworks (TensorFlow, Keras) are installed and load (for doctor)."""
from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any

from distsnn.utils.console import quiet_output, verbose
from distsnn.utils.versions import error_text, installed_version


def framework_report(import_tf: bool) -> dict:
    """TensorFlow and Keras versions; imported (rank 0 only) to check they really load."""
    out: dict[str, Any] = {}
    for name in ("tensorflow", "keras"):
        if importlib.util.find_spec(name) is None:
            out[name] = None
            continue
        if not import_tf:
            dist = ("tensorflow", "tensorflow-cpu", "tf-nightly") if name == "tensorflow" else (name,)
            out[name] = next((v for v in map(installed_version, dist) if v), "installed")
            continue
        if not verbose():
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            with quiet_output(f"importing {name}"):  # TensorFlow's C++ start-up chatter
                module = importlib.import_module(name)
            out[name] = getattr(module, "__version__", "?")
        except Exception as err:
            out[name] = f"import failed: {error_text(err)}"
    return out
