"""Result files: checked writable before any work, written whole or not at all.

Every file goes to a temporary name in the same directory, is flushed to disk and then
renamed over the target, so a failed or interrupted run leaves the previous file or none,
never half of one.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from distsnn.errors import UserError


class OutputError(UserError):
    """An output path that cannot be written."""


def check_writable(path: Path, option: str) -> None:
    """Fail now, not after hours of evaluation, when ``path`` cannot be created."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{option} {path}: is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{option} {path}: the folder {parent} does not exist; create it "
                          f"first (mkdir -p {parent})")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(f"{option} {path}: cannot write in {parent} ({err.strerror or err}); "
                          f"choose a writable folder") from err


@contextmanager
def atomic_path(path: Path, what: str = "output") -> Iterator[Path]:
    """A temporary path to write; renamed to ``path`` when the block succeeds."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}",
                               dir=path.parent or ".")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # what open() would have made, not mkstemp's 0600
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise OutputError(f"writing the {what} {path} failed ({err.strerror or err}); "
                          f"{'the previous file is unchanged' if path.exists() else 'no file was left'}"
                          f"; free space or choose another folder") from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file (read in 1 MiB blocks), e.g. a model recorded in a network's metadata."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_text(path: Path, text: str, what: str = "output") -> None:
    with atomic_path(path, what) as tmp:
        tmp.write_text(text)
