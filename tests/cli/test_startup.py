"""Start-up: evaluating a ready network file never imports TensorFlow or Keras."""
from __future__ import annotations

import json
import sys

from helpers.processes import run

SCRIPT = """
import json, sys
from distsnn.cli import main
sys.argv = ["distsnn", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as exit:
    code = exit.code
print(json.dumps({"rc": code, "modules": sorted(m for m in ("tensorflow", "keras", "torch")
                                                 if m in sys.modules)}))
"""


def test_evaluating_a_network_file_does_not_import_tensorflow(small_files, build_dir, tmp_path):
    out = tmp_path / "results.json"
    proc = run([sys.executable, "-c", SCRIPT, "evaluate", str(small_files["net"]), "--data",
                str(small_files["data"]), "-t", "5", "--build-dir", str(build_dir),
                "--no-progress", "-o", str(out)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout.strip().splitlines()[-1])
    assert status == {"rc": 0, "modules": []}
    assert json.loads(out.read_text())["dataset"]["examples"] == small_files["n"]
