"""Which GeNN backends this pygenn has and whether each can run here (for ``distsnn doctor``)."""
from __future__ import annotations

import importlib
import os
import shutil
from typing import Any

from distsnn.utils.versions import error_text, installed_version

#: GeNN backends distsnn knows how to use, best first: (pygenn module suffix, short name).
BACKENDS = (("cuda", "cuda"), ("single_threaded_cpu", "cpu"))


def backend_report(visible_gpus: int) -> dict:
    """pygenn version and, per GeNN backend, whether it imports and whether it can run here."""
    report: dict[str, Any] = {"pygenn": None, "pygenn_error": None, "backends": {}}
    try:
        import pygenn  # noqa: F401
    except Exception as err:  # ImportError, or a broken build raising anything else
        report["pygenn_error"] = error_text(err)
        return report
    report["pygenn"] = getattr(pygenn, "__version__", None) or installed_version("pygenn") or "?"

    make = shutil.which("make")
    cxx = shutil.which(os.environ.get("CXX") or "g++")
    cuda_root = os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    nvcc = os.path.join(cuda_root, "bin", "nvcc")
    for module, short in BACKENDS:
        entry: dict[str, Any] = {"module": f"pygenn.{module}_backend", "importable": False,
                                 "usable": False, "note": ""}
        try:
            importlib.import_module(f"pygenn.{module}_backend")
            entry["importable"] = True
        except ModuleNotFoundError as err:
            if err.name == f"pygenn.{module}_backend":
                entry["note"] = "not built into this pygenn"
            else:
                entry["note"] = error_text(err)
        except Exception as err:  # e.g. libcuda.so.1 missing
            entry["note"] = error_text(err)
        if entry["importable"]:
            missing = []
            if not make:
                missing.append("make")
            if short == "cpu" and not cxx:
                missing.append(os.environ.get("CXX") or "g++")
            if short == "cuda":
                if not os.access(nvcc, os.X_OK):
                    missing.append(f"{nvcc} (set CUDA_PATH)")
                if visible_gpus == 0:
                    missing.append("a visible GPU")
            entry["usable"] = not missing
            entry["note"] = ("needs " + ", ".join(missing)) if missing else ""
        report["backends"][short] = entry
    return report
