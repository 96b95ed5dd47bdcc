"""Compiled code is loaded only from build directories that no other user can write: a
world-writable folder (another user could replace ``librunner.so``) is refused with one line;
a read-only cache of another user keeps working."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from helpers.processes import DISTSNN, run

USER = "nobody"


def _evaluate(files: dict, build, out) -> list[str]:
    return [DISTSNN, "evaluate", str(files["net"]), "--data", str(files["data"]), "-t", "5",
            "--no-progress", "--build-dir", str(build), "-o", str(out)]


def test_a_world_writable_build_directory_is_refused(small_files, tmp_path):
    build = tmp_path / "open-build"
    build.mkdir()
    build.chmod(0o777)
    proc = run(_evaluate(small_files, build, tmp_path / "r.json"))
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("distsnn:")]
    assert len(lines) == 1 and "writable by every user" in lines[0], proc.stderr
    assert str(build) in lines[0] and "chmod o-w" in lines[0]
    assert not list(build.glob("*_CODE"))  # nothing was built there either
    build.chmod(0o755)
    assert run(_evaluate(small_files, build, tmp_path / "r.json")).returncode == 0


def test_a_replaceable_model_library_is_not_loaded(small_files, tmp_path):
    build = tmp_path / "build"
    assert run(_evaluate(small_files, build, tmp_path / "a.json")).returncode == 0
    library = next(build.glob("*_CODE/librunner.so"))
    library.chmod(0o777)
    proc = run(_evaluate(small_files, build, tmp_path / "b.json"))
    assert proc.returncode == 2 and "librunner.so is writable by every user" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the cache to another user")
def test_another_users_cache_is_used_unless_everyone_can_write_it(small_files, tmp_path):
    """A cache built by another user (here: owned by `nobody`, mode 755) is loaded as it is;
    once every user can write it, it is refused."""
    cache = tmp_path / "cache"
    assert run(_evaluate(small_files, cache, tmp_path / "a.json")).returncode == 0
    for path in [cache, *cache.rglob("*")]:
        shutil.chown(path, USER, "nogroup")
    proc = run(_evaluate(small_files, cache, tmp_path / "b.json"))
    assert proc.returncode == 0, proc.stderr
    first, second = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert second["metrics"] == first["metrics"] and second["build_reused"] == [True]
    cache.chmod(0o777)
    proc = run(_evaluate(small_files, cache, tmp_path / "c.json"))
    assert proc.returncode == 2 and "writable by every user" in proc.stderr, proc.stderr
