"""Which GeNN backends this pygenn has and whether each can run here (for ``distsnn doctor``)."""
from __future__ import annotations

import importlib
import os
import shutil
from typing import Any

from distsnn.genn.cuda import cuda_backend_built, cuda_unusable_reason, toolkit_root
from distsnn.utils.versions import error_text, installed_version

#: GeNN backends distsnn knows how to use, best first: short name -> pygenn's backend name
#: (its module ``pygenn.<name>_backend``).
BACKENDS = {"cuda": "cuda", "cpu": "single_threaded_cpu"}


def available_backends() -> list[str]:
    """GeNN backends this pygenn was built with and can load here ("cuda", "cpu")."""
    found = []
    for short, module in BACKENDS.items():
        try:
            importlib.import_module(f"pygenn.{module}_backend")
            found.append(short)
        except ImportError:
            pass
    return found


def backend_report(gpus: int) -> dict:
    """pygenn version and, per GeNN backend, whether it imports and whether it can run here
    (``gpus``: the devices a device query found); ``note`` says in a few words why not."""
    report: dict[str, Any] = {"pygenn": None, "pygenn_error": None, "backends": {}}
    try:
        import pygenn  # noqa: F401
    except Exception as err:  # ImportError, or a broken build raising anything else
        report["pygenn_error"] = error_text(err)
        return report
    report["pygenn"] = getattr(pygenn, "__version__", None) or installed_version("pygenn") or "?"
    for short, module in BACKENDS.items():
        entry: dict[str, Any] = {"module": f"pygenn.{module}_backend", "importable": False,
                                 "usable": False, "note": ""}
        try:
            importlib.import_module(f"pygenn.{module}_backend")
            entry["importable"] = True
        except ModuleNotFoundError as err:
            entry["note"] = ("not built into this pygenn" if err.name == entry["module"]
                             else error_text(err))
        except Exception as err:  # e.g. libcuda.so.1 missing
            entry["note"] = error_text(err)
        if short == "cuda":
            entry["built"] = cuda_backend_built()
            reason = cuda_unusable_reason(gpus)
            if reason is not None:
                entry["note"] = reason
        missing = _missing_tools(short)
        if entry["importable"] and not entry["note"]:
            entry["usable"] = not missing
            entry["note"] = ("needs " + ", ".join(missing)) if missing else ""
        report["backends"][short] = entry
    return report


def _missing_tools(backend: str) -> list[str]:
    """The build tools a backend needs that are not here."""
    missing = [] if shutil.which("make") else ["make"]
    if backend == "cpu" and not shutil.which(os.environ.get("CXX") or "g++"):
        missing.append(os.environ.get("CXX") or "g++")
    nvcc = toolkit_root() / "bin" / "nvcc"
    if backend == "cuda" and not os.access(nvcc, os.X_OK):
        missing.append(f"{nvcc} (set CUDA_PATH)")
    return missing
