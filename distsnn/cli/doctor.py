"""``distsnn doctor``: what this installation and this MPI job can do.

Every rank collects a small report (versions, GeNN backends, MPI placement, visible GPUs,
the GPU it would bind and its memory budget);
rank 0 gathers them with :meth:`Communicator.gather_object` and prints one table with a row
per rank, plus what only needs checking once (MPI library, TensorFlow/Keras). Works alone
(one rank) and under ``mpiexec -n N``.

The exit status is 1 when a rank cannot run distsnn at all (pygenn missing, no usable GeNN
backend, ranks disagreeing on distsnn/pygenn versions, a launcher that started several
processes which MPI sees as separate one-rank jobs), else 0. Warnings do not change it.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import warnings
from typing import Any, Optional

from distsnn.convert.frameworks import framework_report
from distsnn.genn.backends import backend_report
from distsnn.genn.lowering import format_bytes, memory_budget
from distsnn.parallel.devices import parse_visible_devices, select_gpu
from distsnn.utils.versions import error_text, installed_version

# Per-process variables by which launchers announce the job size (not SLURM_NTASKS: a batch
# script legitimately runs one process of a many-task allocation).
_LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE",
                            "PALS_SIZE")


def _gpu_report() -> dict:
    """Devices from ``nvidia-smi -L`` (NVML only: creates no CUDA context) and CUDA_VISIBLE_DEVICES."""
    visible_env = os.environ.get("CUDA_VISIBLE_DEVICES")
    report: dict[str, Any] = {"cuda_visible_devices": visible_env, "nvidia_smi": None,
                              "gpus": [], "gpu_error": None}
    smi = shutil.which("nvidia-smi")
    if smi:
        report["nvidia_smi"] = smi
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
            if out.returncode == 0:
                report["gpus"] = [line.strip() for line in out.stdout.splitlines()
                                  if line.startswith("GPU ")]
            else:
                text = (out.stderr or out.stdout).strip().splitlines()
                report["gpu_error"] = text[0] if text else f"nvidia-smi -L exited {out.returncode}"
        except (OSError, subprocess.TimeoutExpired) as err:
            report["gpu_error"] = error_text(err)
    # How many of the node's GPUs this process may use.
    if visible_env is None:
        visible = len(report["gpus"])
    else:
        entries = parse_visible_devices(visible_env)
        visible = len(entries) if smi is None else min(len(entries), len(report["gpus"]))
    report["visible_gpus"] = visible
    return report


def rank_report(comm) -> dict:
    """This process's part of the doctor report (small and picklable)."""
    gpus = _gpu_report()
    report = {
        "rank": comm.rank,
        "size": comm.size,
        "local_rank": comm.local_rank,
        "local_size": comm.local_size,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "python": platform.python_version(),
        "executable": sys.executable,
        "distsnn": installed_version("distsnn"),
        "numpy": installed_version("numpy"),
        "h5py": installed_version("h5py"),
        "mpi4py": installed_version("mpi4py"),
        **gpus,
    }
    # a GPU counts once nvidia-smi lists it: CUDA_VISIBLE_DEVICES alone proves nothing
    report.update(backend_report(gpus["visible_gpus"] if gpus["gpus"] else 0))
    report.update(_placement(comm))
    return report


def _placement(comm) -> dict:
    """What an evaluation on this rank would take: the GPU it would bind on the CUDA backend
    (``CUDA_VISIBLE_DEVICES`` entry, None without GPUs) and its memory budget, both decided
    by the ranks on this rank's own node."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sharing a GPU is reported once, in _problems
        choice = select_gpu(comm.local_rank, comm.local_size, environ=dict(os.environ))
    budget, source = memory_budget(None, comm.local_size)
    return {"gpu_binding": None if choice.device is None else choice.visible_devices,
            "memory_budget_bytes": budget, "memory_budget_source": source}


def _job_size_from_launcher() -> Optional[int]:
    for variable in _LAUNCHER_SIZE_VARIABLES:
        try:
            value = int(os.environ.get(variable, ""))
        except ValueError:
            continue
        if value > 0:
            return value
    return None


def _problems(ranks: list[dict], launcher_size: Optional[int]) -> tuple[list[str], list[str]]:
    errors: list[str] = []
    warnings: list[str] = []
    size = len(ranks)
    if size == 1 and launcher_size and launcher_size > 1:
        errors.append(
            f"the launcher started {launcher_size} processes but MPI sees a 1-rank job: this "
            f"mpiexec belongs to a different MPI than the one mpi4py uses (use the venv's "
            f"mpiexec, e.g. .venv/bin/mpiexec)")
    for r in ranks:
        where = f"rank {r['rank']} ({r['host']})"
        if r["pygenn"] is None:
            errors.append(f"{where}: pygenn does not import ({r['pygenn_error']}); run `make setup`")
            continue
        usable = [name for name, b in r["backends"].items() if b["usable"]]
        if not usable:
            notes = "; ".join(f"{n}: {b['note']}" for n, b in r["backends"].items())
            errors.append(f"{where}: no usable GeNN backend ({notes})")
        cuda = r["backends"].get("cuda", {})
        if r["visible_gpus"] and not cuda.get("importable"):
            warnings.append(f"{where}: {r['visible_gpus']} GPU(s) visible but pygenn has no "
                            f"working CUDA backend ({cuda.get('note') or 'not built'}); "
                            + ("install the NVIDIA driver" if cuda.get("built") else
                               "rebuild with DISTSNN_GENN_BACKEND=cuda make setup"))
        elif cuda.get("importable") and not cuda.get("usable"):
            warnings.append(f"{where}: the CUDA backend cannot run: {cuda['note']}; distsnn "
                            f"runs on the CPU")
    for key, severity in (("distsnn", errors), ("pygenn", errors), ("numpy", warnings),
                          ("python", warnings), ("mpi4py", warnings)):
        seen = sorted({str(r.get(key)) for r in ranks})
        if len(seen) > 1:
            severity.append(f"ranks disagree on the {key} version: {', '.join(seen)}")
    # GPUs shared by ranks on one node: fine (time-shared), but worth knowing.
    for host in sorted({r["host"] for r in ranks}):
        on_host = [r for r in ranks if r["host"] == host]
        gpus = max(r["visible_gpus"] for r in on_host)
        if gpus and len(on_host) > gpus and all(r["cuda_visible_devices"] is None for r in on_host):
            warnings.append(f"{host}: {len(on_host)} ranks share {gpus} GPU(s)")
    return errors, warnings


def _backend_cell(r: dict) -> str:
    if r["pygenn"] is None:
        return "-"
    parts = []
    for name, b in r["backends"].items():
        if b["usable"]:
            parts.append(name)
        elif b["importable"] or b.get("built"):
            parts.append(f"{name}(no GPU)" if "GPU" in b["note"] else f"{name}(unusable)")
    return ",".join(parts) or "none"


def _gpu_cell(r: dict) -> str:
    if r["nvidia_smi"] is None:
        return "no nvidia-smi"
    if r["gpu_error"]:
        return "nvidia-smi failed"
    return f"{r['visible_gpus']} of {len(r['gpus'])}"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def format_report(report: dict) -> str:
    """The plain-text form of the rank-0 report."""
    c = report["common"]
    ranks = report["ranks"]
    r0 = ranks[0]

    def backends_line(r: dict) -> str:
        if r["pygenn"] is None:
            return f"NOT IMPORTABLE ({r['pygenn_error']})"
        parts = []
        for name, b in r["backends"].items():
            state = "usable" if b["usable"] else b["note"] or "not importable"
            parts.append(f"{name}: {state}")
        return f"{r['pygenn']}  [{'; '.join(parts)}]"

    def tf_text(name: str) -> str:
        value = c.get(name)
        return "not installed" if value is None else value

    lines = [f"distsnn doctor ({report['size']} rank{'s' if report['size'] != 1 else ''})", ""]
    rows = [
        ("distsnn", f"{r0['distsnn']}  ({c['distsnn_path']})"),
        ("Python", f"{r0['python']}  ({r0['executable']})"),
        ("platform", c["platform"]),
        ("numpy", r0["numpy"] or "not installed"),
        ("h5py", r0["h5py"] or "not installed"),
        ("pygenn", backends_line(r0)),
        ("mpi4py", r0["mpi4py"] or "not installed"),
        ("MPI library", c["mpi_library"]),
        ("TensorFlow", tf_text("tensorflow")),
        ("Keras", tf_text("keras")),
    ]
    width = max(len(k) for k, _ in rows)
    lines += [f"  {k.ljust(width)}  {v}" for k, v in rows]
    lines.append("")
    lines.append("Ranks (row per rank; versions shown once above unless ranks differ):")
    table = [["rank", "host", "local", "pid", "pygenn", "backends", "CUDA_VISIBLE_DEVICES",
              "GPUs visible", "binds GPU", "memory budget"]]
    for r in ranks:
        cvd = r["cuda_visible_devices"]
        table.append([str(r["rank"]), r["host"], f"{r['local_rank']}/{r['local_size']}",
                      str(r["pid"]), r["pygenn"] or "-", _backend_cell(r),
                      "unset" if cvd is None else (cvd or "''"), _gpu_cell(r),
                      r["gpu_binding"] or "-", format_bytes(r["memory_budget_bytes"])])
    lines += ["  " + line for line in _table(table)]
    gpu_lists = {}
    for r in ranks:
        if r["gpus"] and r["host"] not in gpu_lists:
            gpu_lists[r["host"]] = r["gpus"]
    if gpu_lists:
        lines.append("")
        lines.append("GPUs (nvidia-smi -L):")
        for host, gpus in gpu_lists.items():
            lines += [f"  {host}: {g}" for g in gpus]
    lines.append("")
    if report["errors"] or report["warnings"]:
        lines += [f"ERROR: {e}" for e in report["errors"]]
        lines += [f"warning: {w}" for w in report["warnings"]]
    else:
        lines.append("OK: every rank can run distsnn.")
    return "\n".join(lines)


def _make_communicator():
    """The MPI communicator; the serial one (with the reason) when MPI cannot start."""
    from distsnn.parallel.communicator import MPICommunicator, SerialCommunicator

    try:
        comm = MPICommunicator()
        return comm, " ".join(comm.library_version.split()), None
    except Exception as err:  # mpi4py missing or MPI_Init failing in a recoverable way
        return SerialCommunicator(), None, error_text(err)


def run_doctor(json_output: bool = False, import_tf: bool = True) -> int:
    """Run the checks on every rank; rank 0 prints. Returns the exit status for every rank."""
    comm, mpi_library, mpi_error = _make_communicator()
    mine = rank_report(comm)
    ranks = comm.gather_object(mine, root=0)
    status = 0
    if comm.rank == 0:
        import distsnn

        ranks = sorted(ranks, key=lambda r: r["rank"])
        common = {
            "distsnn_path": os.path.dirname(os.path.abspath(distsnn.__file__)),
            "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
            "mpi_library": mpi_library or f"unavailable ({mpi_error})",
            **framework_report(import_tf),
        }
        errors, warnings = _problems(ranks, _job_size_from_launcher())
        if mpi_error:
            warnings.insert(0, f"MPI unavailable, ran as a single process: {mpi_error}")
        report = {"size": comm.size, "ranks": ranks, "common": common,
                  "errors": errors, "warnings": warnings, "ok": not errors}
        if json_output:
            print(json.dumps(report, indent=2, sort_keys=True))
        else:
            print(format_report(report))
        sys.stdout.flush()
        status = 1 if errors else 0
    # Every rank leaves with rank 0's verdict, so mpiexec's exit status is rank 0's.
    return int(comm.broadcast_object(status, root=0))
