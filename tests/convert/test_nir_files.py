"""The NIR paper's files (tests/convert/data/nir/, BSD licence: the Sinabs N-MNIST CNN and
two snnTorch Braille networks with a recurrent Affine edge) through the command line:
``distsnn convert`` writes a network file, ``evaluate`` runs random rasters of the right
shape on 1 and 2 MPI ranks with identical results."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.processes import DISTSNN, run, run_mpi

DATA = Path(__file__).parent / "data" / "nir"
FILES = {  # file, preset, raster shape per example (T, ...), classes, raster dtype
    "cnn": ("cnn_sinabs.nir", "sinabs", (10, 2, 34, 34), 10, np.uint8),
    "braille_zero": ("braille_noDelay_bias_zero.nir", "snntorch", (40, 12), 7, bool),
    "braille_subtract": ("braille_noDelay_noBias_subtract.nir", "snntorch", (40, 12), 7, bool),
}


@pytest.mark.parametrize("case", sorted(FILES))
def test_paper_file_converts_and_runs_on_two_ranks(case, tmp_path, build_dir):
    name, source, shape, classes, dtype = FILES[case]
    rng = np.random.default_rng(3)
    x = rng.random((5,) + shape) < 0.15
    if dtype is np.uint8:  # counts: some 2s, graded events
        x = x.astype(np.uint8) * rng.integers(1, 3, x.shape).astype(np.uint8)
    np.savez(tmp_path / "data.npz", x=x, y=rng.integers(0, classes, 5))
    net = tmp_path / "net.h5"
    extra = ["--nir-reset", "zero_late"] if case == "braille_zero" else []
    conv = run([DISTSNN, "convert", str(DATA / name), "-o", str(net), "--nir-source", source,
                *extra], timeout=300)
    assert conv.returncode == 0, conv.stderr
    results = {}
    for ranks in (1, 2):
        out = tmp_path / f"r{ranks}.json"
        argv = [DISTSNN, "evaluate", str(net), "--data", str(tmp_path / "data.npz"),
                "-t", f"{shape[0] // 2},{shape[0]}", "--no-progress", "-o", str(out),
                "--build-dir", str(build_dir)]
        proc = run_mpi(ranks, argv, timeout=600) if ranks > 1 else run(argv, timeout=600)
        assert proc.returncode == 0, proc.stderr
        results[ranks] = json.loads(out.read_text())
    span = results[1]["network"]["metadata"]["nir"]["span"]
    assert results[1]["schedule"]["timesteps"] == [shape[0] // 2 + span, shape[0] + span]
    assert results[1]["metrics"] == results[2]["metrics"]
    assert results[1]["spikes"] == results[2]["spikes"]
    assert results[1]["network"]["metadata"]["nir"]["preset"]["source"] == source
