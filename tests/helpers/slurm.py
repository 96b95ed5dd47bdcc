"""Local Slurm clusters for the tests (launch/local_slurm.sh, launch/local_cluster.sh): bring
one up on free ports in a test folder, the environment of its commands, take it down; submit
batch jobs to it and wait for them, bounded."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import pytest

from helpers.processes import REPO, journal_chunks

VENV = Path(sys.executable).parent.parent  # the venv running the tests; jobs use it too
TERMINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                   "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT"}


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def slurm_env(conf: Path, extra: Optional[dict] = None) -> dict:
    """The environment for Slurm commands: ours, minus any outer job's SLURM_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["SLURM_CONF"] = str(conf)
    env.update(extra or {})
    return env


def cluster_up(script: Path, directory: Path, ports_variable: str) -> Path:
    """``SCRIPT up DIRECTORY`` on two free ports; its ``SLURM_CONF``. Skips where the script
    cannot have a cluster (not root: exit 3; packages not installable: exit 4), fails with
    the daemons' logs otherwise; takes the cluster down again when ``up`` fails."""
    if os.geteuid() != 0:
        pytest.skip(f"a local Slurm cluster needs root ({script.name} up); run the tests as "
                    f"root to include the Slurm tests")
    ports = free_ports(2)
    env = {**os.environ, ports_variable: f"{ports[0]} {ports[1]}"}
    try:
        up = subprocess.run(["bash", str(script), "up", str(directory)], capture_output=True,
                            text=True, timeout=900, env=env)
    except subprocess.TimeoutExpired:
        cluster_down(script, directory)
        pytest.fail(f"{script.name} up did not finish in 900 s")
    if up.returncode in (3, 4):
        pytest.skip(f"no local Slurm cluster: {up.stderr.strip().splitlines()[-1]}")
    if up.returncode != 0:
        cluster_down(script, directory)
        logs = "".join(f"\n--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                       for p in sorted((directory / "log").glob("*.log")))
        pytest.fail(f"{script.name} up failed ({up.returncode}):\n{up.stderr}{logs}")
    match = re.search(r"^export SLURM_CONF=(.+)$", up.stdout, re.M)
    assert match, f"no export line in the output of {script.name} up: {up.stdout!r}"
    print(f"\n{script.name}: cluster up in {directory} (ports {ports}): {up.stderr.strip()}")
    return Path(match.group(1))


def cluster_down(script: Path, directory: Path) -> subprocess.CompletedProcess:
    down = subprocess.run(["bash", str(script), "down", str(directory)], capture_output=True,
                          text=True, timeout=120)
    print(f"\n{script.name}: cluster down: {down.stderr.strip()}")
    return down


# --- batch jobs ----------------------------------------------------------------------------


@dataclass
class SlurmCluster:
    directory: Path
    conf: Path

    def env(self, extra: Optional[dict] = None) -> dict:
        return slurm_env(self.conf, extra)

    def command(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                              env=self.env())


@dataclass
class JobResult:
    job_id: str
    state: str  # Slurm's JobState (COMPLETED, FAILED, ...) or "TEST_TIMEOUT"
    exit_code: Optional[int]  # the batch script's exit status, when Slurm reported it
    output: str  # the job's output file (stdout and stderr together)
    seconds: float  # from submission to the end of the job
    restarts: int = 0  # how many times the job was requeued

    @property
    def ok(self) -> bool:
        return self.state == "COMPLETED" and self.exit_code in (0, None)

    def describe(self) -> str:
        return (f"job {self.job_id}: {self.state}, exit code {self.exit_code}, "
                f"{self.seconds:.1f} s; output:\n{self.output}")


def job_fields(cluster: SlurmCluster, job_id: str) -> Optional[dict]:
    shown = cluster.command("scontrol", "show", "job", "-o", job_id)
    if shown.returncode != 0:  # e.g. "Invalid job id": already purged from slurmctld
        return None
    return dict(item.split("=", 1) for item in shown.stdout.split() if "=" in item)


@dataclass
class Submitted:
    job_id: str
    output: Path  # the job's output file
    started: float  # time.monotonic() at submission
    timeout: float


def submit(cluster: SlurmCluster, script: Path | str, args: Sequence[str] = (),
           ntasks: int = 2, timeout: float = 120, env: Optional[dict] = None,
           sbatch_options: Sequence[str] = ()) -> Submitted:
    """``sbatch --ntasks=NTASKS SCRIPT ARGS...`` (see :func:`submit_and_wait`)."""
    output = cluster.directory / f"job-{uuid.uuid4().hex[:8]}.out"
    minutes = max(1, int(timeout // 60) + 1)
    command = ["sbatch", "--parsable", f"--ntasks={ntasks}", f"--output={output}",
               f"--chdir={REPO}", f"--time={minutes}", *sbatch_options, str(script), *args]
    started = time.monotonic()
    submitted = subprocess.run(command, capture_output=True, text=True, timeout=60,
                               env=cluster.env({"DISTSNN_VENV": str(VENV), **(env or {})}))
    assert submitted.returncode == 0, f"sbatch failed: {submitted.stderr}"
    return Submitted(submitted.stdout.strip().split(";")[0], output, started, timeout)


def submit_and_wait(cluster: SlurmCluster, script: Path | str, args: Sequence[str] = (),
                    ntasks: int = 2, timeout: float = 120, env: Optional[dict] = None,
                    sbatch_options: Sequence[str] = ()) -> JobResult:
    """``sbatch --ntasks=NTASKS SCRIPT ARGS...``, then poll until the job ends (at most timeout s).

    The job runs in the repository root with this test's venv (``DISTSNN_VENV``) and the
    environment of the test plus ``env`` (e.g. ``{"DISTSNN_CMD": "python"}`` to run Python
    instead of the ``distsnn`` command). A job still running after ``timeout`` seconds is
    cancelled and reported with state ``TEST_TIMEOUT``; this function never hangs.
    """
    return wait(cluster, submit(cluster, script, args, ntasks, timeout, env, sbatch_options))


def wait(cluster: SlurmCluster, job: Submitted) -> JobResult:
    """Poll until ``job`` ends (through requeues), at most until its timeout."""
    job_id, output, started = job.job_id, job.output, job.started
    state, exit_code, restarts = "PENDING", None, 0
    while True:
        fields = job_fields(cluster, job_id)
        if fields is None:  # gone from slurmctld's memory: it ended
            state = "COMPLETED" if output.exists() else "UNKNOWN"
            break
        state = fields.get("JobState", "UNKNOWN")
        restarts = int(fields.get("Restarts", "0"))
        if state in TERMINAL_STATES:
            code = fields.get("ExitCode", "")
            exit_code = int(code.split(":")[0]) if code.split(":")[0].isdigit() else None
            break
        if time.monotonic() - started > job.timeout:
            cluster.command("scancel", job_id)
            state = "TEST_TIMEOUT"
            break
        time.sleep(0.25)
    seconds = time.monotonic() - started
    # The output file is written by slurmd; give it a moment to appear after the job ends.
    for _ in range(20):
        if output.exists():
            break
        time.sleep(0.1)
    text = output.read_text(errors="replace") if output.exists() else ""
    return JobResult(job_id=job_id, state=state, exit_code=exit_code, output=text,
                     seconds=seconds, restarts=restarts)


def release_requeued(cluster: SlurmCluster, job: Submitted) -> None:
    """Wait (bounded by the job's timeout) until a requeued ``job`` runs again, starting it
    early: Slurm holds a requeued job about two minutes (``Reason=BeginTime``). Not within
    the second of the requeue: slurmd refuses a job whose credential is no newer than its
    revocation ("Job credential revoked"), and credentials count whole seconds."""
    held_since = None
    while time.monotonic() - job.started < job.timeout:
        fields = job_fields(cluster, job.job_id) or {}
        state = fields.get("JobState")
        if fields.get("Restarts", "0") != "0" and state in ("RUNNING", "COMPLETED"):
            return
        if state == "PENDING" and fields.get("Reason") == "BeginTime":
            held_since = held_since or time.monotonic()
            if time.monotonic() - held_since > 2.0:
                cluster.command("scontrol", "update", f"JobId={job.job_id}", "StartTime=now")
        time.sleep(0.1)


def preempt_and_resume(cluster: SlurmCluster, job: Submitted, out: Path, signal: str
                       ) -> JobResult:
    """Once the journal of ``out`` holds two chunks, ``scancel --signal=SIGNAL`` the job's
    tasks (what Slurm sends before the time limit or on pre-emption); let the requeued job
    start again (:func:`release_requeued`) and wait for its end."""
    while journal_chunks(out) < 2:
        fields = job_fields(cluster, job.job_id)
        assert fields and fields["JobState"] in ("PENDING", "RUNNING"), \
            wait(cluster, job).describe()
        assert time.monotonic() - job.started < 120, "the job wrote no journal in 120 s"
        time.sleep(0.1)
    signalled = cluster.command("scancel", f"--signal={signal}", job.job_id)
    assert signalled.returncode == 0, signalled.stderr
    release_requeued(cluster, job)
    return wait(cluster, job)


def assert_refuses_without_root(script: Path, directory: Path) -> None:
    """``SCRIPT up`` run as ``nobody`` stops with exit 3 and says it needs root."""
    result = subprocess.run(["runuser", "-u", "nobody", "--", "bash", str(script), "up",
                             str(directory)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 3, result.stderr
    assert "must run as root" in result.stderr
