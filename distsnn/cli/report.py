"""Human-readable summaries and plots of evaluation results (rank 0 only)."""
from __future__ import annotations

from pathlib import Path


def results_table(results: dict) -> str:
    """Accuracy per readout timestep, firing rates per population and throughput."""
    lines = []
    schedule = results["schedule"]
    lines.append(f"distsnn {results['distsnn_version']}: {results['dataset']['examples']} examples"
                 f" on {results['ranks']} rank(s), {results['backend']} backend, "
                 + (f"few-spike K={schedule['k']}" if schedule["mode"] == "few-spike"
                    else "rate-coded"))
    lines.append("")
    lines.append(f"{'timesteps':>10} {'accuracy':>9} {'top-k':>9}")
    for checkpoint, metrics in results["metrics"].items():
        acc = metrics.get("sparse_categorical_accuracy", {}).get("result")
        topk = next((m["result"] for n, m in metrics.items() if n.startswith("top_")), None)
        lines.append(f"{checkpoint:>10} {_pct(acc):>9} {_pct(topk):>9}")
    if results.get("ann_accuracy") is not None:
        lines.append(f"{'ANN':>10} {_pct(results['ann_accuracy']):>9}")
    spikes = results["spikes"]
    lines.append("")
    lines.append(f"{'population':<24} {'neurons':>8} {'spikes/neuron/example':>22} "
                 f"{'rate/step':>10}")
    for name, pop in spikes["populations"].items():
        lines.append(f"{name:<24} {pop['neurons']:>8} {pop['spikes_per_neuron_per_example']:>22.3f}"
                     f" {pop['rate_per_timestep']:>10.4f}")
    lines.append("")
    lines.append(f"synaptic operations per example: {spikes['synaptic_operations_per_example']:.4g}")
    eps = results.get("examples_per_second")
    t = results["timings_s"]
    lines.append(f"throughput: {eps:.1f} examples/s" if eps else "throughput: n/a")
    lines.append("timings [s]: " + ", ".join(f"{k} {v:.2f}" for k, v in t.items()))
    return "\n".join(lines)


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def plot_results(results: dict, path: str | Path) -> None:
    """Accuracy against timesteps (every curve point, the ANN as a reference line when
    known) and firing rate per population; the format follows the extension (.png at 150
    dpi, .pdf, .svg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_rate) = plt.subplots(1, 2, figsize=(11, 4))
    curve = results.get("accuracy_curve") or {}
    table = {int(c): 100 * (m["sparse_categorical_accuracy"]["result"] or 0)
             for c, m in results["metrics"].items()}
    if len(curve.get("timesteps", ())) > 1:
        ax_acc.plot(curve["timesteps"], [100 * (a or 0) for a in curve["accuracy"]],
                    label="SNN")
    ax_acc.plot(list(table), list(table.values()), "o", color="C0",
                label=None if len(curve.get("timesteps", ())) > 1 else "SNN")
    shown = list(table.values()) + [100 * (a or 0) for a in curve.get("accuracy", ())]
    ann = results.get("ann_accuracy")
    if ann is not None:
        ax_acc.axhline(100 * ann, color="C3", linestyle="--", label=f"ANN {100 * ann:.2f}%")
        shown.append(100 * ann)
    ax_acc.set_ylim(max(0.0, min(shown) - 5.0), 100.5)
    ax_acc.set_xlabel("timesteps per example")
    ax_acc.set_ylabel("accuracy [%]")
    ax_acc.set_title(f"{_method(results)}, N = {results['dataset']['examples']} examples")
    ax_acc.legend(loc="lower right")
    ax_acc.grid(True, alpha=0.3)
    pops = results["spikes"]["populations"]
    names = list(pops)
    rates = [pops[n]["rate_per_timestep"] for n in names]
    ax_rate.bar(range(len(names)), rates)
    ax_rate.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax_rate.set_ylabel("spikes per neuron per timestep")
    ax_rate.set_title("firing rate per population")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def _method(results: dict) -> str:
    """The conversion method as a title, e.g. "data-norm (poisson input)"."""
    meta = results["network"]["metadata"]
    schedule = results["schedule"]
    if schedule["mode"] == "few-spike":
        return f"few-spike, K = {schedule['k']}"
    method = meta.get("method", "network")
    params = meta.get("method_params", {})
    detail = ", ".join(f"{v} {k.replace('_type', '')}" for k, v in params.items()
                       if k in ("input_type", "reset"))
    return f"{method} ({detail})" if detail else method
