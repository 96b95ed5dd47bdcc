"""Explicit (SPARSE) synapses computed once per node and cached next to the GeNN build.

Files are content-addressed (connectivity kind, parameters, weights and source shape), hold
uint32 indices, are written to a temporary name and renamed (so concurrent ranks and jobs
never see half a file), and are memory-mapped when read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from distsnn.network import Connection, connectivity_hash
from distsnn.utils.files import OutputError, atomic_path

Synapses = tuple[np.ndarray, np.ndarray, np.ndarray]


class SynapseCache:
    """``synapses(conn)`` from ``root`` when cached, else computed (and stored if ``root``)."""

    def __init__(self, root: Optional[str | Path]):
        self.root = Path(root) if root is not None else None

    def path(self, conn: Connection) -> Optional[Path]:
        if self.root is None:
            return None
        return self.root / f"{connectivity_hash(conn)}.npy"

    def synapses(self, conn: Connection) -> Synapses:
        path = self.path(conn)
        if path is not None and path.exists():
            table = np.load(path, mmap_mode="r")
            return table[0], table[1], table[2].view(np.float32)
        pre, post, w = conn.connectivity.synapses(conn.source.shape)
        if path is not None:
            table = np.stack([pre.astype(np.uint32), post.astype(np.uint32),
                              w.astype(np.float32).view(np.uint32)])
            _save_atomically(path, table)
        return pre, post, w


def _save_atomically(path: Path, table: np.ndarray) -> None:
    """Write ``table`` to ``path`` whole (temporary name, then rename); a cache that cannot be
    written (read-only or full) is skipped: the synapses are recomputed next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, "synapse cache") as tmp:
            np.save(tmp, table)
    except (OSError, OutputError):
        pass
