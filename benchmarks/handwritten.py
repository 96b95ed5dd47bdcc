"""distsnn vs a minimal hand-written pygenn loop over the identical GeNN model (one rank).

The hand-written version uses distsnn's network IR only as the source of numbers (weights,
synapse indices, thresholds, alphas, biases); everything else is plain pygenn written here:
the same neuron equations (incl. the ``SpikeTotal`` counter), the same postsynaptic model and
connectivity (SPARSE indices for convolutions, DENSE for dense layers), the same per-example
reset (one custom update group instead of distsnn's two) and the tightest host loop
(``model._runtime.step_time()``; ``model.step_time()`` costs ~0.1 us more per step), with the
same GeNN preferences as distsnn's model (read from it: ``optimize_code``). Its outputs
are checked against distsnn's ``predict`` before timing (bit-identical spike counts /
pre-activations).

distsnn is timed through its library API: ``InferenceCompiler``/``FewSpikeCompiler`` ->
``compiled.evaluate(x, y, callbacks=[])``; its per-rank time is ``last_report.seconds``; the
hand-written loop's is the wall time of its loop. Timing: ``--repeats`` fresh processes pinned
to one core, each loading both models (alternating which first), warming both up and timing
each twice, alternating; per process the fastest run of each counts, then the median over
processes (see ``compare`` for why).

    .venv/bin/python benchmarks/handwritten.py [--workloads cifar_rate,cifar_fs] [--repeats 3]

Writes benchmarks/results/handwritten.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BUILD, PYTHON, LoadMonitor, machine_info, median, table, write_result  # noqa: E402
from workloads import WORKLOADS  # noqa: E402

DEFAULT_EXAMPLES = {"cifar_rate": 32, "cifar_fs": 128, "mlp_rate": 1000, "mlp_fs": 4000,
                    "digits_fs": 2160, "digits_dn": 200}
DEFAULT_WORKLOADS = ("cifar_rate", "cifar_fs", "mlp_fs", "digits_fs")
TARGET = 1.10   # distsnn per-rank time / hand-written time


class HandWritten:
    """The network as a plain pygenn model with a hand-written evaluation loop."""

    def __init__(self, net, mode: str, timesteps: int, build_dir: Path, genn_kwargs=None):
        from pygenn import (
            GeNNModel,
            VarAccess,
            VarAccessMode,
            create_custom_update_model,
            create_neuron_model,
            create_postsynaptic_model,
            create_var_ref,
            init_postsynaptic,
            init_weight_update,
        )

        from distsnn.connectivity import Dense
        from distsnn.genn.lowering import kernel_geometry, kernel_values
        from distsnn.genn.toeplitz import toeplitz_connectivity
        from distsnn.neurons import (
            FewSpikeRelu,
            FewSpikeReluInput,
            IntegrateFire,
            IntegrateFireInput,
        )
        self.net, self.mode, self.T = net, mode, timesteps
        model = GeNNModel("float", f"hand_{mode}_{net.content_hash()[:12]}",
                          backend="single_threaded_cpu", **(genn_kwargs or {}))
        model.dt, model.batch_size, model.seed = 1.0, 1, 1
        RW, RO, DUP = VarAccess.READ_WRITE, VarAccess.READ_ONLY, VarAccess.READ_ONLY_DUPLICATE
        self.pops, resets = {}, {}
        alpha = {p.name: getattr(p.neuron, "alpha", None) for p in net.populations}
        depth = {}
        for pop in net.topological_order():
            srcs = [c.source.name for c in net.incoming(pop)]
            depth[pop.name] = 1 + max(depth[s] for s in srcs) if srcs else 0
        self.depth = depth
        for pop in net.populations:
            n = pop.neuron
            params, vars_, pv, vv = [], [], {}, {}

            def value(name, v):
                if np.ndim(v) == 0:
                    params.append((name, "scalar")); pv[name] = float(v)
                else:
                    vars_.append((name, "scalar", RO)); vv[name] = np.asarray(v, np.float32).ravel()
            if isinstance(n, IntegrateFireInput):
                params += [("Vthresh", "scalar"), ("Vreset", "scalar")]
                pv.update(Vthresh=float(n.v_thresh), Vreset=float(n.v_reset))
                vars_ += [("V", "scalar", RW), ("Input", "scalar", DUP), ("SpikeTotal", "unsigned int", RW)]
                vv.update(V=float(n.v_reset), Input=0.0, SpikeTotal=0)
                sim, thr, reset = "V += Input;", "V >= Vthresh", "V = Vreset;\nSpikeTotal++;"
                resets[pop.name] = {"V": float(n.v_reset)}
            elif isinstance(n, IntegrateFire):
                params.append(("Vreset", "scalar")); pv["Vreset"] = float(n.v_reset)
                vars_ += [("V", "scalar", RW), ("SpikeTotal", "unsigned int", RW)]
                vv.update(V=float(n.v_reset), SpikeTotal=0)
                value("Vthresh", n.v_thresh)
                sim = "const scalar In = Isyn;"
                if n.bias is not None:
                    value("Bias", n.bias); sim = "const scalar In = Isyn + Bias;"
                sim += "\nV += In;"
                reset = ("V -= Vthresh;" if n.reset == "subtract" else "V = Vreset;") + "\nSpikeTotal++;"
                resets[pop.name] = {"V": float(n.v_reset)}
                if pop in net.outputs:
                    vars_.append(("Scount", "unsigned int", RW)); vv["Scount"] = 0
                    reset += "\nScount++;"
                    resets[pop.name]["Scount"] = 0
                thr = "V >= Vthresh"
            elif isinstance(n, FewSpikeReluInput):
                assert not n.signed_input
                params += [("K", "int"), ("HalfK", "int"), ("Scale", "scalar")]
                pv.update(K=n.k, HalfK=n.k // 2, Scale=n.alpha * 2.0 ** -n.k)
                vars_ += [("V", "scalar", RW), ("SpikeTotal", "unsigned int", RW)]
                vv.update(V=0.0, SpikeTotal=0)
                sim = ("const int p = (int)(t / dt + 0.5);\n"
                       "const scalar hT = Scale * (scalar)(1 << (K - 1 - p));")
                thr, reset = "V >= hT", "V -= hT;\nSpikeTotal++;"
            elif isinstance(n, FewSpikeRelu):
                src = net.incoming(pop)[0].source
                params += [("K", "int"), ("HalfK", "int"), ("Scale", "scalar"), ("SrcScale", "scalar")]
                pv.update(K=n.k, HalfK=n.k // 2, Scale=n.alpha * 2.0 ** -n.k,
                          SrcScale=alpha[src.name] * 2.0 ** -n.k)
                vars_ += [("Fx", "scalar", RW), ("V", "scalar", RW), ("Out", "scalar", RW),
                          ("SpikeTotal", "unsigned int", RW)]
                vv.update(Fx=0.0, V=0.0, Out=0.0, SpikeTotal=0)
                bias = "0.0"
                if n.bias is not None:
                    value("Bias", n.bias); bias = "Bias"
                sim = ("const int p = (int)(t / dt + 0.5);\n"
                       "const scalar d = SrcScale * (scalar)(1 << ((K - p) % K));\n"
                       "Fx += Isyn * d;\n"
                       f"if (p == 0) {{\n    V = Fx + {bias};\n    Out = V;\n    Fx = 0.0;\n}}\n"
                       "const scalar hT = Scale * (scalar)(1 << (K - 1 - p));")
                thr, reset = "V >= hT", "V -= hT;\nSpikeTotal++;"
            else:
                raise TypeError(type(n).__name__)
            nm = create_neuron_model(f"hand_{pop.name}", params=params, vars=vars_, sim_code=sim,
                                     threshold_condition_code=thr, reset_code=reset)
            self.pops[pop.name] = model.add_neuron_population(pop.name, pop.size, nm, pv, vv)
        if mode == "rate":
            psm_model = create_postsynaptic_model(
                "hand_gated_delta", params=[("FirstStep", "int"), ("ExampleSteps", "int")],
                sim_code="""
                if ((((int)(t / dt + 0.5)) % ExampleSteps) >= FirstStep) {
                    injectCurrent(inSyn);
                }
                inSyn = 0.0;
                """)
        for c in net.connections:
            delay = int(c.connectivity.delay)
            if mode == "rate":
                psm = init_postsynaptic(psm_model, {"FirstStep": 1 + delay, "ExampleSteps": timesteps})
            else:
                delay += (depth[c.target.name] - depth[c.source.name] - 1) * timesteps
                psm = init_postsynaptic("DeltaCurr")
            src, trg = self.pops[c.source.name], self.pops[c.target.name]
            geometry = kernel_geometry(c.connectivity, c.source.shape)
            if isinstance(c.connectivity, Dense):
                w = c.connectivity.dense_weight(c.source.shape).reshape(-1)
                sg = model.add_synapse_population(c.name, "DENSE", src, trg,
                                                  init_weight_update("StaticPulse", {}, {"g": w}), psm)
            elif geometry is not None:  # distsnn's Toeplitz lowering, as distsnn builds it
                w = kernel_values(c.connectivity, c.source.shape)
                sg = model.add_synapse_population(c.name, "TOEPLITZ", src, trg,
                                                  init_weight_update("StaticPulse", {}, {"g": w}), psm,
                                                  toeplitz_connectivity(geometry, "cpu"))
            else:
                pre, post, w = c.connectivity.synapses(c.source.shape)
                sg = model.add_synapse_population(c.name, "SPARSE", src, trg,
                                                  init_weight_update("StaticPulse", {}, {"g": w}), psm)
                sg.set_sparse_connections(pre, post)
            if delay:
                sg.axonal_delay_steps = delay
        if mode == "rate":   # one custom update group resets every population
            for name, values in resets.items():
                types = {v: "unsigned int" if isinstance(x, int) else "scalar" for v, x in values.items()}
                cu = create_custom_update_model(
                    f"hand_reset_{name}", var_refs=[(v, types[v], VarAccessMode.READ_WRITE) for v in values],
                    update_code="\n".join(f"{v} = {x!r};" for v, x in values.items()))
                model.add_custom_update(f"reset_{name}", "Reset", cu, {}, {},
                                        {v: create_var_ref(self.pops[name], v) for v in values})
        t0 = time.perf_counter()
        build_dir.mkdir(parents=True, exist_ok=True)
        model.build(str(build_dir))
        model.load()
        self.build_s = time.perf_counter() - t0
        self.model = model
        self.inp, self.out = net.inputs[0], net.outputs[0]
        in_var = "Input" if mode == "rate" else "V"
        self.in_var = self.pops[self.inp.name].vars[in_var]
        self.out_var = self.pops[self.out.name].vars["Scount" if mode == "rate" else "Out"]

    def run(self, x: np.ndarray) -> np.ndarray:
        """Outputs (spike counts or few-spike pre-activations) for every example."""
        runtime, T = self.model._runtime, self.T
        n = len(x)
        x = x.reshape(n, -1)
        outputs = np.empty((n, self.out.size), np.float64)
        in_view, out_var = self.in_var.view, self.out_var
        if self.mode == "rate":
            for i in range(n):
                runtime.custom_update("Reset")
                runtime.timestep = 0
                in_view[:] = x[i]
                self.in_var.push_to_device()
                for _ in range(T):
                    runtime.step_time()
                out_var.pull_from_device()
                outputs[i] = out_var.view
        else:
            d = self.depth[self.out.name]
            for w in range(n + d):
                runtime.timestep = 0
                in_view[:] = x[w] if w < n else 0.0
                self.in_var.push_to_device()
                for _ in range(T):
                    runtime.step_time()
                if w >= d:
                    out_var.pull_from_device()
                    outputs[w - d] = out_var.view
        return outputs

    def unload(self):
        self.model.unload()


def _tag(prefs: dict) -> str:
    return "_".join(f"{k}-{v}" for k, v in sorted(prefs.items())) or "defaults"


def _setup(name: str, examples: int, optimize_code: bool):
    from distsnn.compilers import FewSpikeCompiler, InferenceCompiler
    w = WORKLOADS[name]
    model_path, data_path = w.ensure(examples)
    net = w.network()
    with np.load(data_path) as f:
        x, y = f["x"][:examples].astype(np.float32), f["y"][:examples]
    x = x.reshape((len(x),) + net.inputs[0].shape)
    # optimize_code: GeNN's preference, on by default in distsnn since f6c1c98. Own build
    # directory: distsnn's model name and GeNN's model.sha both ignore preferences.
    kwargs = {"optimize_code": True} if optimize_code else {}
    build = BUILD / ("handwritten_optimized" if optimize_code else "handwritten")
    if w.mode == "rate":
        compiler = InferenceCompiler(w.timesteps, rng_seed=1, backend="cpu", build_dir=str(build),
                                     **kwargs)
    else:
        compiler = FewSpikeCompiler(k=w.timesteps, rng_seed=1, backend="cpu", build_dir=str(build),
                                    **kwargs)
    return w, net, x, y, build, compiler


def child(order: str, name: str, examples: int, optimize_code: bool, inner: int = 2) -> dict:
    """One fresh process: load both models (in ``order``), warm both up, then time each
    ``inner`` times, alternating; return every time of each."""
    w, net, x, y, build, compiler = _setup(name, examples, optimize_code)
    inp, out = net.inputs[0], net.outputs[0]
    compiled = compiler.compile(net)
    hand = None

    def load_hand():
        prefs = dict(getattr(compiled.genn_model, "_preference_kwargs", {}))
        prefs = {k: v for k, v in prefs.items() if k in ("optimize_code", "debug_code")}
        return HandWritten(net, w.mode, w.timesteps, build / "hand" / _tag(prefs), prefs), prefs

    if order == "hand_first":
        # the hand-written model needs distsnn's GeNN preferences: take them from a model
        # description that is never loaded (GeNNNetwork builds no code until build_and_load)
        from distsnn.genn import CompileOptions, GeNNNetwork
        c = compiler
        probe = GeNNNetwork(net, CompileOptions(mode=c.mode, example_timesteps=c.timesteps,
                                                backend="cpu", genn_kwargs=c.genn_kwargs))
        prefs = {k: v for k, v in probe.genn_model._preference_kwargs.items()
                 if k in ("optimize_code", "debug_code")}
        del probe
        hand = HandWritten(net, w.mode, w.timesteps, build / "hand" / _tag(prefs), prefs)
    with compiled:
        if hand is None:
            hand, prefs = load_hand()
        compiled.evaluate({inp: x[:2]}, {out: y[:2]}, callbacks=[])         # warm-up
        hand.run(x[:2])
        times = {"distsnn": [], "hand": [], "distsnn_call": []}
        for k in range(inner):
            for which in (("distsnn", "hand") if k % 2 == 0 else ("hand", "distsnn")):
                if which == "hand":
                    t0 = time.perf_counter()
                    hand.run(x)
                    times["hand"].append(time.perf_counter() - t0)
                else:
                    t0 = time.perf_counter()
                    compiled.evaluate({inp: x}, {out: y}, callbacks=[])
                    times["distsnn_call"].append(time.perf_counter() - t0)
                    times["distsnn"].append(compiled.last_report.seconds)
    hand.unload()
    return {"order": order, "prefs": prefs, **times}


def compare(name: str, examples: int, repeats: int, optimize_code: bool = False) -> dict:
    """Check identical outputs, then time both in ``repeats`` fresh processes.

    Each process (pinned to one core) loads both models, alternately in either order, and
    times each twice, alternating; a variant's time in a process is its fastest run there,
    and the reported time the median over processes. (Timing the two in one long-lived
    process is biased: the second of two large loaded GeNN models ran 4-8% faster than the
    first; separate processes per variant were noisier, +-15% between processes.)
    """
    w, net, x, y, build, compiler = _setup(name, examples, optimize_code)
    inp, out = net.inputs[0], net.outputs[0]
    res = {"workload": name, "description": w.description, "examples": len(x), "repeats": repeats,
           "timing": "median over fresh processes of the fastest of 2 runs in each"}
    with compiler.compile(net) as compiled:
        # the hand-written model gets exactly the GeNN preferences distsnn used (distsnn turns
        # on optimize_code for the CPU backend since f6c1c98; before, code was built at -O0)
        prefs = dict(getattr(compiled.genn_model, "_preference_kwargs", {}))
        prefs = {k: v for k, v in prefs.items() if k in ("optimize_code", "debug_code")}
        res["genn_preferences"] = prefs
        hand = HandWritten(net, w.mode, w.timesteps, build / "hand" / _tag(prefs), prefs)
        check = min(len(x), 8)
        pred, _ = compiled.predict({inp: x[:check]}, callbacks=[])
        mine = hand.run(x[:check])
        hand.unload()
    res["outputs_identical"] = bool(np.array_equal(pred[out].reshape(check, -1), mine))
    res["outputs_max_abs_diff"] = float(np.max(np.abs(pred[out].reshape(check, -1) - mine)))
    per_process, loads = [], []
    cpu = str(max(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else None
    for rep in range(repeats):
        order = "distsnn_first" if rep % 2 == 0 else "hand_first"
        cmd = [PYTHON, __file__, "--child", order, "--workloads", name, "--examples",
               str(examples)] + (["--optimize-code"] if optimize_code else [])
        if cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", cpu] + cmd
        with LoadMonitor() as mon:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n"
                               f"{proc.stderr[-2000:]}")
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        per_process.append(got)
        loads.append(mon.foreign_cores)
        print(f"  {name} process {rep} ({order}): distsnn {min(got['distsnn']):.3f} s, "
              f"hand-written {min(got['hand']):.3f} s (foreign load {mon.foreign_cores:.2f})",
              flush=True)
    n = len(x)
    t_d = [min(p["distsnn"]) for p in per_process]
    t_h = [min(p["hand"]) for p in per_process]
    ratios = [d / h for d, h in zip(t_d, t_h)]
    td, th, ratio = median(t_d), median(t_h), median(ratios)
    res.update({
        "per_process": per_process, "distsnn_eval_s": t_d, "handwritten_s": t_h,
        "time_ratios": ratios,
        "distsnn_examples_per_second": n / td, "handwritten_examples_per_second": n / th,
        "eps_ratio_distsnn_over_hand": 1.0 / ratio, "time_ratio_distsnn_over_hand": ratio,
        "host_overhead_ms_per_example": 1e3 * (td - th) / n,
        "target_time_ratio": TARGET, "target_met": ratio <= TARGET,
        "max_foreign_cores": max(loads)})
    return res


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS))
    p.add_argument("--repeats", type=int, default=4, help="fresh processes per workload")
    p.add_argument("--examples", type=int, default=None)
    p.add_argument("--child", choices=("distsnn_first", "hand_first"), help=argparse.SUPPRESS)
    p.add_argument("--optimize-code", action="store_true",
                   help="pass optimize_code=True to distsnn explicitly (-O3 -ffast-math; "
                        "distsnn's default on the CPU backend since f6c1c98); writes "
                        "handwritten_optimized.json")
    args = p.parse_args(argv)
    if args.child:
        name = args.workloads
        out = child(args.child, name, args.examples or DEFAULT_EXAMPLES[name],
                    args.optimize_code)
        print(json.dumps(out))
        return out
    results, rows = [], []
    for name in args.workloads.split(","):
        examples = args.examples or DEFAULT_EXAMPLES[name]
        r = compare(name, examples, args.repeats, args.optimize_code)
        results.append(r)
        rows.append({"workload": name, "examples": r["examples"],
                     "distsnn ex/s": r["distsnn_examples_per_second"],
                     "hand-written ex/s": r["handwritten_examples_per_second"],
                     "ex/s ratio": r["eps_ratio_distsnn_over_hand"],
                     "time ratio": r["time_ratio_distsnn_over_hand"],
                     "overhead ms/ex": r["host_overhead_ms_per_example"],
                     "identical": r["outputs_identical"],
                     "target <= 1.10": "met" if r["target_met"] else "MISSED",
                     "max foreign load": r["max_foreign_cores"]})
    out = {"benchmark": "handwritten", "optimize_code": args.optimize_code, "machine": machine_info(),
           "command": "python benchmarks/handwritten.py " + " ".join(argv or sys.argv[1:]),
           "results": results}
    path = write_result("handwritten_optimized" if args.optimize_code else "handwritten", out)
    print(table(rows, list(rows[0]), "distsnn vs hand-written pygenn, one rank (medians)"
                + (", both with optimize_code" if args.optimize_code else "")))
    print(f"\nwrote {path}")
    return out


if __name__ == "__main__":
    main()
