"""GeNN's CUDA backend without pygenn: where the toolkit and cuRAND headers are, whether the
NVIDIA driver is there, and why CUDA cannot run here (for ``auto``, doctor and builds)."""
from __future__ import annotations

import ctypes
import importlib.util
import os
import sysconfig
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional


def toolkit_root() -> Path:
    """The CUDA toolkit GeNN compiles with (its generated Makefile's default too)."""
    return Path(os.environ.get("CUDA_PATH") or "/usr/local/cuda")


def curand_include() -> Optional[Path]:
    """A folder with ``curand_kernel.h`` that nvcc must be told about: None when the toolkit
    has its own, else the headers set-up installed from PyPI (``nvidia/cu<major>/include``)."""
    if (toolkit_root() / "include" / "curand_kernel.h").exists():
        return None
    nvidia = Path(sysconfig.get_paths()["purelib"]) / "nvidia"
    found = sorted(nvidia.glob("cu*/include/curand_kernel.h"), reverse=True)
    return found[0].parent if found else None


@contextmanager
def nvcc_environment() -> Iterator[None]:
    """Builds of generated CUDA code find the cuRAND headers (``NVCC_APPEND_FLAGS``)."""
    include = curand_include()
    if include is None:
        yield
        return
    before = os.environ.get("NVCC_APPEND_FLAGS")
    os.environ["NVCC_APPEND_FLAGS"] = f"{before + ' ' if before else ''}-I{include}"
    try:
        yield
    finally:
        if before is None:
            del os.environ["NVCC_APPEND_FLAGS"]
        else:
            os.environ["NVCC_APPEND_FLAGS"] = before


def cuda_backend_built() -> bool:
    """pygenn was built with the CUDA backend (whether or not it can be imported here)."""
    try:
        return importlib.util.find_spec("pygenn.cuda_backend") is not None
    except ImportError:
        return False


def driver_present() -> bool:
    """The NVIDIA driver's library loads (loading it initialises nothing)."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def cuda_unusable_reason(gpus: int) -> Optional[str]:
    """Why the CUDA backend cannot run here, in a few words; None when it can (``gpus``: the
    devices a device query found, see :func:`distsnn.parallel.devices.answering_gpus`)."""
    if not cuda_backend_built():
        return "pygenn was built without it (no CUDA toolkit at set-up)"
    if not driver_present():
        return "built, but no NVIDIA driver on this machine (libcuda.so.1 not found)"
    if not gpus:
        return "built, but no GPU answers (nvidia-smi lists none this process may use)"
    return None
