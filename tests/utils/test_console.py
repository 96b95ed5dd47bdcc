"""Third-party output is hidden unless it explains a failure; progress lines in log files."""
import io
import re
import sys

import pytest

from distsnn.utils.progress import Progress
from helpers.processes import run

# Builds a one-layer network with GeNN twice: untouched, then with a generated source file
# broken, so that the second build's make/compiler call fails.
BUILD_TWICE = """
import sys
from pathlib import Path
import numpy as np
from distsnn.compilers import InferenceCompiler
from distsnn.connectivity import Dense
from distsnn.network import Network
from distsnn.neurons import IntegrateFire, IntegrateFireInput
net = Network()
inp = net.add_population("in", (3,), IntegrateFireInput())
out = net.add_population("out", (2,), IntegrateFire(readout="spike_count"))
net.connect(inp, out, Dense(np.ones((3, 2), np.float32)))
net.outputs = [out]
build = Path(sys.argv[1])
with InferenceCompiler(5, backend="cpu", build_dir=str(build)).compile(net):
    print("first build done", flush=True)
source = next(build.glob("*_CODE/neuronUpdate.cc"))
source.write_text(source.read_text() + "\\nthis is not C++;\\n")
with InferenceCompiler(5, backend="cpu", build_dir=str(build)).compile(net):
    pass
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_genn_build_output_is_hidden_but_a_compile_error_is_shown(tmp_path, verbose):
    proc = run([sys.executable, "-c", BUILD_TWICE, str(tmp_path / "build")], timeout=300,
               env={"DISTSNN_VERBOSE": "1" if verbose else "0"})
    assert proc.returncode != 0
    first = proc.stdout.split("first build done")[0]
    assert ("make" in first) == verbose, proc.stdout  # GeNN's make lines only when verbose
    # the compiler's own message about the broken line reaches stderr either way
    assert re.search(r"neuronUpdate\.cc:\d+:\d+: error", proc.stderr), proc.stderr
    assert "this is not C++" in proc.stderr
    if not verbose:
        assert "[output of GeNN's code generation and build]" in proc.stderr


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_off_a_terminal_prints_plain_lines_every_tenth():
    stream, clock = io.StringIO(), _Clock()
    progress = Progress(200, stream, interval_s=60.0, clock=clock)
    for done in range(0, 201, 5):  # 5 examples per second
        clock.now += 1.0
        progress.update(done)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert len(lines) == 10  # 10 %, 20 %, ..., 90 %, then the final line
    assert lines[0] == "distsnn: 20/200 examples (10%), 4.0 examples/s, ETA 0:00:45"
    assert lines[-1] == "distsnn: 200/200 examples (100%), 4.9 examples/s, in 0:00:41"
    assert all(re.fullmatch(r"distsnn: \d+/200 examples \(\d+%\), [\d.]+ examples/s, "
                            r"(ETA|in) \d:\d\d:\d\d", line) for line in lines)


def test_progress_off_a_terminal_also_prints_after_an_interval():
    stream, clock = io.StringIO(), _Clock()
    progress = Progress(1000, stream, interval_s=30.0, clock=clock)
    for done in range(1, 11):  # 1 example every 10 s: 10 % takes far longer than 30 s
        clock.now += 10.0
        progress.update(done)
    assert [line.split(",")[0] for line in stream.getvalue().splitlines()] == [
        "distsnn: 3/1000 examples (0%)", "distsnn: 6/1000 examples (0%)",
        "distsnn: 9/1000 examples (0%)"]
