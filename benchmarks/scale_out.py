"""Start-up at scale: a small network on 1..32 ranks, every phase per rank, fitted and
extrapolated to 512 ranks on 64 nodes.

Each run is ``LAUNCHER distsnn evaluate net.h5 --data data.npz ...`` (default launcher
``mpiexec -n {n}``; on one node the ranks are oversubscribed: 32 ranks on 2 cores measure
contention, so every phase is reported as wall and CPU seconds). Weak scaling: 4 examples per
rank. The GeNN build is made once before the measured runs, so ``build`` is the cached path
(the node's first rank takes the build lock and checks the build, the others wait for it).

Per phase the script takes, over the ranks, the largest wall time (the critical path) and the
largest CPU time (the busiest rank's work) from the results file's ``timings_by_rank``, plus
``launch`` (launcher start to the rank's process start; wall only) and ``exit`` (last record
to the launcher's end: writing the results, MPI finalize, process exit; CPU: the launcher's
children's CPU time after the records, per rank, hydra's included), and the network-file bytes
moved (read on rank 0 plus received by the others). It fits each phase's CPU seconds and wall
seconds with ``a``, ``a + b log2 N`` and ``a + b N`` (least squares, the lowest BIC wins) and
extrapolates: phases of one process (imports, build, load, first batch, launch, exit) grow
with the ranks on a node (512 / 64 = 8 ranks per node), collective phases (MPI init,
conversion wait, broadcast, barriers, reduction, gathers) with all 512.

    .venv/bin/python benchmarks/scale_out.py                       # 1..32 ranks, this node
    .venv/bin/python benchmarks/scale_out.py --ranks 2,4,8,16 \\
        --launcher "srun -N2 --mpi=pmi2 -n {n}" --work-dir /shared/scale \\
        --build-dir /tmp/distsnn-scale-build --tag slurm2
    .venv/bin/python benchmarks/scale_out.py --from-json benchmarks/results/scale_out.json

Writes benchmarks/results/scale_out.json (``-<tag>`` with ``--tag`` or $DISTSNN_BENCH_TAG) and
the section between the ``scale_out`` (``scale_out-<tag>``) markers of benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    BENCH,
    BIN,
    BUILD,
    DATA,
    MPIEXEC,
    REPO,
    machine_info,
    table,
    write_result,
)

#: phases in the order a rank runs them; ``launch`` and ``exit`` are seen from the launcher
PHASES = ["launch", "start", "mpi_init", "communicators", "conversion_wait", "broadcast", "build",
          "load", "ready_wait", "journal_open", "first_batch", "evaluation", "journal_write",
          "reduction", "gather", "exit"]
#: work of one process: grows with the ranks sharing its node, not with the job's ranks
NODE_LOCAL = {"launch", "start", "build", "load", "first_batch", "evaluation", "journal_write",
              "exit"}
#: collectives: their work is the CPU time of the rank that arrives last (the least CPU over
#: the ranks); the others' extra CPU is MPICH spinning while it waits, which on 2 cores grows
#: with the ranks that must be scheduled first. Elsewhere the busiest rank's CPU is the work.
COLLECTIVE = {"mpi_init", "communicators", "broadcast", "ready_wait", "journal_open",
              "reduction", "gather"}
#: parts of ``evaluation`` (shown, not added again)
INSIDE_EVALUATION = {"first_batch", "journal_write"}
#: what removes each phase's growth, for the phase the model finds dominant at 512 ranks
REMEDIES = {
    "launch": "a launcher that starts each node's ranks from that node's daemon in parallel "
              "(srun, or hydra's proxies) and Python on node-local storage",
    "start": "the interpreter and its imports (CPU seconds from a local disk here) kept off "
             "the shared file system: the venv on node-local storage (a container image, or "
             "copied to /tmp by one rank per node), so 512 processes do not look up and read "
             "the same thousands of files at once; and fewer imports before MPI starts",
    "mpi_init": "an address exchange that does not grow with the ranks (srun --mpi=pmix, "
                "or MPICH's MPIR_CVAR_CH4_ROOTS_ONLY_PMI=1: node roots alone use PMI)",
    "communicators": "fewer blocking collectives at start-up (one Split_type and 3 Dups one "
                     "after another; MPI_Comm_idup would overlap them)",
    "conversion_wait": "converting once beforehand (`distsnn convert`) and evaluating the "
                       "network file",
    "broadcast": "one reader per node plus a node-local broadcast: the file's bytes crossing "
                 "the network once per node (64 copies, not 511), then shared memory",
    "build": "building once per node image (a read-only build directory shipped with the "
             "job), so no rank waits for the build lock",
    "load": "loading from node-local storage",
    "ready_wait": "balancing the build and load across ranks (the wait is for the slowest)",
    "journal_open": "one journal file per node instead of one per rank",
    "reduction": "one all-reduce of every count packed into one buffer instead of one per "
                 "metric and readout checkpoint",
    "gather": "gathering per-rank records only on request",
    "exit": "ending each process without the interpreter's teardown once the results are "
            "written (MPI_Finalize, then os._exit)",
    "first_batch": "touching the model's memory during load",
    "evaluation": "more examples per rank (start-up amortised)",
    "journal_write": "journaling larger chunks",
}
MODELS = {"constant": lambda n: np.zeros_like(n), "log N": np.log2, "N": lambda n: n}
README = BENCH / "README.md"
def markers(tag: str | None) -> tuple[str, str]:
    """The README markers of a run's section: ``scale_out`` untagged, ``scale_out-TAG``."""
    name = "scale_out" if not tag else f"scale_out-{tag}"
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


# --- the workload ---------------------------------------------------------------------------
def make_files(work: Path, examples: int) -> tuple[Path, Path]:
    """A 28x28x1 -> conv 3x3x8 -> dense 10 network file (IF input, deterministic) and a
    dataset of ``examples`` random inputs."""
    from distsnn.connectivity import Conv2D, Dense
    from distsnn.netfile import save_network
    from distsnn.network import Network
    from distsnn.neurons import IntegrateFire, IntegrateFireInput
    work.mkdir(parents=True, exist_ok=True)
    net_path, data_path = work / "net.h5", work / f"data-{examples}.npz"
    rng = np.random.default_rng(7)
    if not net_path.exists():
        net = Network(metadata={"method": "benchmark"})
        inp = net.add_population("in", (28, 28, 1), IntegrateFireInput())
        hid = net.add_population("conv", (28, 28, 8), IntegrateFire())
        out = net.add_population("out", (10,), IntegrateFire(readout="spike_count"))
        net.connect(inp, hid, Conv2D(rng.normal(0, 0.5, (3, 3, 1, 8)).astype(np.float32),
                                     padding="same"))
        net.connect(hid, out, Dense(rng.normal(0, 0.05, (28 * 28 * 8, 10)).astype(np.float32)))
        net.outputs = [out]
        save_network(net, net_path)
    if not data_path.exists():
        data_rng = np.random.default_rng(examples)
        np.savez(data_path, x=data_rng.random((examples, 28, 28, 1)).astype(np.float32),
                 y=data_rng.integers(0, 10, examples))
    return net_path, data_path


def launcher_prefix(template: str, ranks: int) -> list[str]:
    """The launcher's words for ``ranks`` ranks: ``{n}`` replaced, else ``-n N`` appended."""
    words = shlex.split(template.replace("{mpiexec}", MPIEXEC))
    if any("{n}" in w for w in words):
        return [w.replace("{n}", str(ranks)) for w in words]
    return [*words, "-n", str(ranks)]


def run_once(ranks: int, args, net: Path, data: Path, out: Path) -> dict:
    """One evaluation under the launcher; the results file plus the launcher's view."""
    cmd = [*launcher_prefix(args.launcher, ranks), str(BIN / "distsnn"), "evaluate", str(net),
           "--data", str(data), "-t", str(args.timesteps), "-o", str(out), "--backend", "cpu",
           "--build-dir", str(args.build_dir), "--no-progress", "--chunk-size",
           str(args.chunk_size)]
    if out.exists():
        out.unlink()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = os.getloadavg()[0]
    started = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    ended = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"{shlex.join(cmd)} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}")
    results = json.loads(out.read_text())
    return {"ranks": ranks, "command": shlex.join(cmd), "launcher_wall_s": ended - started,
            "launched_at": started, "ended_at": ended,
            "children_cpu_s": (after.ru_utime + after.ru_stime)
            - (before.ru_utime + before.ru_stime),
            "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "hosts": sorted({r["host"] for r in results["timings_by_rank"]}),
            "timings_by_rank": results["timings_by_rank"],
            "examples": results["dataset"]["examples"]}


# --- reduction over ranks, fits -------------------------------------------------------------
def phases_of(run: dict) -> dict:
    """Per phase: the largest wall and CPU seconds over the ranks (the launcher's phases:
    wall only), and the network-file bytes moved."""
    ranks = run["timings_by_rank"]
    out: dict[str, dict] = {}
    for phase in PHASES:
        if phase == "launch":
            walls = [r["recorded_at"] - r["since_start_s"] - run["launched_at"] for r in ranks]
            out[phase] = {"wall": max(max(walls), 0.0), "cpu": None}  # /proc: 10 ms steps
        elif phase == "exit":  # CPU: what all processes used after the records, per rank
            after = run["children_cpu_s"] - sum(r["cpu_since_start_s"] for r in ranks)
            out[phase] = {"wall": run["ended_at"] - max(r["recorded_at"] for r in ranks),
                          "cpu": max(after, 0.0) / len(ranks)}
        else:
            walls = [r["wall_s"].get(phase, 0.0) for r in ranks]
            cpus = [r["cpu_s"].get(phase, 0.0) for r in ranks]
            out[phase] = {"wall": max(walls), "cpu": min(cpus) if phase in COLLECTIVE
                          else max(cpus), "cpu_max": max(cpus), "cpu_min": min(cpus),
                          "cpu_mean": sum(cpus) / len(cpus)}
    moved = sum(sum(r["bytes"].values()) for r in ranks)
    return {"phases": out, "network_bytes_moved": moved,
            "network_file_bytes": ranks[0]["bytes"].get("network_file_read", 0),
            "cpu_all_ranks_s": sum(r["cpu_since_start_s"] for r in ranks),
            "launcher_wall_s": run["launcher_wall_s"],
            "load_1min": run.get("load_1min", [None])[0]}


def median_of(runs: list[dict]) -> dict:
    """Each number of :func:`phases_of`'s records: the median over repeated runs."""
    def med(values):
        values = [v for v in values if v is not None]
        return float(np.median(values)) if values else None
    first = runs[0]
    return {"repeats": len(runs),
            "phases": {ph: {k: med([r["phases"][ph][k] for r in runs]) for k in v}
                       for ph, v in first["phases"].items()},
            **{k: med([r[k] for r in runs]) for k in first if k != "phases"}}


def fit(ns: list[int], ys: list[float]) -> dict:
    """``y = a + b g(N)`` for g in constant, log2 N, N (b >= 0); the lowest BIC wins."""
    n, y = np.asarray(ns, float), np.asarray(ys, float)
    best = None
    for name, g in MODELS.items():
        x = g(n)
        if name == "constant":
            a, b = float(y.mean()), 0.0
        else:
            b = float(np.polyfit(x, y, 1)[0]) if np.ptp(x) > 0 else 0.0
            b = max(b, 0.0)
            a = float((y - b * x).mean())
        rss = float(((y - a - b * x) ** 2).sum())
        k = 1 if name == "constant" else 2
        bic = len(y) * math.log(max(rss / len(y), 1e-12)) + k * math.log(len(y))
        if best is None or bic < best["bic"] - 1e-9:
            best = {"growth": name, "a": a, "b": b, "rss": rss, "bic": bic}
    return best


def predict(model: dict, ranks: int) -> float:
    return model["a"] + model["b"] * float(MODELS[model["growth"]](np.array([ranks], float))[0])


def analyse(runs: list[dict], target_ranks: int, target_nodes: int) -> dict:
    ns = sorted({r["ranks"] for r in runs})
    per_run = [median_of([phases_of(r) for r in runs if r["ranks"] == n]) for n in ns]
    per_node = target_ranks // target_nodes
    fits, extrapolation = {}, {}
    for phase in PHASES:
        walls = [p["phases"][phase]["wall"] for p in per_run]
        cpus = [p["phases"][phase]["cpu"] for p in per_run]
        fits[phase] = {"wall": fit(ns, walls),
                       "cpu": fit(ns, cpus) if None not in cpus else None}
        # CPU seconds where known (the work, free of the oversubscription's waiting); the
        # launcher's phases: wall
        model = fits[phase]["cpu"] or fits[phase]["wall"]
        at = per_node if phase in NODE_LOCAL else target_ranks
        extrapolation[phase] = {"ranks_in_model": at, "basis": "cpu" if fits[phase]["cpu"]
                                else "wall", "seconds": max(predict(model, at), 0.0)}
    counted = {p: e["seconds"] for p, e in extrapolation.items()
               if p not in INSIDE_EVALUATION and p not in ("evaluation", "ready_wait")}
    dominant = max(counted, key=counted.get)
    file_bytes = int(per_run[-1]["network_file_bytes"] or 0)
    return {"ranks": ns, "per_run": per_run, "fits": fits,
            "extrapolation": {"ranks": target_ranks, "nodes": target_nodes,
                              "ranks_per_node": per_node, "phases": extrapolation,
                              "start_up_s": sum(counted.values()), "dominant": dominant,
                              "dominant_share": counted[dominant] / sum(counted.values()),
                              "remedy": REMEDIES[dominant],
                              "network_bytes_moved": file_bytes * target_ranks,
                              "network_bytes_across_nodes_one_reader_per_node":
                                  file_bytes * (target_nodes - 1)}}


# --- report -----------------------------------------------------------------------------------
def tables(result: dict) -> str:
    a = result["analysis"]
    cols = ["phase"] + [f"{n} ranks" for n in a["ranks"]] + ["growth (CPU)", "growth (wall)"]
    rows = []
    for phase in PHASES:
        row = {"phase": phase + (" (in evaluation)" if phase in INSIDE_EVALUATION else "")
               + (" (least CPU)" if phase in COLLECTIVE else "")}
        for n, p in zip(a["ranks"], a["per_run"]):
            ph = p["phases"][phase]
            row[f"{n} ranks"] = (f"{ph['wall']:.3f} / {ph['cpu']:.3f}" if ph["cpu"] is not None
                                 else f"{ph['wall']:.3f} / -")
        f = a["fits"][phase]
        row["growth (CPU)"] = _growth(f["cpu"]) if f["cpu"] else "-"
        row["growth (wall)"] = _growth(f["wall"])
        rows.append(row)
    totals = {"phase": "whole run: launcher wall / all ranks' CPU"}
    for n, p in zip(a["ranks"], a["per_run"]):
        totals[f"{n} ranks"] = f"{p['launcher_wall_s']:.2f} / {p['cpu_all_ranks_s']:.2f}"
    moved = {"phase": "network-file bytes moved"}
    for n, p in zip(a["ranks"], a["per_run"]):
        moved[f"{n} ranks"] = f"{int(p['network_bytes_moved']):,}"
    load = {"phase": "1-min load average before the run"}
    for n, p in zip(a["ranks"], a["per_run"]):
        load[f"{n} ranks"] = f"{p['load_1min']:.1f}" if p["load_1min"] is not None else "-"
    return table(rows + [totals, moved, load], cols)


def _growth(model: dict) -> str:
    if model["growth"] == "constant":
        return f"constant {model['a']:.3g} s"
    return f"{model['a']:.3g} + {model['b']:.3g} × {model['growth']} s"


def extrapolation_text(result: dict) -> str:
    e = result["analysis"]["extrapolation"]
    phases = e["phases"]
    listed = sorted(((p, v) for p, v in phases.items()
                     if p not in INSIDE_EVALUATION and p not in ("evaluation", "ready_wait")),
                    key=lambda pv: -pv[1]["seconds"])
    parts = ", ".join(f"{p} {v['seconds']:.2f} s" for p, v in listed[:5])
    latency = ("one node cannot measure it" if result.get("where", "one node") == "one node"
               else "these nodes share one machine")
    return (f"Extrapolated from these fits to {e['ranks']} ranks on {e['nodes']} nodes "
            f"({e['ranks_per_node']} ranks per node; a process's own phases evaluated at "
            f"{e['ranks_per_node']} ranks, collective ones at {e['ranks']}; CPU seconds where "
            f"measured, which leave out the waiting of 32 ranks on 2 cores, and for "
            f"collectives the rank that arrived last, which leaves out MPICH's spinning; no "
            f"real network latency: {latency}): start-up about "
            f"{e['start_up_s']:.1f} s, largest phases {parts}. **{e['dominant']}** would "
            f"dominate ({e['dominant_share']:.0%} of it); what removes it: {e['remedy']}. The "
            f"network file ({int(result['analysis']['per_run'][-1]['network_file_bytes']):,} "
            f"bytes) "
            f"reaches every rank once: {e['network_bytes_moved']:,} bytes delivered at "
            f"{e['ranks']} ranks, of which one reader per node with a node-local broadcast "
            f"would send {e['network_bytes_across_nodes_one_reader_per_node']:,} across nodes.")


def write_readme(result: dict, tag: str | None) -> bool:
    """Write the run's section between its markers (see :func:`markers`); False when the
    README has none for this tag."""
    m, marks = result["machine"], markers(tag)
    body = "\n".join([
        marks[0],
        (f"Measured {result['date']} with `{result['command']}` on {m['cores']} cores "
         f"({m['cpu_model']}), {result.get('where', 'one node')}, launcher "
         f"`{result['launcher']}`, "
         f"{result['examples_per_rank']} examples per rank, T={result['timesteps']}, cached "
         f"GeNN build, {result.get('repeats', 1)} sweeps. Each cell: the median over the sweeps "
         f"of the largest wall / the largest CPU seconds over the ranks "
         f"(`launch`: the launcher's view, wall only; `exit`: wall / the CPU of all processes "
         f"after the records, per rank; collectives, marked, show the least CPU over the "
         f"ranks: the last to arrive, which does not spin waiting). The last row: the 1-minute "
         f"load average before each run (other people's jobs share the machine). Above "
         f"{m['cores']} ranks the ranks share {m['cores']} cores, so wall time measures "
         f"contention and CPU time "
         f"the work; the growth columns are the fits (`a + b·g(N)`, lowest BIC of constant, "
         f"log N, N)."),
        "",
        tables(result),
        "",
        extrapolation_text(result),
        marks[1]])
    text = README.read_text()
    start, end = text.find(marks[0]), text.find(marks[1])
    if start < 0 or end < 0:
        if not tag:
            raise RuntimeError(f"{README}: markers {marks} not found")
        return False
    README.write_text(text[:start] + body + text[end + len(marks[1]):])
    return True


def _rounded(value):
    """Seconds to the microsecond (Unix times to the millisecond): the stored runs stay small."""
    if isinstance(value, float):
        return round(value, 3 if value > 1e9 else 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", default="1,2,4,8,16,32")
    p.add_argument("--launcher", default="{mpiexec} -n {n}",
                   help="command prefix; {n}: the ranks, {mpiexec}: the venv's mpiexec "
                        "(e.g. 'srun -N2 --mpi=pmi2 -n {n}')")
    p.add_argument("--repeats", type=int, default=3, help="sweeps; medians per rank count")
    p.add_argument("--examples-per-rank", type=int, default=4)
    p.add_argument("--timesteps", type=int, default=20)
    p.add_argument("--chunk-size", type=int, default=2)
    p.add_argument("--timeout", type=float, default=600, help="seconds per run")
    p.add_argument("--work-dir", type=Path, default=DATA / "scale_out",
                   help="network and data files (shared by every node)")
    p.add_argument("--build-dir", type=Path, default=BUILD / "scale_out",
                   help="GeNN build directory (on several nodes: a node-local path)")
    p.add_argument("--target-ranks", type=int, default=512)
    p.add_argument("--target-nodes", type=int, default=64)
    p.add_argument("--tag", default=os.environ.get("DISTSNN_BENCH_TAG"),
                   help="write scale_out-TAG.json, and the README's scale_out-TAG section "
                        "where it has one")
    p.add_argument("--where", default="one node", help="where the ranks ran, for the README")
    p.add_argument("--from-json", type=Path, help="refit and report an earlier result file")
    args = p.parse_args(argv)
    if args.tag:
        os.environ["DISTSNN_BENCH_TAG"] = args.tag
    if args.from_json:
        result = json.loads(args.from_json.read_text())
    else:
        ranks = [int(r) for r in args.ranks.split(",")]
        runs_dir = BENCH / "results" / "runs"
        runs_dir.mkdir(parents=True, exist_ok=True)
        # build once per node (cached for the measured runs): the first rank count, e.g. one
        # rank per node with a multi-node launcher
        net, data = make_files(args.work_dir, ranks[0] * args.examples_per_rank)
        run_once(ranks[0], args, net, data, runs_dir / "scale_out_warmup.json")
        runs = []
        for repeat in range(args.repeats):  # sweeps one after another: load drifts spread out
            for n in ranks:
                _, data = make_files(args.work_dir, n * args.examples_per_rank)
                runs.append({**run_once(n, args, net, data, runs_dir / f"scale_out_n{n}.json"),
                             "repeat": repeat})
                r = runs[-1]
                print(f"{n:3d} ranks: launcher {r['launcher_wall_s']:.2f} s, CPU of all "
                      f"processes {r['children_cpu_s']:.2f} s", flush=True)
        result = {"benchmark": "scale_out", "machine": machine_info(),
                  "date": time.strftime("%Y-%m-%d", time.gmtime()),
                  "command": "python benchmarks/scale_out.py " + " ".join(argv or sys.argv[1:]),
                  "launcher": args.launcher, "where": args.where,
                  "examples_per_rank": args.examples_per_rank,
                  "timesteps": args.timesteps, "repeats": args.repeats, "runs": runs}
    result["runs"] = _rounded(result["runs"])
    result["analysis"] = analyse(result["runs"], args.target_ranks, args.target_nodes)
    path = write_result("scale_out", result)
    print(tables(result))
    print("\n" + extrapolation_text(result))
    if write_readme(result, args.tag):
        print(f"\nwrote {path} and the {markers(args.tag)[0]} section of {README}")
    else:
        print(f"\nwrote {path}")
    return result


if __name__ == "__main__":
    main()
