"""Text description of a network: what ``distsnn inspect`` prints."""
from __future__ import annotations

import json

import numpy as np

from distsnn.genn.lowering import LoweringPlan, format_bytes
from distsnn.network import Network


def _value(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, np.ndarray):
        return (f"array{list(value.shape)} in [{value.min():.4g}, {value.max():.4g}]"
                if value.size else "array[]")
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def describe_network(network: Network, plan: LoweringPlan) -> str:
    """Populations (kind, shape, thresholds or alphas), connections with their lowering and
    memory estimate, the per-rank total, and metadata."""
    lines = [f"network {network.content_hash()[:16]}: {len(network.populations)} populations, "
             f"{len(network.connections)} connections, "
             f"{sum(p.size for p in network.populations)} neurons"]
    lines.append(f"inputs: {[p.name for p in network.inputs]}  "
                 f"outputs: {[p.name for p in network.outputs]}")
    lines.append("")
    lines.append("populations:")
    for pop in network.populations:
        params = ", ".join(f"{k}={_value(v)}" for k, v in pop.neuron.params().items())
        lines.append(f"  {pop.name:<22} {str(pop.shape):<14} {pop.neuron.kind:<16} {params}")
    lines.append("")
    lines.append("connections:")
    for conn in network.connections:
        params = ", ".join(f"{k}={_value(v)}" for k, v in conn.connectivity.params().items())
        lines.append(f"  {conn.source.name} -> {conn.target.name}: {conn.connectivity.kind} "
                     f"({params})")
    if "nir" in network.metadata:
        lines.append("")
        lines.extend(describe_nir(network))
    lines.append("")
    lines.extend(describe_plan(plan))
    lines.append("")
    lines.append("metadata:")
    lines.append(json.dumps(network.metadata, indent=2, default=str))
    return "\n".join(lines)


def describe_nir(network: Network) -> list[str]:
    """A NIR network: the preset, the flattened graph, each population's depth and the
    connections' alignment."""
    nir = network.metadata["nir"]
    preset = nir["preset"]
    lines = [f"NIR graph, preset {preset['source']}: dt {preset['dt']:g} {preset['unit']}, "
             f"{preset['discretisation']}, reset {preset['reset']}, order {preset['order']}, "
             f"current jump {preset['jump']}{', multi-spike' if preset['multi_spike'] else ''}",
             "flattened graph:"]
    for src, dst in nir["graph"]["edges"]:
        kinds = nir["graph"]["nodes"]
        lines.append(f"  {src} ({kinds[src]}) -> {dst} ({kinds[dst]})")
    lines.append(f"depth alignment: an example runs T + {nir['span']} steps; population depths "
                 + ", ".join(f"{n} {d}" for n, d in nir["depth"].items()))
    for conn in network.connections:
        if conn.connectivity.delay:
            lines.append(f"  {conn.name}: delayed {conn.connectivity.delay} step(s)")
    for edge in nir["recurrent"]:
        lines.append(f"  recurrent edge {edge}")
    for late in nir["not_aligned"]:
        lines.append(f"  NOT ALIGNED (a loop over several layers): {late}")
    return lines


def describe_plan(plan: LoweringPlan) -> list[str]:
    """One line per connection (GeNN matrix type, synapses, estimated bytes) and the totals."""
    lines = ["lowering (estimated memory per rank):",
             f"  {'connection':<34} {'matrix':<9} {'synapses':>15} {'bytes':>11}"]
    for c in plan.connections.values():
        lines.append(f"  {c.name:<34} {c.matrix:<9} {c.synapses:>15,} "
                     f"{format_bytes(c.total_bytes()):>11}")
    lines.append(f"  neurons {format_bytes(plan.neuron_bytes)}, network arrays "
                 f"{format_bytes(plan.network_bytes)}; peak per rank "
                 f"{format_bytes(plan.peak_bytes)}")
    if plan.budget_bytes is not None:
        verdict = "fits" if plan.peak_bytes <= plan.budget_bytes else "DOES NOT FIT"
        lines.append(f"  budget {format_bytes(plan.budget_bytes)} ({plan.budget_source}): "
                     f"{verdict}")
    return lines
