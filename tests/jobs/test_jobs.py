"""Long jobs: streamed chunks, the journal, stopping on signals and resuming (real processes,
real mpiexec, real signals)."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers.processes import DISTSNN, MPIEXEC, journal_chunks, run, run_mpi

pytestmark = pytest.mark.mpi

STEPS = "4000,12000"  # slow enough (~0.05 s per example) to be stopped part-way


def _argv(files, out, build_dir, *extra):
    return [DISTSNN, "evaluate", str(files["net"]), "--data", str(files["data"]), "-t", STEPS,
            "-o", str(out), "--build-dir", str(build_dir), "--no-progress", "--chunk-size", "5",
            *map(str, extra)]


def _run(ranks, argv, timeout=300):
    return run_mpi(ranks, argv, timeout=timeout) if ranks > 1 else run(argv, timeout=timeout)


def _start_and_signal(ranks, argv, out, sig, min_lines=2, kill_one_rank=False):
    """Start a run, wait until the journal holds ``min_lines`` chunks, then signal it."""
    cmd = [MPIEXEC, "-n", str(ranks), *argv] if ranks > 1 else argv
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while journal_chunks(out) < min_lines:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    if kill_one_rank:
        os.kill(_rank_pid(proc.pid, rank=1), signal.SIGKILL)
    else:
        proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


def _rank_pid(launcher_pid, rank):
    """The pid of one rank: a descendant of our launcher whose environment has PMI_RANK=rank."""
    def parent(pid):
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])

    for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            ancestor = pid
            while ancestor not in (0, 1, launcher_pid):
                ancestor = parent(ancestor)
        except (OSError, ValueError, IndexError):
            continue
        if ancestor == launcher_pid and f"PMI_RANK={rank}".encode() in env:
            return pid
    raise AssertionError("rank process not found")


def _kill_group(pgid: int) -> bool:
    """SIGKILL what is left of a process group; whether anything was."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def _results(path):
    r = json.loads(path.read_text())
    return r["metrics"], r["spikes"], r["journal"]["resumed_examples"]


@pytest.fixture(scope="module")
def reference(poisson_files, tmp_path_factory):
    """The uninterrupted run (one rank, default chunks)."""
    root = tmp_path_factory.mktemp("ref")
    out = root / "ref.json"
    build = root / "build"
    argv = _argv(poisson_files, out, build)[:-2]  # default --chunk-size
    proc = run(argv, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert not (root / "ref.json.journal").exists()  # removed once the results are written
    metrics, spikes, resumed = _results(out)
    assert resumed == 0 and metrics["12000"]["sparse_categorical_accuracy"]["total"] == 96
    return metrics, spikes, build


@pytest.mark.parametrize("ranks,resume_ranks", [(1, 1), (2, 2), (2, 1)])
def test_sigterm_then_rerun_gives_the_uninterrupted_results(poisson_files, reference, tmp_path,
                                                            ranks, resume_ranks):
    metrics, spikes, build = reference
    out = tmp_path / "r.json"
    out.write_text("previous results")
    rc, stderr = _start_and_signal(ranks, _argv(poisson_files, out, build), out, signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM, stderr
    lines = [l for l in stderr.splitlines() if l.startswith("distsnn:")]
    assert len(lines) == 1 and "SIGTERM" in lines[0] and "rerun the same command" in lines[0]
    assert "Traceback" not in stderr
    assert out.read_text() == "previous results"  # the previous file is left as it was
    proc = _run(resume_ranks, _argv(poisson_files, out, build))
    assert proc.returncode == 0, proc.stderr
    got_metrics, got_spikes, resumed = _results(out)
    assert 0 < resumed < 96
    assert got_metrics == metrics and got_spikes == spikes
    assert not (tmp_path / "r.json.journal").exists()


def test_sigkill_of_one_rank_then_resume_with_resume_flag(poisson_files, reference, tmp_path):
    metrics, spikes, build = reference
    out = tmp_path / "k.json"
    rc, _ = _start_and_signal(2, _argv(poisson_files, out, build), out, None, min_lines=3,
                              kill_one_rank=True)
    assert rc != 0 and not out.exists()
    proc = _run(2, _argv(poisson_files, out, build, "--resume"))
    assert proc.returncode == 0, proc.stderr
    got_metrics, got_spikes, resumed = _results(out)
    assert resumed > 0 and got_metrics == metrics and got_spikes == spikes


def test_a_stopped_rank_ends_the_job_within_the_peer_timeout_and_it_resumes(
        poisson_files, reference, tmp_path):
    """SIGSTOP on one rank (a hung node): the other rank notices within --peer-timeout,
    saves its progress and ends the job with one line naming the lost rank; a rerun resumes
    to the uninterrupted results."""
    metrics, spikes, build = reference
    out = tmp_path / "h.json"
    argv = _argv(poisson_files, out, build, "--peer-timeout", "10")
    proc = subprocess.Popen([MPIEXEC, "-n", "2", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    while journal_chunks(out) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    stopped = _rank_pid(proc.pid, rank=1)
    os.kill(stopped, signal.SIGSTOP)
    start = time.monotonic()
    try:
        _, stderr = proc.communicate(timeout=10 + 30)
    finally:
        left = _kill_group(proc.pid)  # nothing of the job may be left, stopped or not
    assert time.monotonic() - start < 10 + 30 and not left
    lines = [line for line in stderr.splitlines() if line.startswith("distsnn:")]
    assert len(lines) == 1 and "rank 1 not heard from for 10 s" in lines[0], stderr
    assert f"progress saved in {out}.journal" in lines[0] and "Traceback" not in stderr
    assert proc.returncode != 0 and not out.exists()
    done = journal_chunks(out)
    assert done >= 2
    rerun = _run(2, _argv(poisson_files, out, build))
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming from the journal {out}.journal" in rerun.stderr
    got_metrics, got_spikes, resumed = _results(out)
    assert resumed > 0 and got_metrics == metrics and got_spikes == spikes


def test_ctrl_c_exits_130_with_how_to_resume(poisson_files, reference, tmp_path):
    _, _, build = reference
    out = tmp_path / "c.json"
    rc, stderr = _start_and_signal(2, _argv(poisson_files, out, build), out, signal.SIGINT,
                                   min_lines=1)
    assert rc == 130, stderr
    assert "SIGINT" in stderr and "--resume" in stderr and "Traceback" not in stderr


def test_a_journal_of_other_options_is_refused(poisson_files, reference, tmp_path):
    _, _, build = reference
    out = tmp_path / "o.json"
    rc, _ = _start_and_signal(1, _argv(poisson_files, out, build), out, signal.SIGUSR1,
                              min_lines=1)
    assert rc == 128 + signal.SIGUSR1
    proc = run(_argv(poisson_files, out, build, "--seed", "2"))
    assert proc.returncode == 2
    line = [l for l in proc.stderr.splitlines() if l.startswith("distsnn: error:")]
    assert len(line) == 1 and "different run" in line[0] and "seed" in line[0]
    missing = run(_argv(poisson_files, tmp_path / "none.json", build, "--resume"))
    assert missing.returncode == 2 and "no journal" in missing.stderr


def test_bad_inputs_are_refused_naming_the_example_and_the_fix(poisson_files, reference,
                                                               tmp_path):
    _, _, build = reference
    x = poisson_files["x"].copy()
    x[41, 2, 3, 0] = np.nan
    bad = tmp_path / "nan.npz"
    np.savez(bad, x=x, y=np.zeros(96, np.int64))
    argv = [DISTSNN, "evaluate", str(poisson_files["net"]), "--data", str(bad), "-t", "5",
            "--build-dir", str(build), "--no-progress", "--chunk-size", "5"]
    proc = run_mpi(2, argv, cwd=tmp_path)  # no -o: the journal goes to the working directory
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.startswith("distsnn: error:")]
    assert len(lines) == 1 and "example 41" in lines[0] and "NaN" in lines[0], proc.stderr
    # the chunks done before example 41 stay journaled, for the rerun with fixed data
    assert len(list(tmp_path.glob("distsnn-*.journal/run-*.jsonl"))) == 2
    # uint8 images: refused without a scale, equal to the float data with --scale 1/255
    images = np.random.default_rng(1).integers(0, 256, (20, 6, 6, 1)).astype(np.uint8)
    labels = np.arange(20) % 4
    np.savez(tmp_path / "u8.npz", x=images, y=labels)
    np.savez(tmp_path / "f32.npz", x=images.astype(np.float32) / np.float32(255), y=labels)
    argv[4] = str(tmp_path / "u8.npz")
    proc = run(argv, cwd=tmp_path)
    assert proc.returncode == 2 and "uint8" in proc.stderr and "--scale 1/255" in proc.stderr
    results = []
    for name, extra in (("u8.npz", ["--scale", "1/255"]), ("f32.npz", [])):
        argv[4] = str(tmp_path / name)
        out = tmp_path / f"{name}.json"
        proc = run(argv + extra + ["-o", str(out)])
        assert proc.returncode == 0, proc.stderr
        results.append(_results(out)[:2])
    assert results[0] == results[1]


def test_a_run_failing_on_bad_data_before_any_chunk_leaves_no_journal(poisson_files,
                                                                      reference, tmp_path):
    """Nothing to resume, so nothing may block the rerun once the data are fixed."""
    _, _, build = reference
    data = tmp_path / "data.npz"
    x = poisson_files["x"].copy()
    x[[0, 48], 0, 0, 0] = np.inf  # the first example of each rank's shard: no rank does a chunk
    np.savez(data, x=x, y=np.zeros(96, np.int64))
    out = tmp_path / "fixed.json"
    argv = [DISTSNN, "evaluate", str(poisson_files["net"]), "--data", str(data), "-t", "5",
            "--build-dir", str(build), "--no-progress", "--chunk-size", "5", "-o", str(out)]
    proc = run_mpi(2, argv)
    assert proc.returncode == 2 and "example 0" in proc.stderr, proc.stderr
    assert not (tmp_path / "fixed.json.journal").exists()
    np.savez(data, x=poisson_files["x"], y=np.zeros(96, np.int64))
    proc = run_mpi(2, argv)
    assert proc.returncode == 0, proc.stderr
    assert _results(out)[2] == 0


def test_peak_memory_of_ten_chunks_stays_within_one_chunk_of_one(tmp_path, build_dir):
    """Bound: evaluating 10 chunks adds less than 2 chunks' worth (float32 + stored copy)
    of resident memory over evaluating 1 chunk."""
    from distsnn.connectivity import Dense
    from distsnn.netfile import save_network
    from distsnn.network import Network
    from distsnn.neurons import IntegrateFire, IntegrateFireInput
    shape, chunk = (64, 64, 3), 200
    net = Network()
    inp = net.add_population("in", shape, IntegrateFireInput())
    out = net.add_population("out", (2,), IntegrateFire(readout="spike_count"))
    net.connect(inp, out, Dense(np.full((int(np.prod(shape)), 2), 1e-4, np.float32)))
    net.outputs = [out]
    save_network(net, tmp_path / "wide.h5")
    chunk_bytes = chunk * int(np.prod(shape)) * 4
    peaks = {}
    for n_chunks in (1, 10):
        data = tmp_path / f"d{n_chunks}.npz"
        x = np.ones((chunk * n_chunks,) + shape, np.float32)
        np.savez_compressed(data, x=x, y=np.zeros(len(x), np.int64))
        del x
        probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
                 "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        proc = run([sys.executable, "-c", probe, DISTSNN, "evaluate", str(tmp_path / "wide.h5"),
                    "--data", str(data), "-t", "1", "--chunk-size", str(chunk),
                    "--build-dir", str(build_dir), "--no-progress"], timeout=300)
        rc, kib = proc.stdout.split()[-2:]
        assert rc == "0", proc.stderr
        peaks[n_chunks] = int(kib) * 1024
    assert peaks[10] - peaks[1] < 2 * chunk_bytes, (peaks, chunk_bytes)


def test_batch_iter_pipelines_give_each_rank_only_its_batches(tmp_path, build_dir):
    from helpers.processes import REPO
    out = tmp_path / "iter.json"
    proc = run_mpi(2, [sys.executable, str(REPO / "tests" / "mpi_scripts" /
                                          "batch_iter_shards.py"), str(out), str(build_dir)])
    assert proc.returncode == 0, proc.stderr
    ranks = [json.loads((tmp_path / f"iter.json.rank{r}").read_text()) for r in (0, 1)]
    for rank, data in enumerate(ranks):
        assert data["produced"]["callable"] == data["produced"]["shard"] == [rank, rank + 2,
                                                                           rank + 4]
        reference, by_callable, by_shard = data["counts"]
        assert reference[1] == 23 * 5
        assert by_callable == pytest.approx(reference, rel=1e-12)
        assert by_shard == pytest.approx(reference, rel=1e-12)


# --- build directory: concurrent jobs, read-only --------------------------------------------


def _small_eval(files, build_dir, *extra):
    return [DISTSNN, "evaluate", str(files["net"]), "--data", str(files["data"]), "-t", "5,9",
            "--build-dir", str(build_dir), "--no-progress", *map(str, extra)]


def test_five_concurrent_jobs_share_a_fresh_build_dir_then_it_works_read_only(small_files,
                                                                              tmp_path):
    build = tmp_path / "fresh-build"
    outs = [tmp_path / f"job{i}.json" for i in range(5)]
    cmds = [([MPIEXEC, "-n", "2"] if i == 0 else []) + _small_eval(small_files, build, "-o", out)
            for i, out in enumerate(outs)]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in cmds]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    for rc, stderr in results:
        assert rc == 0, stderr
    metrics = [json.loads(o.read_text())["metrics"] for o in outs]
    assert all(m == metrics[0] for m in metrics)
    assert sum(json.loads(o.read_text())["build_reused"] == [False] for o in outs[1:]) <= 1
    # the complete build, read-only: a bind mount as root, else file permissions
    readonly = tmp_path / "ro"
    readonly.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        f"mount --bind {build} {readonly} && mount -o remount,ro,bind {readonly}",
        shell=True).returncode == 0
    if not mounted:
        readonly.rmdir()
        build.chmod(0o555)
        readonly = build
    try:
        out = tmp_path / "ro.json"
        proc = run_mpi(2, _small_eval(small_files, readonly, "-o", out))
        assert proc.returncode == 0, proc.stderr
        assert json.loads(out.read_text())["metrics"] == metrics[0]
        other = run(_small_eval(small_files, readonly, "-t", "7"))  # another model: not built
        assert other.returncode == 2 and "read-only" in other.stderr, other.stderr
    finally:
        if mounted:
            subprocess.run(["umount", str(readonly)])
        else:
            build.chmod(0o755)


# --- outputs: checked first, written whole ---------------------------------------------------


def test_unwritable_outputs_fail_before_any_work(small_files, tmp_path, build_dir):
    for option, path in (("-o", tmp_path / "missing" / "r.json"),
                         ("--plot", tmp_path / "nofolder" / "p.png")):
        proc = run_mpi(2, _small_eval(small_files, build_dir, option, path))
        assert proc.returncode == 2
        lines = [l for l in proc.stderr.splitlines() if l.startswith("distsnn: error:")]
        assert len(lines) == 1 and "does not exist" in lines[0] and option in lines[0]
        assert "timesteps" not in proc.stdout  # nothing was evaluated


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 64 KiB tmpfs (needs root, as on CI runners' containers)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                                            str(mount)]).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", str(mount)])


def test_a_full_disk_leaves_the_previous_file_and_no_half_file(small_files, tmp_path,
                                                               build_dir, tiny_tmpfs):
    out = tiny_tmpfs / "r.json"
    out.write_text("previous")
    (tiny_tmpfs / "filler").write_bytes(b"\0" * (60 << 10))  # leaves a few KiB: the JSON is larger
    proc = run(_small_eval(small_files, build_dir, "-o", out, "--journal", tmp_path / "j"))
    assert proc.returncode == 2, proc.stderr
    assert "No space left" in proc.stderr and "previous file is unchanged" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tiny_tmpfs.iterdir()) == ["filler", "r.json"]
    assert out.read_text() == "previous"
    assert (tmp_path / "j" / "header.json").exists()  # the journal stays for a rerun


# --- image folders ------------------------------------------------------------------------------


def _image_folder(root):
    """3 classes of 8x8 grey PNGs and the same data, centre-cropped to 6x6, as uint8 arrays."""
    from PIL import Image
    rng = np.random.default_rng(8)
    xs, ys = [], []
    for label, name in enumerate(("ants", "bees", "cats")):
        (root / name).mkdir(parents=True)
        for i in range(5 + label):
            pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels, "L").save(root / name / f"img{i:02d}.png")
            xs.append(pixels[1:7, 1:7, None])
            ys.append(label)
    return np.stack(xs), np.array(ys)


def test_image_folder_ranks_decode_disjoint_shards_matching_the_npz(small_files, tmp_path,
                                                                    build_dir, monkeypatch):
    from distsnn.data.images import ImageFolder
    from distsnn.jobs.journal import split_ranges
    x, y = _image_folder(tmp_path / "images")
    np.savez(tmp_path / "same.npz", x=x, y=y)
    folder = ImageFolder.scan(tmp_path / "images", channels=1, crop=6)
    decoded, original = {0: [], 1: []}, folder.decode
    for rank in (0, 1):
        monkeypatch.setattr(folder, "decode", lambda i, r=rank: decoded[r].append(i)
                            or original(i))
        rows = list(folder.iter_rows(split_ranges([(0, len(y))], rank, 2), chunk=4))
        got = np.concatenate([r[1] for r in rows])
        first = rows[0][0]
        assert np.array_equal(got, x[first:first + len(got)])
        assert np.array_equal(np.concatenate([r[2] for r in rows]), y[first:first + len(got)])
    assert sorted(decoded[0] + decoded[1]) == list(range(len(y)))  # each decoded exactly once
    results = []
    for data in (tmp_path / "images", tmp_path / "same.npz"):
        out = tmp_path / f"{data.name}.json"
        proc = run_mpi(2, _small_eval(small_files, build_dir, "--data", data, "--crop", 6,
                                      "--scale", "1/255", "-o", out, "--chunk-size", 3))
        assert proc.returncode == 0, proc.stderr
        results.append(_results(out)[:2])
    assert results[0] == results[1]
    assert results[0][0]["9"]["sparse_categorical_accuracy"]["total"] == len(y)
