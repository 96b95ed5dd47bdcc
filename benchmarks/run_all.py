"""Run every benchmark in one go and write benchmarks/results/latest.json (+ latest.md).

    .venv/bin/python benchmarks/run_all.py [--quick] [--wait-quiet 600]

``--quick`` runs one repeat of each (a smoke run, ~7 min); the default (3 repeats, medians)
takes ~17 min on 2 cores. ``--wait-quiet S`` first waits up to S seconds for the 1-minute
load average to fall below 1 (other people's jobs make timings noisy; each result also
records the CPU time other processes used while it ran, as "foreign cores").
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import handwritten  # noqa: E402
import overhead  # noqa: E402
import scaling  # noqa: E402
from common import RESULTS, loadavg, machine_info, median, table, wait_for_quiet, write_result  # noqa: E402

PARTS = ("scaling", "scaling_cli", "handwritten", "overhead")


def read_result(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run that part (--parts {name})")
    return json.loads(path.read_text())


def summarise(sc: dict, ov: dict, hw: dict, sc_cli: dict) -> tuple[dict, str]:
    """The headline numbers and a Markdown report of them."""
    md = []
    rows = [{"workload": r["workload"], "examples": r["examples"],
             "ex/s, 1 rank": r["examples_per_second"]["1"]["median"],
             "ex/s, 2 ranks": r["examples_per_second"]["2"]["median"],
             "efficiency": r["efficiency"],
             "efficiency, unflagged runs": r.get("efficiency_unflagged_runs"),
             "2-rank runs flagged (ranks >15% apart)": r.get("flagged_2_rank_runs"),
             "per-rank s/example 2 vs 1": r["per_rank_slowdown_2_vs_1"],
             "target >= 0.9": "met" if r["target_met"] else "MISSED",
             "foreign load (cores)": r["max_foreign_cores"]} for r in sc["results"]]
    md.append(table(rows, list(rows[0]), "### Scaling: 1 -> 2 MPI ranks (median of "
                                         f"{sc['repeats']} runs each)"))
    rows = [{"workload": r["workload"], "examples": r["examples"],
             "ex/s, 1 rank": r["examples_per_second"]["1"]["median"],
             "ex/s, 2 ranks": r["examples_per_second"]["2"]["median"],
             "efficiency": r["efficiency"],
             "foreign load (cores)": r["max_foreign_cores"]} for r in sc_cli["results"]]
    md.append(table(rows, list(rows[0]), "### Scaling cross-check through `mpiexec -n N distsnn "
                                         "evaluate` (one run each)"))
    for res, title in ((hw, "### distsnn vs hand-written pygenn loop (one rank, same GeNN "
                            "preferences)"),):
        rows = [{"workload": r["workload"], "examples": r["examples"],
                 "distsnn ex/s": r["distsnn_examples_per_second"],
                 "hand-written ex/s": r["handwritten_examples_per_second"],
                 "distsnn/hand ex/s": r["eps_ratio_distsnn_over_hand"],
                 "time ratio": r["time_ratio_distsnn_over_hand"],
                 "host overhead ms/example": r["host_overhead_ms_per_example"],
                 "outputs identical": r["outputs_identical"],
                 "target <= 1.10": "met" if r["target_met"] else "MISSED",
                 "foreign load (cores)": r["max_foreign_cores"]} for r in res["results"]]
        md.append(table(rows, list(rows[0]), title))
    rows = []
    for r in ov.get("pipeline", []):
        row = {"workload": r["workload"], "ranks": r["ranks"], "run": r["tag"]}
        row.update({k: v for k, v in r["phases_s"].items()})
        rows.append(row)
    if rows:
        md.append(table(rows, list(rows[0]), "### Pipeline phases (seconds, slowest rank)"))
    rows = [{"workload": s["workload"], "neurons": s["neurons"],
             "GeNN kernels us/step": 1e6 * median(s["kernel_s_per_step"].values()),
             "distsnn step() us/step": 1e6 * s["wall_s_per_step"]["distsnn_step"],
             "pure _runtime.step_time() loop us/step": 1e6 * s["wall_s_per_step"]["pure_runtime_loop"],
             "model.step_time() loop us/step": 1e6 * s["wall_s_per_step"]["public_step_time_loop"],
             "host us/step (profiled wall - kernels)": 1e6 * s["python_s_per_step"]["profiled_wall_minus_kernel"]}
            for s in ov.get("steps", [])]
    if rows:
        md.append(table(rows, list(rows[0]), "### Per timestep"))
        rows = [{"schedule": h["mode"], "steps/example": h["timesteps"],
                 "distsnn us/example": h["distsnn_us_per_example"],
                 "hand-written us/example": h["handwritten_us_per_example"],
                 "distsnn host overhead us/example": h["distsnn_host_overhead_us_per_example"]}
                for h in ov.get("host_overhead", [])]
        if rows:
            md.append(table(rows, list(rows[0]), "### distsnn's host work per example (tiny 4 -> 10 "
                                                 "network, one rank, in one process)"))
        rows = [{"workload": o["workload"],
                 "optimize_code off (-O0) ms/step": 1e3 * o["default"]["s_per_step"],
                 "optimize_code ms/step": 1e3 * o["optimize_code"]["s_per_step"],
                 "speedup": o["speedup"], "outputs identical": o["outputs_identical"]}
                for o in ov.get("optimize_code", [])]
        if rows:
            md.append(table(rows, list(rows[0]), "### GeNN's optimize_code preference: off (GeNN's "
                                                 "default, distsnn before f6c1c98) vs on"))
        keys = sorted({k for s in ov["steps"] for k in s["per_batch_s"]})
        rows = [{"workload": s["workload"], **{f"{k} (us)": 1e6 * s["per_batch_s"].get(k, float("nan"))
                                                for k in keys}} for s in ov["steps"]]
        md.append(table(rows, list(rows[0]), "### Per batch host calls"))
    headline = {
        "scaling_efficiency": {r["workload"]: r["efficiency"] for r in sc["results"]},
        "scaling_target_met": all(r["target_met"] for r in sc["results"]),
        "scaling_efficiency_cli": {r["workload"]: r["efficiency"] for r in sc_cli["results"]},
        "handwritten_time_ratio": {r["workload"]: r["time_ratio_distsnn_over_hand"]
                                   for r in hw["results"]},
        "handwritten_target_met": all(r["target_met"] for r in hw["results"]),
        "optimize_code_speedup": {o["workload"]: o["speedup"]
                                  for o in ov.get("optimize_code", [])},
        "cached_build_max_s": ov.get("cached_build_max_s"),
        "cached_build_and_load_max_s": ov.get("cached_build_and_load_max_s"),
        "cached_build_target_met": ov.get("cached_build_target_met"),
        "host_overhead_us_per_example": {h["mode"]: h["distsnn_host_overhead_us_per_example"]
                                         for h in ov.get("host_overhead", [])},
    }
    return headline, "\n".join(md)


BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def update_readme(out: dict, md: str) -> None:
    """Replace the generated block of benchmarks/README.md with these results."""
    readme = Path(__file__).resolve().parent / "README.md"
    if not readme.exists():
        return
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        return
    m = out["machine"]
    v = m["versions"]
    rev = m["distsnn"]
    loads = sorted({round(x, 2) for part in ("scaling", "scaling_cli", "handwritten")
                    for r in out[part]["results"] for x in [r["max_foreign_cores"]]})
    header = [
        f"Measured {out['started']} on `{m['host']}`: {m['cores']} cores, {m['cpu_model']}, "
        f"{m['memory_gib']} GiB; Python {v['python']}, pygenn {v['pygenn']} (single-threaded "
        f"CPU backend), numpy {v['numpy']}, mpi4py {v['mpi4py']}, {v.get('mpiexec')}; distsnn "
        f"commit `{rev['commit']}`{' (with local changes)' if rev['distsnn_modified'] else ''}.",
        f"1-minute load average {out['load_start'][0]} at the start; the largest CPU use by "
        f"other processes during any timed scaling/hand-written run: "
        f"{max(loads) if loads else 0:.2f} cores (\"foreign load\"). Parts measured in this "
        f"run: {', '.join(out['parts_measured'])} (the others were read back from "
        f"`results/*.json`).",
        "", "Reproduce: `.venv/bin/python benchmarks/run_all.py --wait-quiet 900`", ""]
    block = "\n".join(header) + md + "\n"
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    readme.write_text(text[:start] + "\n" + block + text[end:])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one repeat each (smoke run)")
    p.add_argument("--wait-quiet", type=float, default=0.0)
    p.add_argument("--parts", default=",".join(PARTS),
                   help="parts to run (others are read back from their results/*.json, e.g. "
                        "to re-measure one part that a busy machine disturbed): "
                        + ",".join(PARTS))
    args = p.parse_args(argv)
    repeats = ["--repeats", "1" if args.quick else "3"]
    parts = [x for x in args.parts.split(",") if x]
    unknown = set(parts) - set(PARTS)
    if unknown:
        p.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    start = time.time()
    load_start = wait_for_quiet(1.0, args.wait_quiet)
    print(f"load average at start: {load_start}", flush=True)
    runners = {
        "scaling": lambda: scaling.main(repeats),
        "scaling_cli": lambda: scaling.main(["--cli", "--workloads", "cifar_fs,mlp_rate,digits_fs",
                                             "--repeats", "1"]),
        "handwritten": lambda: handwritten.main(["--repeats", "2" if args.quick else "4"]),
        "overhead": lambda: overhead.main([]),
    }
    got = {}
    for part in PARTS:
        if part in parts:
            load = wait_for_quiet(1.0, args.wait_quiet) if part != parts[0] else load_start
            print(f"\n== {part} == (load average {load})", flush=True)
            got[part] = runners[part]()
            got[part]["measured_in_this_run"] = True
        else:
            got[part] = read_result(part)
            got[part]["measured_in_this_run"] = False
    sc, sc_cli, hw, ov = (got[k] for k in PARTS)
    headline, md = summarise(sc, ov, hw, sc_cli)
    out = {"benchmark": "all", "machine": machine_info(),
           "command": "python benchmarks/run_all.py " + " ".join(argv or sys.argv[1:]),
           "parts_measured": parts,
           "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(start)),
           "duration_s": time.time() - start, "load_start": load_start, "load_end": loadavg(),
           "headline": headline, "scaling": sc, "scaling_cli": sc_cli, "handwritten": hw,
           "overhead": ov}
    path = write_result("latest", out)
    md_path = path.with_suffix(".md")
    md_path.write_text(md + "\n")
    if not os.environ.get("DISTSNN_BENCH_TAG"):
        update_readme(out, md)
    print("\n" + md)
    print(f"\nwrote {path} and {md_path} in {time.time() - start:.0f} s")
    return out


if __name__ == "__main__":
    main()
