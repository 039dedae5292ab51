"""Multi-worker training and kill-and-resume, in real processes.

Each test starts `worker.py` processes (two `MultiWorkerMirroredStrategy`
workers on 127.0.0.1, or one process), with a timeout on every process and a
collective timeout in the workers, so a dead peer fails the test instead of
hanging it. Processes are killed on any failure; the failure shows their
stderr.
"""

import importlib.util
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.integration

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORKER = HERE / "worker.py"
TIMEOUT = 300  # seconds for one process (a run takes ~15-30 s on an idle 2-core machine)
PAUSE_AT = 14  # killed before step 14: the last backup (every 3 steps) is step 12

_spec = importlib.util.spec_from_file_location("distributed_worker", WORKER)
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)


def _free_ports(count):
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Job:
    """Worker processes started together; killed when the `with` block ends."""

    def __init__(self, directory, name, args, workers=0):
        self.directory = pathlib.Path(directory)
        self.name = name
        self.procs, self.logs, self.outs = [], [], []
        ports = _free_ports(workers) if workers else []
        for index in range(max(workers, 1)):
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
            env["CUDA_VISIBLE_DEVICES"] = ""
            env["TF_CPP_MIN_LOG_LEVEL"] = "3"
            env.pop("TF_CONFIG", None)
            command = [sys.executable, str(WORKER), *args]
            if workers:
                env["TF_CONFIG"] = json.dumps(
                    {
                        "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                        "task": {"type": "worker", "index": index},
                    }
                )
                command += ["--strategy", "multi_worker"]
            out = self.directory / f"{name}_{index}.npz"
            log = self.directory / f"{name}_{index}.log"
            self.outs.append(out)
            self.logs.append(log)
            with open(log, "w") as stream:
                self.procs.append(
                    subprocess.Popen(
                        command + ["--out", str(out)],
                        env=env,
                        stdout=stream,
                        stderr=subprocess.STDOUT,
                        cwd=self.directory,
                    )
                )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()

    def kill(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    def report(self, message):
        tails = []
        for proc, log in zip(self.procs, self.logs):
            text = log.read_text(errors="replace")[-4000:]
            tails.append(f"--- {self.name} process {proc.pid} (exit {proc.poll()}):\n{text}")
        return message + "\n" + "\n".join(tails)

    def wait(self, timeout=TIMEOUT):
        """Waits for every process to exit 0; returns their results and RESULT lines."""
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in self.procs):
            if any(p.poll() not in (None, 0) for p in self.procs):
                self.kill()
                pytest.fail(self.report(f"{self.name}: a process failed"))
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(self.report(f"{self.name}: no exit within {timeout} s"))
            time.sleep(0.2)
        if any(p.returncode != 0 for p in self.procs):
            pytest.fail(self.report(f"{self.name}: a process failed"))
        lines = [
            line
            for log in self.logs
            for line in log.read_text(errors="replace").splitlines()
            if line.startswith("RESULT ")
        ]
        return [dict(np.load(out)) for out in self.outs], lines

    def kill_when_paused(self, pause_files, timeout=TIMEOUT):
        """`kill -9` every process once each has written its pause file."""
        deadline = time.monotonic() + timeout
        while not all(pathlib.Path(f).exists() for f in pause_files):
            if any(p.poll() is not None for p in self.procs):
                self.kill()
                pytest.fail(self.report(f"{self.name}: a process exited before pausing"))
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(self.report(f"{self.name}: did not reach step {PAUSE_AT}"))
            time.sleep(0.2)
        for proc in self.procs:
            os.kill(proc.pid, signal.SIGKILL)
        codes = [proc.wait(timeout=30) for proc in self.procs]
        assert codes == [-signal.SIGKILL] * len(self.procs), codes


STATE_PREFIXES = ("weight_", "phi_", "optimizer_", "meta_optimizer_")


def _state(result):
    return {k: v for k, v in result.items() if k.startswith(STATE_PREFIXES)}


def _assert_identical(a, b, keys=None, what=""):
    keys = sorted(a) if keys is None else keys
    assert sorted(a) == sorted(b), what
    for key in keys:
        np.testing.assert_array_equal(a[key], b[key], err_msg=f"{what}: {key}")


def _assert_close(a, b, what="", rtol=1e-5, atol=1e-6):
    assert sorted(a) == sorted(b), what
    for key in sorted(a):
        np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=atol, err_msg=f"{what}: {key}")


def _meta_updates(path):
    """The audit log's meta-update records, without their wall-clock times."""
    records = [json.loads(line) for line in pathlib.Path(path).read_text().splitlines()]
    return [
        {k: v for k, v in r.items() if k != "time"} for r in records if r["event"] == "meta_update"
    ]


def _outputs(directory):
    return sorted(p.name for p in pathlib.Path(directory).iterdir())


@pytest.fixture(scope="module")
def multi_worker_run(tmp_path_factory):
    """An uninterrupted 2-worker run (shared by the tests below)."""
    directory = tmp_path_factory.mktemp("multi_worker")
    with Job(
        directory, "uninterrupted", ["--audit", "audit.jsonl", "--tensorboard", "tb"], workers=2
    ) as job:
        results, lines = job.wait()
    for line in lines:
        print(line)
    return directory, results


def test_two_workers_end_identical_and_match_mirrored_strategy(multi_worker_run, mirrored_strategy):
    directory, (chief, other) = multi_worker_run
    assert int(chief["step"]) == worker.EPOCHS * worker.STEPS_PER_EPOCH
    assert int(chief["meta_position"]) == int(chief["step"]) // 2
    # Every value the workers computed, bit for bit: weights, phi, optimizer
    # states, history, evaluation and predictions.
    _assert_identical(chief, other, what="worker 0 vs worker 1")

    args = worker.parse_args(["--out", "unused"])
    mirrored = worker.train(mirrored_strategy(), args)
    state = _state(chief)
    difference = max(np.abs(state[k] - mirrored[k]).max() for k in state)
    print(f"largest |2 workers - MirroredStrategy| over the training state: {difference:.1e}")
    assert np.abs(chief["phi_0"] - mirrored["phi_0"]).max() < 1e-5
    _assert_close(chief, mirrored, what="2 workers vs MirroredStrategy with 2 replicas")

    # Only the chief wrote the audit log and the summaries.
    assert _outputs(directory / "tb") == ["metaloss"]
    assert len(os.listdir(directory / "tb" / "metaloss")) == 1
    updates = _meta_updates(directory / "audit.jsonl")
    assert [u["step"] for u in updates] == list(range(0, int(chief["step"]), 2))


@pytest.mark.parametrize("meta_method", ["neumann", "finite_difference"])
def test_two_workers_with_another_estimator_match_mirrored_strategy(
    tmp_path, mirrored_strategy, meta_method
):
    """The estimators' all-reduces (the implicit solver's products, the finite
    difference's direction) across processes."""
    with Job(tmp_path, meta_method, ["--meta-method", meta_method], workers=2) as job:
        (chief, other), lines = job.wait()
    print(*lines, sep="\n")
    _assert_identical(chief, other, what="worker 0 vs worker 1")
    args = worker.parse_args(["--out", "unused", "--meta-method", meta_method])
    mirrored = worker.train(mirrored_strategy(), args)
    assert np.abs(chief["phi_0"] - chief["phi_1"]).max() > 1e-3  # phi moved from its start
    _assert_close(chief, mirrored, what=f"{meta_method}: 2 workers vs MirroredStrategy")


def test_kill_9_and_resume_is_exact(tmp_path):
    with Job(tmp_path, "reference", ["--audit", "reference.jsonl"]) as job:
        (reference,), _ = job.wait()

    resumable = ["--audit", "audit.jsonl", "--backup", "backup", "--save-freq", "3"]
    pause = ["--pause-at-step", str(PAUSE_AT), "--pause-file", "paused"]
    with Job(tmp_path, "killed", resumable + pause) as job:
        job.kill_when_paused([tmp_path / "paused"])
    assert json.loads((tmp_path / "backup" / "latest.json").read_text()) == {
        "backup": "step-000000012"
    }
    written = _meta_updates(tmp_path / "audit.jsonl")
    assert [u["step"] for u in written] == list(range(0, PAUSE_AT, 2))

    with Job(tmp_path, "resumed", resumable) as job:
        (resumed,), lines = job.wait()
    print(*lines, sep="\n")
    # Weights, phi (and its start), both optimizers' variables, the meta-batch
    # position, evaluation and predictions: bit for bit.
    keys = [k for k in reference if not k.startswith("history/")]
    _assert_identical(reference, resumed, keys=keys, what="resumed vs uninterrupted")
    # The resumed `fit` ran the last 2 of 3 epochs (as Keras's BackupAndRestore).
    assert len(resumed["history/loss"]) == 2
    np.testing.assert_array_equal(resumed["history/val_loss"], reference["history/val_loss"][1:])
    # The audit log holds each meta-update once, as in the uninterrupted run.
    assert _meta_updates(tmp_path / "audit.jsonl") == _meta_updates(tmp_path / "reference.jsonl")
    assert not (tmp_path / "backup").exists()  # deleted when fit ended


def test_two_workers_kill_9_and_resume_is_exact_with_only_the_chief_writing(
    tmp_path, multi_worker_run
):
    reference_dir, (reference, _) = multi_worker_run
    resumable = ["--audit", "audit.jsonl", "--backup", "backup", "--save-freq", "3"]
    resumable += ["--tensorboard", "tb"]
    # Both workers pause before the same step (each writes its own file).
    files = [tmp_path / f"paused{i}" for i in range(2)]
    with Job(
        tmp_path,
        "killed",
        resumable + ["--pause-at-step", str(PAUSE_AT), "--pause-file", "paused{}"],
        workers=2,
    ) as job:
        job.kill_when_paused(files)
    assert _outputs(tmp_path / "backup") == ["latest.json", "step-000000012"]

    with Job(tmp_path, "resumed", resumable, workers=2) as job:
        (chief, other), lines = job.wait()
    print(*lines, sep="\n")
    keys = [k for k in reference if not k.startswith("history/")]
    _assert_identical(chief, other, keys=keys, what="worker 0 vs worker 1")
    _assert_identical(reference, chief, keys=keys, what="resumed vs uninterrupted")
    assert _meta_updates(tmp_path / "audit.jsonl") == _meta_updates(reference_dir / "audit.jsonl")
    # One writer: one event file per run of the job, in the chief's directory.
    assert len(os.listdir(tmp_path / "tb" / "metaloss")) == 2


def test_a_dead_worker_makes_its_peer_fail_instead_of_hang(tmp_path):
    pause = ["--pause-at-step", "5", "--pause-file", "paused{}", "--pause-worker", "1"]
    with Job(tmp_path, "dead_peer", pause, workers=2) as job:
        survivor, victim = job.procs
        deadline = time.monotonic() + TIMEOUT
        while not (tmp_path / "paused1").exists():
            assert victim.poll() is None and survivor.poll() is None, job.report("exited early")
            assert time.monotonic() < deadline, job.report("worker 1 did not reach step 5")
            time.sleep(0.2)
        os.kill(victim.pid, signal.SIGKILL)
        killed = time.monotonic()
        # Worker 0 waits in the next step's all-reduce; it must fail, not hang
        # (the connection drops; a peer that hangs hits the 60 s collective timeout).
        try:
            code = survivor.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(job.report("worker 0 hung after its peer died"))
        waited = time.monotonic() - killed
    print(f"worker 0 exited with {code} {waited:.1f} s after worker 1 was killed")
    assert code != 0
    log = job.logs[0].read_text(errors="replace")
    assert "Collective ops is aborted" in log or "DeadlineExceeded" in log, log[-3000:]
