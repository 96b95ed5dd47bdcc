"""The import rules of ARCHITECTURE.md, checked on every module of the package.

Each module belongs to a stage of the data flow; it may import the foundation and earlier
stages, never a later one (at import time or inside a function), except the exceptions
listed in ARCHITECTURE.md. Only ``distsnn.convert`` imports ML frameworks, only
``distsnn.genn`` imports pygenn, only the communicator imports mpi4py. Imports under ``if
TYPE_CHECKING:`` never run and are not counted.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "distsnn"

#: Stage of each module, by the longest matching prefix. 0 is the foundation.
STAGES = {
    "distsnn": 0, "distsnn.errors": 0, "distsnn.utils": 0, "distsnn.parallel": 0,
    "distsnn.communicators": 0,
    "distsnn.network": 1, "distsnn.neurons": 1, "distsnn.connectivity": 1,
    "distsnn.synapses": 1, "distsnn.readouts": 1, "distsnn.layout": 1, "distsnn.netfile": 1,
    "distsnn.nir_neurons": 1,
    "distsnn.data": 2,
    "distsnn.convert": 3,
    "distsnn.genn": 4,
    "distsnn.compilers": 5, "distsnn.callbacks": 5, "distsnn.metrics": 5,
    "distsnn.spike_norm": 5,
    "distsnn.jobs": 6,
    "distsnn.cli": 7, "distsnn.__main__": 7,
}

#: (importer, imported): the deliberate imports of a later stage, each explained in
#: ARCHITECTURE.md. Both run inside functions.
EXCEPTIONS = {
    ("distsnn.convert.converters", "distsnn.compilers"),  # mlGeNN's Converter.create_compiler
    ("distsnn.convert", "distsnn.spike_norm"),  # mlGeNN's distsnn.convert.spike_normalise
}

#: Third-party packages that only one place may import.
FRAMEWORKS = {
    "keras": "distsnn.convert", "tensorflow": "distsnn.convert", "onnx": "distsnn.convert",
    "onnxruntime": "distsnn.convert", "torch": "distsnn.convert", "nir": "distsnn.convert",
    "pygenn": "distsnn.genn",
    "mpi4py": "distsnn.parallel.communicator",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def stage(module: str) -> int:
    prefix = max((p for p in STAGES if module == p or module.startswith(p + ".")), key=len)
    return STAGES[prefix]


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def imports(module: str) -> set[str]:
    """Every module ``module`` imports when it runs (top level and inside functions)."""
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _is_type_checking(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from package import submodule` imports the submodule
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)
    visit(tree)
    return found - {module}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_earlier_stages(module):
    later = sorted(i for i in imports(module) if i in MODULES and stage(i) > stage(module)
                   and not any(within(module, a) and within(i, b) for a, b in EXCEPTIONS))
    assert not later, (f"{module} (stage {stage(module)}) imports a later stage: {later}; "
                       f"move the code, or list the exception in ARCHITECTURE.md")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_frameworks_only_in_their_package(module):
    wrong = sorted(i for i in imports(module) for fw, home in FRAMEWORKS.items()
                   if within(i, fw) and not within(module, home))
    assert not wrong, f"{module} imports {wrong}: only {FRAMEWORKS} may"


def test_no_import_circles():
    graph = {m: {i for i in imports(m) if i in MODULES} for m in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                pytest.fail(f"import circle: {' -> '.join(path[path.index(n):] + [n])}")
            elif n not in state:
                walk(n)
        path.pop()
        state[m] = 2
    for m in sorted(graph):
        if m not in state:
            walk(m)


def test_the_rules_see_imports():
    """The parser finds the imports the rules are about (a rule that sees nothing passes)."""
    assert "distsnn.compilers" in imports("distsnn.convert.converters")
    assert "pygenn" in imports("distsnn.genn.builder")
    assert "mpi4py" in imports("distsnn.parallel.communicator")
    assert "distsnn.connectivity" in imports("distsnn.convert.plan")  # `from distsnn import x`
    assert "distsnn.genn" not in imports("distsnn.compilers.simulation")  # TYPE_CHECKING only
