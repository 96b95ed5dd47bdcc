"""Where the time of a distsnn run goes, and what Python costs per timestep and per batch.

Part 1, pipeline breakdown (real ``mpiexec`` runs of benchmarks/worker.py, i.e. the CLI
pipeline): conversion (digits model, rank 0), broadcast, data read, model setup (building the
GeNN model description in Python: synapse indices etc.), GeNN code generation + compilation
cold (empty build directory) and cached (second run), load, evaluation, reduction.

Part 4, distsnn's host work per example: ``evaluate()`` against the hand-written loop on a
tiny 4 -> 10 network (rate T=100 and few-spike K=8), where the GeNN kernels cost almost nothing.

Part 3, GeNN compiler optimisation: GeNN's CPU backend compiles generated code *without*
optimisation unless the ``optimize_code`` preference is set (found by this benchmark; distsnn
sets it for the CPU backend since commit f6c1c98); per step time with
``genn_kwargs={"optimize_code": False}`` (GeNN's default, -O0) vs ``True`` (-O3 -ffast-math),
with a check that the outputs are identical.

Part 2, host overhead in one process, on loaded models (CPU backend):
* per timestep: distsnn's ``GeNNNetwork.step(n)`` vs a pure loop of
  ``model._runtime.step_time()`` vs the public ``model.step_time()``, against GeNN's own kernel
  time (``kernel_profiling``: neuron + presynaptic update time);
* per batch: ``reset_example_state``, ``set_input``, ``readout``, ``set_timestep`` and a
  ``SpikeTotal`` pull, each timed over many calls.

    .venv/bin/python benchmarks/overhead.py [--workloads ...] [--skip-pipeline] [--skip-steps]

Writes benchmarks/results/overhead.json and prints tables.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    BUILD,
    MPIEXEC,
    PYTHON,
    RESULTS,
    LoadMonitor,
    machine_info,
    median,
    run_json,
    table,
    write_result,
)
from workloads import WORKLOADS  # noqa: E402

WORKER = str(Path(__file__).resolve().parent / "worker.py")
PIPELINE_EXAMPLES = {"cifar_rate": 32, "cifar_fs": 128, "mlp_rate": 200, "mlp_fs": 400,
                     "digits_fs": 540, "digits_dn": 100}
PIPELINE_WORKLOADS = ("digits_fs", "digits_dn", "cifar_rate", "cifar_fs", "mlp_rate")
STEP_WORKLOADS = ("tiny_rate", "mlp_rate", "cifar_rate", "cifar_fs")
CACHED_TARGET_S = 1.0
PHASES = ("keras_import_untimed", "conversion", "broadcast", "data_read", "model_setup", "build", "load", "evaluation",
          "reduction")


# ---------------------------------------------------------------------------------------
# part 1: pipeline


def pipeline_run(name: str, ranks: int, examples: int, build_dir: Path, tag: str) -> dict:
    out = RESULTS / "runs" / f"overhead_{name}_n{ranks}_{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [MPIEXEC, "-n", str(ranks), PYTHON, WORKER, name, str(examples), str(build_dir), str(out)]
    with LoadMonitor() as mon:
        result = run_json(cmd, out)
    phases = {}
    for phase in PHASES:
        values = []
        for r in result["per_rank"]:
            t = r["timings_s"]
            if phase == "model_setup":
                values.append(t["build_and_load"] - t["build"] - t["load"])
            elif phase == "keras_import_untimed":
                # load_or_convert's time that distsnn's timings do not show: rank 0 imports
                # Keras/TensorFlow and loads the model outside its "conversion" timer
                values.append(r["network_ready_s"] - t.get("conversion", 0.0)
                              - t.get("broadcast", 0.0))
            elif phase in t:
                values.append(t[phase])
        phases[phase] = max(values) if values else None   # the slowest rank sets the pace
    phases["python_import_and_mpi_init"] = max(r["import_s"] for r in result["per_rank"])
    phases["process_wall"] = mon.wall_s
    return {"workload": name, "ranks": ranks, "tag": tag, "examples": result["dataset"]["examples"],
            "phases_s": phases, "build_reused": result["build_reused"],
            "examples_per_second": result["examples_per_second"],
            "per_rank": result["per_rank"], "load": mon.as_dict()}


def pipeline(workloads) -> list[dict]:
    runs = []
    for name in workloads:
        examples = PIPELINE_EXAMPLES[name]
        WORKLOADS[name].ensure(examples)
        build_dir = BUILD / f"overhead_{name}"
        shutil.rmtree(build_dir, ignore_errors=True)          # cold: empty build directory
        for ranks, tag in ((2, "cold"), (2, "cached"), (1, "cached")):
            r = pipeline_run(name, ranks, examples, build_dir, tag)
            runs.append(r)
            p = r["phases_s"]
            print(f"  {name} n={ranks} {tag}: build {p['build']:.2f} s, setup "
                  f"{p['model_setup']:.2f} s, eval {p['evaluation']:.2f} s, "
                  f"reused {r['build_reused']}", flush=True)
    return runs


# ---------------------------------------------------------------------------------------
# part 2: per-step and per-batch host overhead


def tiny_network():
    from distsnn.connectivity import Dense
    from distsnn.network import Network
    from distsnn.neurons import IntegrateFire, IntegrateFireInput
    net = Network(metadata={"benchmark": "tiny"})
    a = net.add_population("input", (1,), IntegrateFireInput())
    b = net.add_population("output", (1,), IntegrateFire(readout="spike_count"))
    net.connect(a, b, Dense(np.ones((1, 1), np.float32)))
    net.outputs = [b]
    return net


def tiny_pair(mode: str):
    """A 4 -> 10 network whose GeNN kernels cost almost nothing: what is left is host work."""
    from distsnn.connectivity import Dense
    from distsnn.network import Network
    from distsnn.neurons import FewSpikeRelu, FewSpikeReluInput, IntegrateFire, IntegrateFireInput
    net = Network(metadata={"benchmark": f"tiny_{mode}"})
    if mode == "rate":
        a = net.add_population("input", (4,), IntegrateFireInput())
        b = net.add_population("output", (10,), IntegrateFire(readout="spike_count"))
    else:
        a = net.add_population("input", (4,), FewSpikeReluInput(k=8, alpha=1.0))
        b = net.add_population("output", (10,), FewSpikeRelu(k=8, alpha=4.0, readout="var"))
    w = np.random.default_rng(0).random((4, 10)).astype(np.float32)
    net.connect(a, b, Dense(w))
    net.outputs = [b]
    return net


def host_overhead_per_example(mode: str, examples: int = 4000, rounds: int = 5) -> dict:
    """distsnn's evaluate() vs the hand-written loop on a tiny network, in one process: the
    difference per example is distsnn's host-side work per example (schedule, batching,
    metrics, spike bookkeeping), independent of the network's size."""
    from handwritten import HandWritten

    from distsnn.compilers import FewSpikeCompiler, InferenceCompiler
    net = tiny_pair(mode)
    steps = 100 if mode == "rate" else 8
    rng = np.random.default_rng(1)
    x = rng.random((examples, 4), dtype=np.float32)
    y = rng.integers(0, 10, examples)
    inp, out = net.inputs[0], net.outputs[0]
    build = BUILD / "overhead_host"
    compiler = (InferenceCompiler(steps, rng_seed=1, backend="cpu", build_dir=str(build))
                if mode == "rate" else
                FewSpikeCompiler(k=steps, rng_seed=1, backend="cpu", build_dir=str(build)))
    t_d, t_h = [], []
    with compiler.compile(net) as compiled:
        prefs = {k: v for k, v in compiled.genn_model._preference_kwargs.items()
                 if k in ("optimize_code", "debug_code")}
        hand = HandWritten(net, mode, steps, build / "hand", prefs)
        compiled.evaluate({inp: x[:10]}, {out: y[:10]}, callbacks=[])
        hand.run(x[:10])
        for r in range(rounds):
            for which in (("d", "h") if r % 2 == 0 else ("h", "d")):
                if which == "d":
                    compiled.evaluate({inp: x}, {out: y}, callbacks=[])
                    t_d.append(compiled.last_report.seconds)
                else:
                    t0 = time.perf_counter()
                    hand.run(x)
                    t_h.append(time.perf_counter() - t0)
        hand.unload()
    d_us, h_us = 1e6 * median(t_d) / examples, 1e6 * median(t_h) / examples
    return {"mode": mode, "timesteps": steps, "examples": examples,
            "distsnn_us_per_example": d_us, "handwritten_us_per_example": h_us,
            "distsnn_host_overhead_us_per_example": d_us - h_us}


def _kernel_s(model) -> float:
    return (model.neuron_update_time + model.presynaptic_update_time
            + model.postsynaptic_update_time + model.synapse_dynamics_time)


def step_overhead(name: str, rounds: int = 5) -> dict:
    from distsnn.genn import CompileOptions, GeNNNetwork
    if name == "tiny_rate":
        net, mode, steps = tiny_network(), "rate", 100
        rounds_steps = 20000
    else:
        w = WORKLOADS[name]
        net, mode, steps = w.network(), w.mode, w.timesteps
        rounds_steps = {"mlp_rate": 1000, "cifar_rate": 200, "cifar_fs": 64}[name]
    results = {}
    for profiling in (False, True):
        opts = CompileOptions(mode=mode, example_timesteps=steps, backend="cpu",
                              kernel_profiling=profiling)
        genn = GeNNNetwork(net, opts)
        genn.build_and_load(BUILD / "overhead_steps")
        model = genn.genn_model
        runtime = model._runtime
        inp = net.inputs[0]
        x = np.random.default_rng(3).random((1,) + inp.shape, dtype=np.float32)

        def fresh():
            if mode == "rate":
                genn.reset_example_state()
            else:
                genn.set_timestep(0)
            genn.set_input(inp, x)

        def loop_distsnn(n):
            genn.step(n)

        def loop_pure(n):
            for _ in range(n):
                runtime.step_time()

        def loop_public(n):
            for _ in range(n):
                model.step_time()

        def few_spike_chunks(fn, n):
            # few-spike: the time restarts every K steps (as in the real schedule)
            if mode == "few_spike":
                for _ in range(n // steps):
                    genn.set_timestep(0)
                    fn(steps)
            else:
                done = 0
                while done < n:
                    chunk = min(steps, n - done)
                    fresh()
                    fn(chunk)
                    done += chunk

        loops = {"distsnn_step": loop_distsnn, "pure_runtime_loop": loop_pure,
                 "public_step_time_loop": loop_public}
        per_step = {k: [] for k in loops}
        kernel = {k: [] for k in loops}
        for _ in range(rounds):
            for key, fn in loops.items():
                fresh()
                k0 = _kernel_s(model) if profiling else 0.0
                t0 = time.perf_counter()
                few_spike_chunks(fn, rounds_steps)
                dt = time.perf_counter() - t0
                per_step[key].append(dt / rounds_steps)
                if profiling:
                    kernel[key].append((_kernel_s(model) - k0) / rounds_steps)
        if profiling:
            results["kernel_s_per_step"] = {k: median(v) for k, v in kernel.items()}
            results["profiled_wall_s_per_step"] = {k: median(v) for k, v in per_step.items()}
        else:
            results["wall_s_per_step"] = {k: median(v) for k, v in per_step.items()}
            results["per_batch_s"] = per_batch_calls(genn, net, mode)
        genn.unload()
    wall = results["wall_s_per_step"]
    kern = median(results["kernel_s_per_step"].values())
    results["python_s_per_step"] = {
        "distsnn_minus_pure": wall["distsnn_step"] - wall["pure_runtime_loop"],
        "public_minus_pure": wall["public_step_time_loop"] - wall["pure_runtime_loop"],
        "profiled_wall_minus_kernel": median(results["profiled_wall_s_per_step"].values()) - kern}
    results.update(workload=name, mode=mode, timesteps=steps,
                   neurons=sum(p.size for p in net.populations))
    return results


def per_batch_calls(genn, net, mode: str, reps: int = 300) -> dict:
    inp, out = net.inputs[0], net.outputs[0]
    x = np.random.default_rng(4).random((1,) + inp.shape, dtype=np.float32)
    readout = "spike_count" if mode == "rate" else "var"
    calls = {"set_input": lambda: genn.set_input(inp, x),
             "readout": lambda: genn.readout(out, readout),
             "pull_spike_total_all_pops": lambda: [genn.pull(p, "SpikeTotal")
                                                  for p in net.populations],
             "set_timestep": lambda: genn.set_timestep(0)}
    if mode == "rate":
        calls["reset_example_state"] = lambda: genn.reset_example_state()
    out_s = {}
    for key, fn in calls.items():
        fn()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            times.append((time.perf_counter() - t0) / reps)
        out_s[key] = median(times)
    return out_s


# ---------------------------------------------------------------------------------------
# part 3: GeNN's optimize_code preference


def optimisation(name: str, examples: int = 3, rounds: int = 3) -> dict:
    from distsnn.genn import CompileOptions, GeNNNetwork
    w = WORKLOADS[name]
    net, mode, steps = w.network(), w.mode, w.timesteps
    inp, out = net.inputs[0], net.outputs[0]
    xs = np.random.default_rng(5).random((examples,) + inp.shape, dtype=np.float32)
    models, res = {}, {}
    # "default" = GeNN's own default (-O0), which distsnn used until f6c1c98
    for label, kwargs in (("default", {"optimize_code": False}),
                          ("optimize_code", {"optimize_code": True})):
        # separate build directories: GeNN's model.sha ignores preferences, and two loaded
        # models with the same name and directory would share one library in this process
        genn = GeNNNetwork(net, CompileOptions(mode=mode, example_timesteps=steps,
                                               genn_kwargs=kwargs))
        shutil.rmtree(BUILD / f"overhead_opt_{label}" / f"{genn.model_name}_CODE", ignore_errors=True)
        info = genn.build_and_load(BUILD / f"overhead_opt_{label}")
        models[label] = genn
        res[label] = {"cold_build_s": info.build_s, "s_per_step": [], "outputs": None}
    for _ in range(rounds):
        for label, genn in models.items():
            t0, outs = time.perf_counter(), []
            for x in xs:
                if mode == "rate":
                    genn.reset_example_state()
                genn.set_timestep(0)
                genn.set_input(inp, x[None])
                genn.step(steps)
                outs.append(genn.readout(out, "spike_count" if mode == "rate" else "var"))
            res[label]["s_per_step"].append((time.perf_counter() - t0) / (examples * steps))
            res[label]["outputs"] = np.concatenate(outs)
    for genn in models.values():
        genn.unload()
    same = bool(np.array_equal(res["default"]["outputs"], res["optimize_code"]["outputs"]))
    for r in res.values():
        r["s_per_step"] = median(r.pop("s_per_step"))
        r.pop("outputs")
    return {"workload": name, "default": res["default"], "optimize_code": res["optimize_code"],
            "speedup": res["default"]["s_per_step"] / res["optimize_code"]["s_per_step"],
            "outputs_identical": same}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default=",".join(PIPELINE_WORKLOADS))
    p.add_argument("--step-workloads", default=",".join(STEP_WORKLOADS))
    p.add_argument("--skip-pipeline", action="store_true")
    p.add_argument("--skip-steps", action="store_true")
    p.add_argument("--opt-workloads", default="cifar_rate,cifar_fs,mlp_rate")
    p.add_argument("--skip-opt", action="store_true")
    p.add_argument("--skip-host", action="store_true")
    args = p.parse_args(argv)
    out = {"benchmark": "overhead", "machine": machine_info(),
           "command": "python benchmarks/overhead.py " + " ".join(argv or sys.argv[1:])}
    if not args.skip_pipeline:
        runs = pipeline(args.workloads.split(","))
        out["pipeline"] = runs
        rows = []
        for r in runs:
            row = {"workload": r["workload"], "ranks": r["ranks"], "run": r["tag"]}
            row.update({k: v for k, v in r["phases_s"].items() if k != "python_import_and_mpi_init"})
            rows.append(row)
        print(table(rows, list(rows[0]), "Pipeline phases, seconds (slowest rank)"))
        cached = [r for r in runs if r["tag"] == "cached"]
        out["cached_build_max_s"] = max(r["phases_s"]["build"] for r in cached)
        out["cached_build_and_load_max_s"] = max(
            r["phases_s"]["build"] + r["phases_s"]["load"] + r["phases_s"]["model_setup"]
            for r in cached)
        out["cached_target_s"] = CACHED_TARGET_S
        out["cached_build_target_met"] = out["cached_build_max_s"] < CACHED_TARGET_S
    if not args.skip_steps:
        steps = []
        for name in args.step_workloads.split(","):
            print(f"  step overhead: {name}", flush=True)
            steps.append(step_overhead(name))
        out["steps"] = steps
        rows = [{"workload": s["workload"], "neurons": s["neurons"],
                 "GeNN kernel us/step": 1e6 * median(s["kernel_s_per_step"].values()),
                 "distsnn step() us/step": 1e6 * s["wall_s_per_step"]["distsnn_step"],
                 "pure runtime loop us/step": 1e6 * s["wall_s_per_step"]["pure_runtime_loop"],
                 "model.step_time() us/step": 1e6 * s["wall_s_per_step"]["public_step_time_loop"],
                 "host us/step (wall-kernel)": 1e6 * s["python_s_per_step"]["profiled_wall_minus_kernel"]}
                for s in steps]
        print(table(rows, list(rows[0]), "Per timestep (medians)"))
        keys = sorted({k for s in steps for k in s["per_batch_s"]})
        rows = [{"workload": s["workload"], **{f"{k} us": 1e6 * s["per_batch_s"].get(k, float("nan"))
                                                for k in keys}} for s in steps]
        print(table(rows, list(rows[0]), "Per batch host calls, microseconds"))
    if not args.skip_host:
        host = [host_overhead_per_example(mode) for mode in ("rate", "few_spike")]
        out["host_overhead"] = host
        rows = [{"schedule": h["mode"], "steps/example": h["timesteps"],
                 "distsnn us/example": h["distsnn_us_per_example"],
                 "hand-written us/example": h["handwritten_us_per_example"],
                 "distsnn host overhead us/example": h["distsnn_host_overhead_us_per_example"]}
                for h in host]
        print(table(rows, list(rows[0]), "Host work per example on a tiny (4 -> 10) network"))
    if not args.skip_opt:
        opt = []
        for name in args.opt_workloads.split(","):
            print(f"  optimize_code: {name}", flush=True)
            opt.append(optimisation(name))
        out["optimize_code"] = opt
        rows = [{"workload": o["workload"],
                 "-O0 ms/step": 1e3 * o["default"]["s_per_step"],
                 "optimize_code ms/step": 1e3 * o["optimize_code"]["s_per_step"],
                 "speedup": o["speedup"], "outputs identical": o["outputs_identical"],
                 "cold build s (-O0)": o["default"]["cold_build_s"],
                 "cold build s (optimize_code)": o["optimize_code"]["cold_build_s"]} for o in opt]
        print(table(rows, list(rows[0]), "GeNN optimize_code preference: off (GeNN default) vs on"))
    path = write_result("overhead", out)
    print(f"\nwrote {path}")
    return out


if __name__ == "__main__":
    main()
