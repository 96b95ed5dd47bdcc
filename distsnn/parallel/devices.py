"""Which GPU each rank uses: node-local rank from the launcher, and CUDA_VISIBLE_DEVICES.

Everything here is plain Python (no mpi4py, no pygenn, no CUDA): it only reads environment
variables and, where ``CUDA_VISIBLE_DEVICES`` is unset, the output of ``nvidia-smi -L``
(which talks to the driver through NVML and creates no CUDA context).

**Call** :func:`select_gpu` **before anything creates a CUDA context** -- before importing
pygenn, cupy or torch and before building a GeNN model. CUDA reads ``CUDA_VISIBLE_DEVICES``
once, when the process first initialises the driver; changing it afterwards has no effect.

Typical use, at the start of a rank::

    from distsnn.parallel.devices import local_rank_from_env, local_size_from_env, select_gpu
    choice = select_gpu(local_rank_from_env(), local_size_from_env())
    # choice.device is 0 (the only device left visible) or None (no GPU: run on the CPU)

Conventions (see Open MPI's "Selecting an Accelerator Device before calling MPI_Init"):

* If the scheduler already narrowed ``CUDA_VISIBLE_DEVICES`` to one device per task
  (``srun --gpus-per-task=1``), keep it and use device 0.
* If several devices are visible, rank ``local_rank`` takes entry ``local_rank % n`` and
  ``CUDA_VISIBLE_DEVICES`` is re-exported to that one entry, so the rank sees it as device 0.
* More ranks on a node than GPUs is allowed (ranks time-share a GPU) but warned about; the
  CUDA Multi-Process Service (MPS) lets such ranks run on one GPU concurrently.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings
from dataclasses import dataclass, field
from typing import Mapping, MutableMapping, Optional

__all__ = ["GpuChoice", "answering_gpus", "local_rank_from_env", "local_size_from_env",
           "parse_visible_devices", "visible_gpus", "select_gpu", "parse_slurm_tasks_per_node"]

# (rank variable, size variable or None, launcher), in the order they are tried.
_LAUNCHER_VARIABLES: tuple[tuple[str, Optional[str], str], ...] = (
    ("LOCAL_RANK", "LOCAL_WORLD_SIZE", "torchrun"),
    ("MPI_LOCALRANKID", "MPI_LOCALNRANKS", "MPICH Hydra / Intel MPI"),
    ("SLURM_LOCALID", None, "Slurm"),  # size: SLURM_TASKS_PER_NODE / SLURM_NTASKS_PER_NODE
    ("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE", "Open MPI"),
    ("PMI_LOCAL_RANK", "PMI_LOCAL_SIZE", "PMI"),
    ("MV2_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_SIZE", "MVAPICH2"),
    ("PALS_LOCAL_RANKID", "PALS_LOCAL_SIZE", "Cray PALS"),
)

# CUDA_VISIBLE_DEVICES values (or entries) that mean "no device from here on".
_NO_DEVICE = {"", "-1", "NoDevFiles", "none", "None"}


def _int_or_none(value: Optional[str]) -> Optional[int]:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def _launcher_entry(environ: Mapping[str, str]):
    for rank_var, size_var, launcher in _LAUNCHER_VARIABLES:
        rank = _int_or_none(environ.get(rank_var))
        if rank is not None and rank >= 0:
            return rank_var, size_var, launcher, rank
    return None


def local_rank_from_env(environ: Mapping[str, str] = os.environ) -> Optional[int]:
    """This process's rank among the processes of its node, from launcher variables.

    Tried in order: ``LOCAL_RANK`` (torchrun), ``MPI_LOCALRANKID`` (MPICH Hydra, Intel MPI),
    ``SLURM_LOCALID`` (srun), ``OMPI_COMM_WORLD_LOCAL_RANK`` (Open MPI), ``PMI_LOCAL_RANK``,
    ``MV2_COMM_WORLD_LOCAL_RANK`` (MVAPICH2), ``PALS_LOCAL_RANKID`` (Cray PALS).
    None when no launcher set any of them (a plain ``python`` run, or a launcher not listed:
    then ask MPI, ``COMM_WORLD.Split_type(COMM_TYPE_SHARED)``).
    """
    entry = _launcher_entry(environ)
    return None if entry is None else entry[3]


def parse_slurm_tasks_per_node(value: str) -> list[int]:
    """Expand Slurm's ``SLURM_TASKS_PER_NODE`` syntax, e.g. ``"2(x3),1"`` -> ``[2, 2, 2, 1]``.

    Raises ValueError for text that does not follow that syntax.
    """
    counts: list[int] = []
    for part in value.strip().split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not match:
            raise ValueError(f"not a SLURM_TASKS_PER_NODE value: {value!r}")
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return counts


def _slurm_local_size(environ: Mapping[str, str]) -> Optional[int]:
    tasks_per_node = environ.get("SLURM_TASKS_PER_NODE")
    if tasks_per_node:
        try:
            counts = parse_slurm_tasks_per_node(tasks_per_node)
        except ValueError:
            counts = []
        if counts:
            node = _int_or_none(environ.get("SLURM_NODEID"))
            if node is not None and 0 <= node < len(counts):
                return counts[node]
            if len(set(counts)) == 1:
                return counts[0]
    return _int_or_none(environ.get("SLURM_NTASKS_PER_NODE"))


def local_size_from_env(environ: Mapping[str, str] = os.environ) -> Optional[int]:
    """Number of processes on this node, from the same launcher as :func:`local_rank_from_env`.

    Uses the size variable that belongs to the launcher whose rank variable was found
    (``MPI_LOCALNRANKS``, ``OMPI_COMM_WORLD_LOCAL_SIZE``, ``PMI_LOCAL_SIZE``, ...; for Slurm
    the entry of ``SLURM_TASKS_PER_NODE`` for ``SLURM_NODEID``, else
    ``SLURM_NTASKS_PER_NODE``). None when unknown.
    """
    entry = _launcher_entry(environ)
    if entry is None:
        return None
    rank_var, size_var, _launcher, _rank = entry
    if rank_var == "SLURM_LOCALID":
        size = _slurm_local_size(environ)
    else:
        size = _int_or_none(environ.get(size_var)) if size_var else None
    return size if size is not None and size > 0 else None


def parse_visible_devices(value: str) -> list[str]:
    """Entries of a CUDA_VISIBLE_DEVICES value; CUDA stops at the first invalid entry."""
    entries: list[str] = []
    for entry in value.split(","):
        entry = entry.strip()
        if entry in _NO_DEVICE or entry.startswith("-"):
            break
        entries.append(entry)
    return entries


_SMI_GPU = re.compile(r"^GPU\s+(\d+):")
_SMI_UUID = re.compile(r"\(UUID:\s*((?:GPU|MIG)-[^)\s]+)\)")


def _parse_nvidia_smi(text: str) -> list[str]:
    """Devices from ``nvidia-smi -L``: a GPU's UUID, or its MIG instances' UUIDs if it has any.

    UUIDs rather than indices, because nvidia-smi numbers GPUs in PCI order while CUDA, by
    default, numbers them fastest first (a GPU line without a UUID gives its index).
    """
    gpus: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        uuid = _SMI_UUID.search(line)
        gpu = _SMI_GPU.match(line)
        if gpu:
            gpus.append((uuid.group(1) if uuid else gpu.group(1), []))
        elif gpus and uuid and uuid.group(1).startswith("MIG-"):
            gpus[-1][1].append(uuid.group(1))
    devices: list[str] = []
    for gpu, migs in gpus:
        devices.extend(migs or [gpu])
    return devices


def _nvidia_smi_devices(environ: Mapping[str, str]) -> list[str]:
    smi = shutil.which("nvidia-smi", path=environ.get("PATH", os.defpath))
    if smi is None:
        return []
    try:
        result = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30,
                                env=dict(environ))
    except (OSError, subprocess.SubprocessError):
        return []
    if result.returncode != 0:
        return []
    return _parse_nvidia_smi(result.stdout)


def visible_gpus(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The GPUs this process may use, without creating a CUDA context.

    If ``CUDA_VISIBLE_DEVICES`` is set, its entries (indices or ``GPU-``/``MIG-`` UUIDs; an
    empty value, ``-1`` or ``NoDevFiles`` means none). Otherwise the devices ``nvidia-smi -L``
    lists (as UUIDs, see :func:`_parse_nvidia_smi`), or ``[]`` when there is no nvidia-smi.
    """
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        return parse_visible_devices(value)
    return _nvidia_smi_devices(environ)


def answering_gpus(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The visible GPUs that a device query confirms (``nvidia-smi -L``, i.e. NVML: no CUDA
    context). ``CUDA_VISIBLE_DEVICES`` alone proves nothing: it is often set where there is
    no GPU (copied environments, containers, login nodes)."""
    present = _nvidia_smi_devices(environ)
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return present
    return [entry for entry in parse_visible_devices(value)
            if entry in present or (entry.isdigit() and int(entry) < len(present))]


def _oversubscription_message(local_size: int, n_gpus: int) -> str:
    return (f"{local_size} ranks on this node share {n_gpus} GPU(s): ranks on the same GPU "
            f"take turns on it. Launch at most {n_gpus} rank(s) per node, or start the CUDA "
            "Multi-Process Service (MPS: nvidia-cuda-mps-control -d) on the node so that ranks "
            "sharing a GPU run concurrently.")


@dataclass
class GpuChoice:
    """What :func:`select_gpu` decided.

    device: CUDA device index to use within the (narrowed) visible set: 0, or None when this
        rank has no GPU and should run on the CPU.
    visible_devices: the ``CUDA_VISIBLE_DEVICES`` value set or kept (None when unset).
    warnings: human-readable warnings (also issued with :func:`warnings.warn`).
    n_visible: how many devices were visible before narrowing.
    remapped: True when this call changed ``CUDA_VISIBLE_DEVICES``.
    """

    device: Optional[int]
    visible_devices: Optional[str]
    warnings: list[str] = field(default_factory=list)
    n_visible: int = 0
    remapped: bool = False


def _node_gpu_count_from_slurm(environ: Mapping[str, str]) -> Optional[int]:
    """How many GPUs Slurm gave this job step on this node (SLURM_STEP_GPUS, SLURM_JOB_GPUS)."""
    for name in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        value = environ.get(name)
        if value:
            return len([entry for entry in value.split(",") if entry.strip()])
    return None


def _narrowed_node_gpus(environ: Mapping[str, str]) -> Optional[int]:
    """GPUs on this node when CUDA_VISIBLE_DEVICES names one device; None if unknown."""
    slurm = _node_gpu_count_from_slurm(environ)
    if slurm is not None:
        return slurm
    entry = _launcher_entry(environ)
    under_slurm_step = "SLURM_STEP_ID" in environ or "SLURM_LOCALID" in environ
    if entry is not None and not under_slurm_step and entry[0] in (
            "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "PMI_LOCAL_RANK"):
        return 1  # mpiexec gives every rank the same CUDA_VISIBLE_DEVICES
    return None


def select_gpu(local_rank: Optional[int] = None, local_size: Optional[int] = None,
               environ: MutableMapping[str, str] = os.environ) -> GpuChoice:
    """Pick this rank's GPU and narrow ``CUDA_VISIBLE_DEVICES`` to it.

    Must run **before any CUDA context exists** in this process (before importing pygenn /
    cupy / torch or building a model): CUDA reads ``CUDA_VISIBLE_DEVICES`` only once.

    ``local_rank`` / ``local_size`` default to :func:`local_rank_from_env` /
    :func:`local_size_from_env` (rank 0 when no launcher variable is set).

    * ``CUDA_VISIBLE_DEVICES`` lists exactly one device (scheduler narrowed it): kept, device 0.
    * It lists several, or it is unset and ``nvidia-smi`` lists several: entry
      ``local_rank % n`` is chosen and ``environ["CUDA_VISIBLE_DEVICES"]`` is set to it alone.
    * It is unset and there is one GPU: left unset, device 0.
    * No GPU: device None.

    Warns (in the result and with :func:`warnings.warn`) when more ranks share the node than
    there are GPUs. Where ``CUDA_VISIBLE_DEVICES`` already names one device, the node's GPU
    count comes from ``SLURM_STEP_GPUS``/``SLURM_JOB_GPUS`` under Slurm; under ``mpiexec``
    (MPICH Hydra, Open MPI), which give every rank the same environment, the one device is
    shared by all ``local_size`` ranks; under other launchers it is unknown and not warned.
    """
    if local_rank is None:
        local_rank = local_rank_from_env(environ)
    if local_size is None:
        local_size = local_size_from_env(environ)
    rank = local_rank if local_rank is not None and local_rank >= 0 else 0

    current = environ.get("CUDA_VISIBLE_DEVICES")
    devices = visible_gpus(environ)
    n = len(devices)
    messages: list[str] = []

    if n == 0:
        return GpuChoice(device=None, visible_devices=current, warnings=messages, n_visible=0)

    if n == 1:
        node_gpus = 1 if current is None else _narrowed_node_gpus(environ)
        choice = GpuChoice(device=0, visible_devices=current, n_visible=1)
    else:
        node_gpus = n
        chosen = devices[rank % n]
        environ["CUDA_VISIBLE_DEVICES"] = chosen
        choice = GpuChoice(device=0, visible_devices=chosen, n_visible=n, remapped=True)

    if local_size is not None and node_gpus is not None and local_size > node_gpus:
        messages.append(_oversubscription_message(local_size, node_gpus))
    for message in messages:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    choice.warnings = messages
    return choice
