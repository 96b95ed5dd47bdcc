"""The ``distsnn`` command line (console script ``distsnn = "distsnn.cli.app:main"``).

Each command is a small function that imports what it needs when it runs, so ``distsnn
--help`` and light commands stay fast and never pull in TensorFlow or pygenn. To add a
command, define another ``@app.command()`` function below.
"""
from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

import distsnn

app = typer.Typer(
    name="distsnn",
    help="Evaluate spiking networks converted from Keras or ONNX ANNs with GeNN, on one or many "
         "MPI ranks (run under mpiexec/srun for several).",
    no_args_is_help=True,
    add_completion=False,
    # click's plain help: rich's boxed tables cut option names at 80 columns
    rich_markup_mode=None,
    # Plain tracebacks: they must stay readable in MPI job logs (and distsnn's MPI abort
    # hook prints which rank failed).
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"distsnn {distsnn.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_print_version, is_eager=True,
        help="Print the distsnn version and exit."),
    verbose: bool = typer.Option(
        False, "--verbose", help="Show TensorFlow's and GeNN's own output (hidden unless "
                                 "they fail)."),
) -> None:
    """distsnn command line."""
    if verbose:
        from distsnn.utils.console import set_verbose
        set_verbose(True)


@app.command()
def doctor(
    json_output: bool = typer.Option(
        False, "--json", help="Print rank 0's report as JSON instead of a table."),
    tf: bool = typer.Option(
        True, "--tf/--no-tf",
        help="Import TensorFlow/Keras on rank 0 to check they load (takes seconds); "
             "--no-tf only reads their installed versions."),
) -> None:
    """Report versions, GeNN backends, MPI ranks and visible GPUs (one row per rank).

    Run it alone or as `mpiexec -n N distsnn doctor`. Exits 1 when some rank cannot run
    distsnn (e.g. pygenn missing or no usable GeNN backend).
    """
    from distsnn.cli.doctor import run_doctor

    raise typer.Exit(run_doctor(json_output=json_output, import_tf=tf))


# ---------------------------------------------------------------------------------------
# Conversion and evaluation. Every rank runs the same command; rank 0 alone prints.

class Method(str, Enum):
    simple = "simple"
    data_norm = "data-norm"
    few_spike = "few-spike"
    spike_norm = "spike-norm"
    qcfs = "qcfs"


class InputKind(str, Enum):
    poisson = "poisson"
    spike = "spike"
    if_ = "if"
    analog = "analog"


class ReadoutKind(str, Enum):
    spikes = "spikes"
    analog = "analog"


class Reset(str, Enum):
    subtract = "subtract"
    zero = "zero"


class Rounding(str, Enum):
    floor = "floor"
    nearest = "nearest"


class Backend(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


METHOD = typer.Option(Method.few_spike, "--method", "-m", help="Conversion method.")
NORM_DATA = typer.Option(None, "--norm-data", help="Normalisation data (.npz/.npy/.h5): a "
                         "slice of the training inputs; needed by data-norm, spike-norm and "
                         "few-spike.")
K = typer.Option(8, "--k", min=1, max=30,
                 help="Few-spike: timesteps per window (bits per activation).")
ROUNDING = typer.Option(Rounding.floor, "--rounding", help="Few-spike: how each K-bit code "
                       "quantises: floor (mlGeNN) or nearest (zero-mean errors; better on "
                       "deep networks).")
HEADROOM = typer.Option(1.0, "--headroom", min=1.0, help="Few-spike: code activations up "
                       "to this many times the normalisation data's maxima without "
                       "saturating (costs log2 of it in bits).")
INPUT = typer.Option(InputKind.analog, "--input", help="Input encoding of rate methods "
                     "(analog: the first layer receives W x + b, computed once per example; "
                     "mlGeNN: poisson).")
READOUT = typer.Option(ReadoutKind.analog, "--readout", help="Output of rate methods: analog "
                       "(non-spiking, mean input, argmax) or spike counts (mlGeNN: spikes).")
RESET = typer.Option(Reset.subtract, "--reset", help="IF reset: by subtracting the threshold, "
                     "or to zero (mlGeNN).")
PERCENTILE = typer.Option(100.0, "--percentile", help="data-norm/spike-norm: percentile of "
                          "activations used as the maximum (e.g. 99.9).")
SIGNED = typer.Option(False, "--signed-input/--unsigned-input", help="Inputs can be negative.")
SEED = typer.Option(1, "--seed", help="Base seed of the Poisson inputs (one stream per example, "
                    "whatever the rank count).")
BUILD_DIR = typer.Option(None, "--build-dir", help="GeNN build directory (default "
                         "$DISTSNN_BUILD_DIR or ~/.cache/distsnn/genn-build); share it between "
                         "runs to skip rebuilding.")
X_NAME = typer.Option("x", "--x-name", help="Name of the input array in the data files.")
ANN_ACCURACY = typer.Option(None, "--ann-accuracy", help="The ANN's test accuracy (0.9777 or "
                            "97.77), drawn as the reference line of plots.")
PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def _ann_accuracy(value: Optional[float]) -> Optional[float]:
    """A fraction from a fraction or a percentage (values above 1)."""
    from distsnn.errors import UserError
    if value is None:
        return None
    fraction = value / 100.0 if value > 1.0 else value
    if not 0.0 <= fraction <= 1.0:
        raise UserError(f"--ann-accuracy must be a fraction (0.9777) or a percentage (97.77), "
                        f"not {value}")
    return fraction


class Lowering(str, Enum):
    auto = "auto"
    toeplitz = "toeplitz"
    sparse = "sparse"
    procedural = "procedural"


NIR_SOURCE = typer.Option("spec", "--nir-source", help="NIR files: the tool that wrote them "
                          "(spec, snntorch, norse, sinabs, spikingjelly) sets dt, "
                          "discretisation, reset, update order and current jump.")
NIR_DT = typer.Option(None, "--nir-dt", help="NIR files: time step in the unit of their time "
                      "constants (spec/snntorch: 1e-4 s, norse: 1e-3 s, sinabs: 1 step).")
NIR_RESET = typer.Option(None, "--nir-reset", help="NIR files: zero (to v_reset), subtract, "
                         "subtract_late or zero_late (snnTorch's delayed resets).")
NIR_DISC = typer.Option(None, "--nir-discretisation", help="NIR files: euler or exact.")
NIR_ORDER = typer.Option(None, "--nir-order", help="NIR files: simultaneous (Euler) or current "
                         "(the membrane sees this step's synaptic current).")
NIR_JUMP = typer.Option(None, "--nir-jump", help="NIR files: a spike adds dt/tau_syn*w_in "
                        "(euler) or w_in (jump) to the synaptic current.")
NIR_MULTI = typer.Option(None, "--nir-multi-spike/--nir-one-spike", help="NIR files: emit "
                         "floor(V/threshold) spikes per step as one graded event (Sinabs) or "
                         "at most one (default: the preset's).")
NIR_READOUT = typer.Option("mean", "--nir-readout", help="NIR files: non-spiking outputs read "
                           "out their mean membrane (mean) or its last value (last).")


def _nir(source: str, dt: Optional[float], reset: Optional[str], disc: Optional[str],
         order: Optional[str], jump: Optional[str], readout: str,
         multi: Optional[bool] = None) -> dict:
    from distsnn.errors import UserError
    if readout not in ("mean", "last"):
        raise UserError(f"--nir-readout must be mean or last, not {readout!r}")
    return {"source": source, "dt": dt, "reset": reset, "discretisation": disc, "order": order,
            "jump": jump, "multi_spike": multi,
            "li_readout": "avg_var" if readout == "mean" else "var"}


CONNECTIVITY = typer.Option(Lowering.auto, "--connectivity", help="Lowering of convolutions: "
                            "toeplitz stores only kernels (auto: the fastest that fits), sparse "
                            "stores explicit synapses, procedural (CUDA) regenerates them.")
MEMORY_BUDGET = typer.Option(None, "--memory-budget", help="Per-rank memory budget, e.g. 8GiB "
                             "(default: 90% of node memory / ranks on the node).")


def _plain(value):
    """An option's value as the library takes it: enums by value, paths as strings."""
    if isinstance(value, Enum):
        return value.value
    return str(value) if isinstance(value, Path) else value


def _conversion(**values):
    """The conversion options (:class:`~distsnn.jobs.network_source.ConversionOptions`)."""
    from distsnn.errors import UserError
    from distsnn.jobs.network_source import ConversionOptions
    if values["method"] != Method.few_spike:
        for option, value in (("rounding", values["rounding"] != Rounding.floor),
                              ("headroom", values["headroom"] != 1.0)):
            if value:
                raise UserError(f"--{option} applies to few-spike only; leave it out for "
                                f"--method {values['method'].value}")
    return ConversionOptions(**{name: _plain(v) for name, v in values.items()})


def _parse_timesteps(text: str) -> list[int]:
    from distsnn.errors import UserError
    try:
        steps = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise UserError(f"--timesteps must be comma-separated integers like 100,200,500, "
                        f"not {text!r}") from None
    if not steps or steps[0] < 1:
        raise UserError(f"--timesteps must be positive integers, not {text!r}")
    return steps


@app.command()
def convert(
    model: Path = typer.Argument(..., metavar="MODEL", help="Keras model (.keras or legacy "
                                 ".h5) or ONNX model (.onnx, channels-first images)."),
    output: Path = typer.Option(..., "--output", "-o", help="Network file to write (HDF5)."),
    method: Method = METHOD, norm_data: Optional[Path] = NORM_DATA,
    timesteps: int = typer.Option(500, "--timesteps", "-t",
                                  help="Rate methods: timesteps per example (spike-norm "
                                       "simulates this many per normalisation example)."),
    k: int = K, rounding: Rounding = ROUNDING, headroom: float = HEADROOM,
    input_kind: InputKind = INPUT, signed_input: bool = SIGNED, percentile: float = PERCENTILE,
    reset: Reset = RESET, seed: int = SEED,
    build_dir: Optional[Path] = BUILD_DIR, x_name: str = X_NAME, readout: ReadoutKind = READOUT,
    ann_accuracy: Optional[float] = ANN_ACCURACY,
    nir_source: str = NIR_SOURCE, nir_dt: Optional[float] = NIR_DT,
    nir_reset: Optional[str] = NIR_RESET, nir_discretisation: Optional[str] = NIR_DISC,
    nir_order: Optional[str] = NIR_ORDER, nir_jump: Optional[str] = NIR_JUMP,
    nir_readout: str = NIR_READOUT, nir_multi_spike: Optional[bool] = NIR_MULTI,
) -> None:
    """Convert a Keras or ONNX model to a spiking network file (rank 0 converts; spike-norm's
    threshold search uses every rank)."""
    from distsnn.jobs.network_source import load_or_convert
    from distsnn.netfile import save_network
    from distsnn.parallel.agreement import on_root
    from distsnn.parallel.communicator import MPICommunicator
    from distsnn.utils.files import check_writable
    from distsnn.utils.timings import Timings

    comm = MPICommunicator()
    on_root(comm, lambda: check_writable(output, "--output"))
    options = _conversion(method=method, norm_data=norm_data, timesteps=timesteps, k=k,
                          rounding=rounding, headroom=headroom,
                          input_type=input_kind, signed_input=signed_input,
                          percentile=percentile, reset=reset, seed=seed, build_dir=build_dir,
                          norm_x_name=x_name, readout=readout,
                          nir=_nir(nir_source, nir_dt, nir_reset, nir_discretisation, nir_order,
                                   nir_jump, nir_readout, nir_multi_spike))
    timings = Timings()
    ann = _ann_accuracy(ann_accuracy)
    network = load_or_convert(str(model), options, comm, timings)
    if comm.rank == 0:
        if ann is not None:
            network.metadata["ann_accuracy"] = ann
        save_network(network, output)
        typer.echo(f"wrote {output}: {len(network.populations)} populations, "
                   f"{len(network.connections)} connections, method "
                   f"{network.metadata.get('method', method.value)} "
                   f"({', '.join(f'{k} {v:.2f}s' for k, v in timings.values.items())})")


@app.command()
def evaluate(
    model: Path = typer.Argument(..., metavar="MODEL", help="Keras model (.keras/.h5), ONNX "
                                 "model (.onnx) or distsnn network file."),
    data: Path = typer.Option(..., "--data", "-d", help="Test set (.npz/.npy/.h5) with inputs "
                              "and integer labels, or a folder of class subfolders of "
                              "JPEG/PNG images."),
    timesteps: str = typer.Option("500", "--timesteps", "-t",
                                  help="Rate-coded: comma-separated readout timesteps, e.g. "
                                       "100,200,500 (one run of the longest)."),
    batch_size: int = typer.Option(1, "--batch-size", "-b", help="Examples per rank per batch "
                                   "(the CPU backend runs 1)."),
    backend: Backend = typer.Option(Backend.auto, "--backend", help="GeNN backend."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Results JSON to write."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Plot file (.png, .pdf or .svg): "
                                        "accuracy vs timesteps and firing rate per population."),
    predictions: Optional[Path] = typer.Option(
        None, "--predictions", help="Per-example file (.npz or .csv): global index, label, "
                                    "predicted class and output values at each readout "
                                    "timestep, in example order."),
    ann_accuracy: Optional[float] = ANN_ACCURACY,
    method: Method = METHOD, norm_data: Optional[Path] = NORM_DATA, k: int = K,
    rounding: Rounding = ROUNDING, headroom: float = HEADROOM, input_kind: InputKind = INPUT,
    signed_input: bool = SIGNED, percentile: float = PERCENTILE, reset: Reset = RESET,
    seed: int = SEED, build_dir: Optional[Path] = BUILD_DIR,
    x_name: str = X_NAME, readout: ReadoutKind = READOUT,
    y_name: str = typer.Option("y", "--y-name", help="Name of the label array."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
    connectivity: Lowering = CONNECTIVITY, memory_budget: Optional[str] = MEMORY_BUDGET,
    scale: Optional[str] = typer.Option(None, "--scale", help="Multiply the inputs by this "
                                        "(e.g. 1/255 for uint8 images); required for integer "
                                        "inputs."),
    mean: Optional[str] = typer.Option(None, "--mean", help="Subtract after scaling: one value "
                                       "or one per channel (0.485,0.456,0.406)."),
    std: Optional[str] = typer.Option(None, "--std", help="Then divide: one value or one per "
                                      "channel."),
    chunk_size: int = typer.Option(1024, "--chunk-size", help="Examples per rank read and "
                                   "journaled at a time (bounds memory)."),
    journal: Optional[Path] = typer.Option(None, "--journal", help="Progress journal folder "
                                           "(default OUTPUT.journal, or distsnn-HASH.journal "
                                           "here); a rerun resumes from it."),
    resume: bool = typer.Option(False, "--resume", help="Require a journal to resume from "
                                "(a rerun resumes from one anyway)."),
    resize: Optional[int] = typer.Option(None, "--resize", help="Image folders: resize so the "
                                         "shorter side has this many pixels."),
    crop: Optional[int] = typer.Option(None, "--crop", help="Image folders: centre crop to "
                                       "this many pixels square."),
    class_names: Optional[Path] = typer.Option(None, "--class-names", help="Image folders: "
                                               "class order, one subfolder name per line "
                                               "(default: sorted names)."),
    peer_timeout: Optional[float] = typer.Option(
        None, "--peer-timeout", help="Seconds a rank may go unheard (stopped, hung, node or "
                                     "network lost) before the job ends, resumable (default "
                                     "$DISTSNN_PEER_TIMEOUT or 300; 0: off)."),
    nir_source: str = NIR_SOURCE, nir_dt: Optional[float] = NIR_DT,
    nir_reset: Optional[str] = NIR_RESET, nir_discretisation: Optional[str] = NIR_DISC,
    nir_order: Optional[str] = NIR_ORDER, nir_jump: Optional[str] = NIR_JUMP,
    nir_readout: str = NIR_READOUT, nir_multi_spike: Optional[bool] = NIR_MULTI,
    frame_length: Optional[float] = typer.Option(
        None, "--frame-length", help="NIR networks: --data holds event lists (events with "
        "fields x, y, t, p, example; offsets; y), binned into frames this long (t's unit)."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Event lists: frames per "
                                         "example (default: up to the latest event)."),
) -> None:
    """Evaluate a converted network (or convert a Keras or ONNX model first) on a dataset,
    with every MPI rank reading and simulating its own shard."""
    from distsnn.cli.results_json import run_record, utc_now
    from distsnn.data.inputs import InputScaling, parse_channels, parse_scale
    from distsnn.errors import UserError
    from distsnn.jobs.evaluate import EvaluateOptions
    from distsnn.jobs.signals import stop_on_signals
    from distsnn.jobs.stream import JobOptions, check_chunk_size
    from distsnn.parallel.liveness import peer_timeout as timeout_of

    record = run_record(utc_now())  # the start time
    steps = _parse_timesteps(timesteps)
    ann = _ann_accuracy(ann_accuracy)
    if plot is not None and plot.suffix.lower() not in PLOT_SUFFIXES:
        raise UserError(f"--plot {plot}: use a file name ending in "
                        f"{', '.join(PLOT_SUFFIXES)} (the format follows the extension)")
    scaling = InputScaling(parse_scale(scale), parse_channels(mean, "--mean"),
                           parse_channels(std, "--std"))
    check_chunk_size(chunk_size)
    conversion = _conversion(method=method, norm_data=norm_data, timesteps=max(steps), k=k,
                             rounding=rounding, headroom=headroom,
                             input_type=input_kind, signed_input=signed_input,
                             percentile=percentile, reset=reset, seed=seed,
                             build_dir=build_dir, norm_x_name=x_name, readout=readout,
                             nir=_nir(nir_source, nir_dt, nir_reset, nir_discretisation,
                                      nir_order, nir_jump, nir_readout, nir_multi_spike))
    evaluation = EvaluateOptions(
        data=str(data), timesteps=steps, frame_length=frame_length, frames=frames,
        x_name=x_name, y_name=y_name, batch_size=batch_size,
        backend=backend.value, seed=seed, build_dir=conversion.build_dir,
        connectivity=connectivity.value, memory_budget=memory_budget, progress=progress,
        predictions=None if predictions is None else str(predictions),
        job=JobOptions(chunk_size=chunk_size, resume=resume, scaling=scaling, journal=journal,
                       images={"resize": resize, "crop": crop, "class_names": class_names},
                       peer_timeout=timeout_of(peer_timeout)))
    with stop_on_signals() as stop:
        evaluation.job.stop = stop
        _evaluate(model, conversion, evaluation, output, plot, ann, record)


def _evaluate(model: Path, conversion, evaluation, output: Optional[Path],
              plot: Optional[Path], ann: Optional[float], record: dict) -> None:
    """Check the outputs and backend, get the network, evaluate, print and write the results."""
    import shutil

    from distsnn.cli.report import plot_results, results_table
    from distsnn.cli.results_json import to_json
    from distsnn.jobs.evaluate import evaluate_file
    from distsnn.jobs.journal import default_journal_path
    from distsnn.jobs.network_source import load_or_convert
    from distsnn.jobs.predictions import check_predictions_path
    from distsnn.parallel.agreement import on_root
    from distsnn.parallel.communicator import MPICommunicator, initialise_mpi
    from distsnn.utils.files import atomic_path, check_writable, write_text
    from distsnn.utils.timings import start_timings

    timings = start_timings()  # process start to here: interpreter, imports, options
    with timings.measure("mpi_init"):
        initialise_mpi()
    with timings.measure("communicators"):
        comm = MPICommunicator()
    on_root(comm, lambda: [check_writable(p, o) for p, o in ((output, "--output"),
                                                             (plot, "--plot")) if p is not None])
    if evaluation.predictions is not None:
        on_root(comm, lambda: check_predictions_path(Path(evaluation.predictions)))
    evaluation.backend = _check_backend(comm, evaluation.backend, evaluation.batch_size)
    network = load_or_convert(str(model), conversion, comm, timings)
    job = evaluation.job
    job.journal = job.journal or default_journal_path(output, {
        "model": str(Path(model).resolve()), "data": str(Path(evaluation.data).resolve()),
        "timesteps": evaluation.timesteps, "seed": evaluation.seed,
        "inputs": job.scaling.describe()})
    results = evaluate_file(network, evaluation, comm, timings)
    if comm.rank == 0:
        results.update(record, ann_accuracy=ann if ann is not None
                       else network.metadata.get("ann_accuracy"))
        results["network"]["path"] = str(model)
        typer.echo(results_table(results))
        if output is not None:
            write_text(output, to_json(results), "results")
        if plot is not None:
            with atomic_path(plot, "plot") as tmp:
                plot_results(results, tmp)
        shutil.rmtree(job.journal, ignore_errors=True)  # the results are safe now


def _check_backend(comm, backend: str, batch_size: int) -> str:
    """The backend to use, checked on every rank before any work."""
    from distsnn.errors import UserError
    from distsnn.parallel.agreement import agree

    def check() -> str:
        from distsnn.genn import resolve_backend
        from distsnn.parallel.devices import answering_gpus
        if batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, not {batch_size}")
        try:
            resolved = resolve_backend(backend, bool(answering_gpus()))
        except (ValueError, RuntimeError) as err:
            raise UserError(f"--backend {backend}: {err}") from None
        if resolved == "cpu" and batch_size != 1:
            raise UserError(f"--batch-size {batch_size}: the CPU backend runs one example per "
                            f"rank at a time; use -b 1 (or --backend cuda on a GPU)")
        return resolved
    return agree(comm, check)


@app.command()
def inspect(
    network: Path = typer.Argument(..., metavar="NETWORK", help="distsnn network file, or a "
                                   "NIR graph (.nir, converted with the --nir-* options)."),
    connectivity: Lowering = CONNECTIVITY, memory_budget: Optional[str] = MEMORY_BUDGET,
    ranks_per_node: int = typer.Option(1, "--ranks-per-node", help="Ranks that will share "
                                       "a node (divides the default memory budget)."),
    batch_size: int = typer.Option(1, "--batch-size", "-b", help="Examples per rank per batch."),
    nir_source: str = NIR_SOURCE, nir_dt: Optional[float] = NIR_DT,
    nir_reset: Optional[str] = NIR_RESET, nir_discretisation: Optional[str] = NIR_DISC,
    nir_order: Optional[str] = NIR_ORDER, nir_jump: Optional[str] = NIR_JUMP,
    nir_readout: str = NIR_READOUT, nir_multi_spike: Optional[bool] = NIR_MULTI,
) -> None:
    """Show a network file: populations, connections with their lowering and estimated memory
    per rank, thresholds or alphas, metadata; for a NIR graph also the preset, the flattened
    graph and the depth alignment."""
    from distsnn.cli.describe import describe_network
    from distsnn.genn.lowering import memory_budget as budget_of
    from distsnn.genn.lowering import plan_lowering
    from distsnn.netfile import load_network
    from distsnn.parallel.communicator import _launcher_rank

    if network.suffix.lower() == ".nir":
        from distsnn.convert.nir_frontend import convert_nir_file
        net = convert_nir_file(network, **_nir(nir_source, nir_dt, nir_reset,
                                                nir_discretisation, nir_order, nir_jump,
                                                nir_readout, nir_multi_spike))
    else:
        net = load_network(network)
    plan = plan_lowering(net, connectivity.value, batch_size,
                         *budget_of(memory_budget, ranks_per_node))
    if _launcher_rank() == 0:  # under mpiexec, print once
        typer.echo(describe_network(net, plan))


@app.command()
def demo(
    output_dir: Path = typer.Option(Path("demo-output"), "--output-dir",
                                    help="Where the model, data, results and plots go."),
    ranks: int = typer.Option(2, "--ranks", "-n", min=1, help="MPI ranks for the evaluation."),
    seed: int = SEED,
) -> None:
    """Train a small CNN on scikit-learn's digits, convert it with few-spike and data-norm,
    evaluate each with `mpiexec -n RANKS distsnn evaluate` and compare with the ANN."""
    from distsnn.cli.demo import run_demo

    raise typer.Exit(run_demo(output_dir, ranks, seed))


def main() -> None:
    """Console entry point: user errors become one line and exit code 2 (from rank 0 when
    every rank has it, else from the rank that found it, which then ends the job)."""
    from distsnn.errors import USER_ERRORS, SharedUserError
    from distsnn.jobs.signals import Interrupted
    from distsnn.parallel.liveness import PeerLost
    try:
        code = app(standalone_mode=False)  # click returns a command's typer.Exit code
        if isinstance(code, int) and code:
            sys.exit(code)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted", 130, shared=True)
    except Interrupted as stopped:
        _fail(str(stopped), stopped.exit_code, shared=True)
    except PeerLost as lost:  # no barrier with lost ranks: MPI itself may block on them
        from distsnn.parallel.communicator import _WORLD
        from distsnn.parallel.liveness import end_process
        end_process(_WORLD, str(lost) if _WORLD.rank == lost.reporter else None, lost.exit_code)
    except typer.TyperException as err:  # usage errors: bad or missing options
        _fail(err.format_message(), err.exit_code, shared=True)  # empty: help was shown
    except USER_ERRORS as err:
        _fail(str(err), 2, shared=isinstance(err, SharedUserError))


def _fail(message: str, code: int, shared: bool) -> None:
    """Exactly one ``distsnn: error:`` line for the job, then exit ``code`` on every rank.

    ``shared``: every rank has the same error (rank 0 prints it). Otherwise this rank found it
    alone: when all ranks fail within seconds rank 0 prints its own, else this rank prints and
    aborts the others, which may be waiting for it."""
    from distsnn.parallel.communicator import _WORLD, _launcher_rank, end_job
    rank, size = (_WORLD.rank, _WORLD.size) if _WORLD is not None else (_launcher_rank(), 1)
    together = end_job(shared)
    if message and (rank == 0 if together or shared else True):
        prefix = f"rank {rank}: " if not together and size > 1 else ""
        sys.stderr.write(f"distsnn: error: {prefix}{message}\n")
        sys.stderr.flush()
    if not together:
        _WORLD.abort(code)
    sys.exit(code)
