"""The results file's JSON layout and the accuracy-vs-time plot."""
import json
import re
import struct

import matplotlib

from distsnn.cli.report import plot_results
from distsnn.cli.results_json import to_json


def _results(curve_steps):
    accuracy = {"sparse_categorical_accuracy": {"result": 0.9}}
    return {
        "network": {"metadata": {"method": "data-norm",
                                 "method_params": {"input_type": "poisson",
                                                   "reset": "subtract"}}},
        "schedule": {"mode": "rate", "timesteps": [100, 200]},
        "dataset": {"examples": 359},
        "metrics": {"100": accuracy, "200": accuracy},
        "accuracy_curve": {"timesteps": curve_steps,
                           "accuracy": [min(0.9, s / 100) for s in curve_steps]},
        "ann_accuracy": 0.9777,
        "spikes": {"populations": {"in": {"rate_per_timestep": 0.2},
                                   "out": {"rate_per_timestep": 0.05}}},
    }


def test_plot_draws_every_curve_point_the_ann_line_n_and_method(tmp_path):
    steps = list(range(4, 201, 4))
    # text as text, every vertex kept
    with matplotlib.rc_context({"svg.fonttype": "none", "path.simplify": False}):
        plot_results(_results(steps), tmp_path / "r.svg")
    svg = (tmp_path / "r.svg").read_text()
    assert "ANN 97.77%" in svg
    assert "data-norm (poisson input, subtract reset), N = 359 examples" in svg
    # the SNN curve is one polyline through all 50 points
    assert len(steps) - 1 in [d.count("L") for d in re.findall(r'd="([^"]*)"', svg)]
    plot_results(_results(steps), tmp_path / "r.png")
    width, height = struct.unpack(">II", (tmp_path / "r.png").read_bytes()[16:24])
    assert (width, height) == (11 * 150, 4 * 150)  # 150 dpi
    plot_results(_results(steps), tmp_path / "r.pdf")
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")


def test_json_puts_lists_of_numbers_on_one_line():
    value = {"matrix": [[1, 0], [2, 3]], "curve": [0.5, 0.75], "empty": {}, "name": "x"}
    text = to_json(value)
    assert json.loads(text) == value
    assert text == ('{\n  "matrix": [\n    [1, 0],\n    [2, 3]\n  ],\n'
                    '  "curve": [0.5, 0.75],\n  "empty": {},\n  "name": "x"\n}\n')
