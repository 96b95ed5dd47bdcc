"""The per-example predictions file of an evaluation (``distsnn evaluate --predictions``).

Every rank keeps the rows of the examples it evaluated (and rank 0 those of the journal of an
earlier, stopped run); at the end rank 0 gathers them, puts them in global example order and
writes one file, whose format follows its suffix:

* ``.npz``: ``index`` (N,) global example index, ``label`` (N,), ``timesteps`` (R,) the
  readout timesteps, ``predicted`` (N, R) the class at each (int32, the metrics' argmax:
  the first of tied maxima), ``outputs`` (N, R, classes) the readout values (float32).
* ``.csv``: a header line, then one line per example: ``index,label``, ``predicted_t<T>``
  for each readout timestep T, then ``output_t<T>_<class>`` for each T and class (values
  with 9 significant digits, which read back to the same float32).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from distsnn.compilers.chunks import PredictionRows
from distsnn.errors import UserError
from distsnn.parallel.communicator import Communicator
from distsnn.utils.files import atomic_path, check_writable

SUFFIXES = (".npz", ".csv")


def check_predictions_path(path: Path) -> None:
    """Refuse, before any work, a suffix of no supported format or a path not writable."""
    if Path(path).suffix.lower() not in SUFFIXES:
        raise UserError(f"--predictions {path}: use a file name ending in .npz or .csv (the "
                        f"format follows the extension)")
    check_writable(Path(path), "--predictions")


def gather_predictions(rows: list[PredictionRows], n_examples: int, readouts: int,
                       classes: int, comm: Communicator) -> Optional[PredictionRows]:
    """Every rank's rows on rank 0, in global example order (None on the other ranks).

    One gather per array (rank 0 receives N rows, which it must hold to write them)."""
    mine = PredictionRows.concat(rows, readouts, classes)
    gathered = [comm.gather_arrays(getattr(mine, name))
                for name in ("index", "label", "predicted", "values")]
    if comm.rank != 0:
        return None
    rows_all = PredictionRows(*gathered).sorted()
    if not np.array_equal(rows_all.index, np.arange(n_examples)):
        raise RuntimeError(f"predictions cover {len(np.unique(rows_all.index))} distinct of "
                           f"{n_examples} examples ({len(rows_all.index)} rows)")
    return rows_all


def write_predictions(path: Path, rows: PredictionRows, timesteps: list[int]) -> None:
    """Write ``rows`` (in example order) to ``path`` as .npz or .csv, whole or not at all."""
    path = Path(path)
    with atomic_path(path, "predictions") as tmp:
        if path.suffix.lower() == ".csv":
            _write_csv(tmp, rows, timesteps)
        else:
            with open(tmp, "wb") as f:
                np.savez(f, index=rows.index, label=rows.label,
                         timesteps=np.asarray(timesteps, np.int64), predicted=rows.predicted,
                         outputs=rows.values)


def _write_csv(path: Path, rows: PredictionRows, timesteps: list[int]) -> None:
    classes = rows.values.shape[2]
    header = (["index", "label"] + [f"predicted_t{t}" for t in timesteps]
              + [f"output_t{t}_{c}" for t in timesteps for c in range(classes)])
    table = np.concatenate([rows.index[:, None], rows.label[:, None], rows.predicted], axis=1)
    values = rows.values.reshape(len(rows.index), -1)
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        f.writelines(",".join([*map(str, ints.tolist()), *(f"{v:.9g}" for v in floats.tolist())])
                     + "\n" for ints, floats in zip(table, values))
