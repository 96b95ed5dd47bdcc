"""The README gives the two set-up commands, and its API reference matches the docstrings."""
import re
import sys

import pytest

from distsnn.cli.apidoc import END, START, render
from distsnn.cli.demo import comparison_table
from helpers.processes import REPO, run_mpi


def test_readme_gives_exactly_the_two_setup_commands():
    text = (REPO / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("##", 1)[0]
    block = re.search(r"```bash\n(.*?)```", quick, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_readme_api_reference_is_up_to_date():
    text = (REPO / "README.md").read_text()
    section = text.split(START, 1)[1].split(END, 1)[0]
    assert section.strip() == render().strip(), \
        "run: python -m distsnn.cli.apidoc --write README.md"


def _section(text: str, title: str, fence: str) -> str:
    return re.search(rf"```{fence}\n(.*?)```", text.split(title, 1)[1], re.S).group(1)


def test_readme_demo_table_is_demo_output_with_its_date_and_machine():
    block = _section((REPO / "README.md").read_text(), "`make demo` trains", "").splitlines()
    assert block[0] == comparison_table(0.5, {}).splitlines()[0]
    assert re.fullmatch(r"measured \d{4}-\d\d-\d\d on \d+ MPI ranks, .+, \d+ cores", block[-1])


@pytest.mark.mpi
def test_readme_library_example_prints_its_accuracy_once_under_mpiexec(tmp_path):
    example = _section((REPO / "README.md").read_text(), "## Library use", "python")
    script = tmp_path / "example.py"
    script.write_text(
        "import keras\nimport numpy as np\n"
        "keras.utils.set_random_seed(0)\n"
        "keras_model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, "
        "activation='relu'), keras.layers.Dense(3)])\n"
        "rng = np.random.default_rng(0)\n"
        "x_norm = rng.random((16, 6)).astype(np.float32)\n"
        "x_test, y_test = rng.random((10, 6)).astype(np.float32), rng.integers(0, 3, 10)\n"
        + example)
    proc = run_mpi(2, [sys.executable, str(script)], timeout=300,
                   env={"DISTSNN_BUILD_DIR": str(tmp_path / "build")})
    assert proc.returncode == 0, proc.stderr
    assert len(re.findall(r"^Accuracy = \d+\.\d\d%$", proc.stdout, re.M)) == 1, proc.stdout
