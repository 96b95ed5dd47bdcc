"""A GeNN build directory shared by any number of concurrent jobs and ranks.

Per model, the process holding ``<model>.lock`` (an exclusive ``flock``, one per node per
job, taken in turn by concurrent jobs) is the only one that writes: GeNN generates and
compiles the code (skipping both when ``model.sha`` matches) and a completion marker is
written last. Every other process only loads: it generates the code in memory with a private
scratch directory for GeNN's Makefile and loads the compiled library from the build
directory, so it never touches a file another job may be building. A build directory that
is not writable (read-only mount, another user's cache) is used as it is when it holds a
complete build of the model. Compiled code is never loaded from a build directory, model
folder or library that every user can write (another user could have replaced it); a
group-writable one is trusted (a cache shared by a group on purpose).
"""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from distsnn.errors import UserError
from distsnn.parallel.communicator import Communicator
from distsnn.utils.console import quiet_output

MARKER = ".distsnn-complete"


class BuildDirError(UserError):
    """A build directory that cannot be used (missing build, read-only, full)."""


def build_shared(model, build_dir: Path, name: str, comm: Communicator) -> bool:
    """Build ``model`` once into ``build_dir`` and prepare it for loading on every rank;
    returns whether an existing build was reused."""
    writable = _prepare(build_dir)
    code_dir = build_dir / f"{name}_CODE"
    check_trusted(build_dir)
    builder = comm.local_rank == 0 and writable
    reused = True
    if builder:
        with _file_lock(build_dir / f"{name}.lock"):
            sha = code_dir / "model.sha"
            before = sha.stat().st_mtime_ns if sha.exists() else None
            try:
                with quiet_output("GeNN's code generation and build"):
                    model.build(str(build_dir))
                _write_marker(code_dir, model)
            except (subprocess.CalledProcessError, OSError, RuntimeError) as err:
                raise _build_failure(build_dir, err) from err
            reused = before is not None and sha.stat().st_mtime_ns == before
    comm.local_barrier()
    if not builder:
        if not (code_dir / MARKER).exists():
            raise BuildDirError(f"the build directory {build_dir} is read-only and holds no "
                                f"complete build of this network ({code_dir.name}); build it "
                                f"once where it is writable, or pass a writable --build-dir")
        _generate_only(model, build_dir)
    check_trusted(code_dir, code_dir / "librunner.so")
    return reused


def check_trusted(*paths: Path) -> None:
    """Refuse compiled code that users other than its owner and group could have replaced."""
    for path in paths:
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            continue
        if mode & stat.S_IWOTH:
            raise BuildDirError(f"{path} is writable by every user ({stat.filemode(mode)}), so "
                                f"another user could have replaced the compiled code distsnn "
                                f"would load; use a private --build-dir, or `chmod o-w {path}`")


def _prepare(build_dir: Path) -> bool:
    """Create the directory if needed; whether this process may write in it."""
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if not build_dir.is_dir():
            raise BuildDirError(f"cannot create the build directory {build_dir} "
                                f"({err.strerror or err}); pass a writable --build-dir") from err
    return os.access(build_dir, os.W_OK | os.X_OK)


def _generate_only(model, build_dir: Path) -> None:
    """Prepare ``model`` for ``load()`` from ``build_dir`` without writing there: GeNN
    regenerates its in-memory model and writes its Makefile into a private scratch folder."""
    scratch = tempfile.mkdtemp(prefix="distsnn-genn-")
    try:
        with quiet_output("GeNN's code generation"):
            model.build(scratch, never_rebuild=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    model._path_to_model = str(build_dir)  # where load() finds the compiled library


def _write_marker(code_dir: Path, model) -> None:
    tmp = code_dir / f"{MARKER}.tmp"
    tmp.write_text(f"{model.name}\n")
    os.replace(tmp, code_dir / MARKER)


def _build_failure(build_dir: Path, err: BaseException) -> Exception:
    free = shutil.disk_usage(build_dir).free
    if getattr(err, "errno", None) == errno.ENOSPC or free < 64 << 20:
        return BuildDirError(f"the build directory {build_dir} is full ({free >> 20} MiB free): "
                             f"GeNN could not write or compile its code; free space there or "
                             f"pass another --build-dir")
    return err if isinstance(err, Exception) else RuntimeError(str(err))


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        f = open(path, "a")
    except OSError as err:
        raise _build_failure(path.parent, err) from err
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
