"""The README gives the two set-up commands, and its API reference matches the docstrings."""
import re

from conftest import REPO
from distsnn.apidoc import END, START, render


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
        "run: python -m distsnn.apidoc --write README.md"
