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


def test_event_lists_bin_like_rasters(tmp_path, build_dir):
    """Event lists (one structured array, per-example offsets) binned into 1.0-long frames on
    2 ranks give the results of the same events as a raster on 1 rank."""
    rng = np.random.default_rng(5)
    counts = rng.integers(20, 120, 5)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    events = np.zeros(offsets[-1], [("x", "u2"), ("y", "u2"), ("t", "f8"), ("p", "u1"),
                                    ("example", "i8")])
    events["x"], events["y"] = rng.integers(0, 34, (2, len(events)))
    events["t"], events["p"] = rng.random(len(events)) * 7.9, rng.integers(0, 2, len(events))
    events["example"] = np.repeat(np.arange(5), counts)
    labels = rng.integers(0, 10, 5)
    np.savez(tmp_path / "events.npz", events=events, offsets=offsets, y=labels)
    raster = np.zeros((5, 8, 2, 34, 34), np.uint8)  # frames of length 1: floor(t)
    np.add.at(raster, (events["example"], events["t"].astype(int), events["p"], events["y"],
                       events["x"]), 1)
    np.savez(tmp_path / "raster.npz", x=raster, y=labels)
    net = tmp_path / "net.h5"
    assert run([DISTSNN, "convert", str(DATA / "cnn_sinabs.nir"), "-o", str(net),
                "--nir-source", "sinabs"], timeout=300).returncode == 0
    results = {}
    for kind, ranks, extra in (("events", 2, ["--frame-length", "1"]), ("raster", 1, [])):
        out = tmp_path / f"{kind}.json"
        argv = [DISTSNN, "evaluate", str(net), "--data", str(tmp_path / f"{kind}.npz"), *extra,
                "-t", "8", "--no-progress", "-o", str(out), "--build-dir", str(build_dir)]
        proc = run_mpi(ranks, argv, timeout=600) if ranks > 1 else run(argv, timeout=600)
        assert proc.returncode == 0, proc.stderr
        results[kind] = json.loads(out.read_text())
    assert results["events"]["spikes"] == results["raster"]["spikes"]
    assert results["events"]["metrics"] == results["raster"]["metrics"]
    assert results["events"]["spikes"]["populations"]["input"]["spikes"] == \
        int(np.count_nonzero(raster))  # one (graded) event per non-zero raster entry


@pytest.mark.parametrize("name,params", [
    ("braille_noDelay_bias_zero.nir", "parameters_noDelay_bias_ref_zero.json"),
    ("braille_noDelay_noBias_subtract.nir", "parameters_noDelay_noBias_ref_subtract.json")])
def test_snntorch_preset_recovers_the_training_decays(name, params):
    """snnTorch writes tau = dt / (1 - beta): its preset's Euler step gives back beta and
    alpha (the Braille networks' training parameters, copied beside the files)."""
    from distsnn.convert.nir_frontend import convert_nir_file
    train = json.loads((DATA / params).read_text())
    net = convert_nir_file(DATA / name, "snntorch")
    hidden, out = net.population("lif1_lif").neuron, net.population("lif2").neuron
    for neuron, alpha, beta in ((hidden, train["alpha_r"], train["beta_r"]),
                                (out, train["alpha_out"], train["beta_out"])):
        assert neuron.v_decay == pytest.approx(beta, rel=1e-6)
        assert neuron.i_decay == pytest.approx(alpha, rel=1e-6)
        assert neuron.v_in == pytest.approx(1.0) and neuron.i_in == pytest.approx(1.0)
    assert net.metadata["nir"]["recurrent"] == ["lif1.lif -> lif1.lif"]


def test_nir_file_evaluates_directly_and_bad_rasters_get_one_line(tmp_path, build_dir):
    """``evaluate model.nir`` converts on rank 0 first; rasters of the wrong shape or dtype
    are refused with one line naming the file and the expected shape."""
    rng = np.random.default_rng(4)
    nir_file = DATA / "braille_noDelay_noBias_subtract.nir"
    np.savez(tmp_path / "ok.npz", x=rng.random((4, 12, 12)) < .3, y=rng.integers(0, 7, 4))
    np.savez(tmp_path / "shape.npz", x=rng.random((4, 12, 10)) < .3, y=rng.integers(0, 7, 4))
    np.savez(tmp_path / "dtype.npz", x=rng.integers(-1, 2, (4, 12, 12)).astype(np.int8),
             y=rng.integers(0, 7, 4))
    base = [DISTSNN, "evaluate", str(nir_file), "--nir-source", "snntorch", "--no-progress",
            "--build-dir", str(build_dir), "-t", "12"]
    ok = run_mpi(2, base + ["--data", str(tmp_path / "ok.npz")], timeout=600)
    assert ok.returncode == 0, ok.stderr
    for name, words in (("shape", ["shape.npz[x]", "(12, 10)", "[examples, steps, 12]"]),
                        ("dtype", ["dtype.npz[x]", "int8"])):
        proc = run_mpi(2, base + ["--data", str(tmp_path / f"{name}.npz")], timeout=600)
        assert proc.returncode == 2
        lines = [line for line in proc.stderr.splitlines() if line.startswith("distsnn: error")]
        assert len(lines) == 1, proc.stderr
        assert all(w in lines[0] for w in words), lines[0]


def test_bad_nir_file_gives_one_line(tmp_path):
    """A loop of linear nodes alone (a -> b -> a) in a file: rc 2 and one line naming it."""
    import nir
    graph = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([2])}),
        "a": nir.Linear(np.eye(2)), "b": nir.Linear(np.eye(2)),
        "lif": nir.IF(r=np.ones(2), v_threshold=np.ones(2), v_reset=np.zeros(2)),
        "output": nir.Output(output_type={"output": np.array([2])})},
        edges=[("input", "a"), ("a", "b"), ("b", "a"), ("b", "lif"), ("lif", "output")],
        type_check=False)
    nir.write(tmp_path / "bad.nir", graph)
    proc = run([DISTSNN, "convert", str(tmp_path / "bad.nir"), "-o", str(tmp_path / "n.h5")])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(("distsnn: error: node 'a'", "distsnn: error: node 'b'"))
    assert "cycle through no neuron node" in lines[0]


def test_inspect_shows_preset_graph_and_alignment():
    braille = str(DATA / "braille_noDelay_bias_zero.nir")
    proc = run([DISTSNN, "inspect", braille, "--nir-source", "snntorch", "--nir-reset",
                "zero_late"])
    assert proc.returncode == 0, proc.stderr
    assert ("NIR graph, preset snntorch: dt 0.0001 s, euler, reset zero_late, order current, "
            "current jump euler") in proc.stdout
    assert "  lif1.w_rec (Affine) -> lif1.lif (CubaLIF)" in proc.stdout
    assert ("depth alignment: an example runs T + 2 steps; population depths input 0, "
            "lif1_lif 1, lif2 2") in proc.stdout
    assert "  recurrent edge lif1.lif -> lif1.lif" in proc.stdout
    refused = run([DISTSNN, "inspect", braille, "--nir-source", "spikingjelly"])
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        ("distsnn: error: --nir-source spikingjelly: its files do not record the unit of "
         "their time constants; pass --nir-dt (1 when tau is in steps)")]
