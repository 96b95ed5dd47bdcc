"""Reading NIR graphs and inlining their sub-graphs (snnTorch exports recurrent layers as
nested graphs; flat files may also name nested nodes with dotted names)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distsnn.convert.errors import ConversionError
from distsnn.utils.files import file_sha256


class NIRGraphError(ConversionError):
    """A NIR graph cannot be converted; the message names the node and what to do."""


@dataclass
class FlatGraph:
    """A NIR graph with its sub-graphs inlined: nodes by dotted name, their NIR kinds, edges."""

    nodes: dict[str, Any] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def preds(self, name: str) -> list[str]:
        return [s for s, t in self.edges if t == name]

    def succs(self, name: str) -> list[str]:
        return [t for s, t in self.edges if s == name]


def read_graph(source) -> tuple[Any, str]:
    """A ``nir.NIRGraph`` and a hash of it: from a ``.nir`` path or the graph itself."""
    import nir
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise NIRGraphError(f"{path}: no such NIR file")
        try:
            graph = nir.read(path)
        except Exception as err:  # noqa: BLE001 - any reader failure names the file
            raise NIRGraphError(f"{path}: cannot be read as a NIR graph "
                                f"({type(err).__name__}: {err})") from None
        return graph, file_sha256(path)
    if type(source).__name__ != "NIRGraph":
        raise NIRGraphError(f"expected a .nir file or a nir.NIRGraph, not "
                            f"{type(source).__name__}")
    return source, ""


def flatten(graph, prefix: str = "", flat: FlatGraph | None = None) -> FlatGraph:
    """Inline nested graphs: an edge to sub-graph ``g`` goes to its Input, one from ``g``
    leaves its Output; both become identities."""
    flat = flat or FlatGraph()
    top = not prefix
    for name, node in graph.nodes.items():
        full = prefix + str(name)
        kind = type(node).__name__
        if kind == "NIRGraph":
            flatten(node, full + ".", flat)
            continue
        if not top and kind in ("Input", "Output"):
            kind = "Identity"
        flat.nodes[full], flat.kinds[full] = node, kind
    for src, dst in graph.edges:
        flat.edges.append((_endpoint(graph, prefix, str(src), "Output"),
                           _endpoint(graph, prefix, str(dst), "Input")))
    return flat


def _endpoint(graph, prefix: str, name: str, role: str) -> str:
    head, _, rest = name.partition(".")
    node = graph.nodes.get(head)
    if type(node).__name__ != "NIRGraph":
        return prefix + name
    if rest:
        return _endpoint(node, prefix + head + ".", rest, role)
    ends = [n for n, v in node.nodes.items() if type(v).__name__ == role]
    if len(ends) != 1:
        raise NIRGraphError(f"sub-graph {prefix + head!r} has {len(ends)} {role} nodes; name "
                            f"the one an edge uses as {head}.<node>")
    return _endpoint(node, prefix + head + ".", str(ends[0]), role)


