"""Data-parallel retraining and search on a local cluster (cluster.py, launch_local.py).

The cluster tests start real processes with launch_local.py: 1 parameter server + 2 workers on
127.0.0.1. A bound on every wait (subprocess timeouts) keeps a hanging cluster from hanging the suite.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest

import cluster as cluster_lib
import search_space
from test_cli import ARC16
from helpers import data_flags
from test_reliability import ROOT, ch_steps, latest_step
from errors import UserError
from stop_at.sitecustomize import is_stopped

LAUNCHER = os.path.join(ROOT, "launch_local.py")
TINY = ["--img_size", "8", "--child_num_layers", "0", "--child_num_cells", "2", "--child_out_filters", "4",
        "--batch_size", "16", "--log_every", "1", "--seed", "0", "--n_aug_img", "1", "--num_threads", "1",
        "--child_fixed_arc", ARC16]
SEARCH_TINY = TINY[:TINY.index("--child_fixed_arc")] + [
    "--controller_train_steps", "2", "--controller_num_aggregate", "3", "--controller_num_final_arcs", "2"]
TRAIN_PER_CLASS = 64  # 2 classes: 128 images = 4 global steps of 2 x 16 per epoch


@pytest.fixture(scope="module")
def cluster_data(tmp_path_factory):
    from helpers import make_png_dataset
    return make_png_dataset(tmp_path_factory.mktemp("cluster_data"), num_classes=2,
                            per_class=(TRAIN_PER_CLASS, 4, 4), size=8)


def _default_sigint():
    """SIGINT back to its default in a launched cluster: a suite started in the background of a
    non-interactive shell (`... &`) runs with SIGINT ignored, which its children inherit, and
    a chief that ignores SIGINT cannot show what Ctrl-C does."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def launch(args, log_dir, search=False, stop_at=None):
    """Starts launch_local.py with 2 workers; its stdout and stderr go to files in log_dir.
    read_logs() -> [stdout, stderr]; worker_log(1) -> worker 1's output so far. stop_at: a regex;
    the process that prints a line matching it stops there (tests/stop_at/sitecustomize.py).
    SIGINT has its default action in the cluster whatever the suite's (_default_sigint)."""
    paths = [os.path.join(str(log_dir), name) for name in ("launcher.out", "launcher.err")]
    env = dict(os.environ)
    if stop_at:
        env.update(PYTHONPATH=os.path.join(ROOT, "tests", "stop_at"), ENAS_TEST_STOP_AT=stop_at)
    with open(paths[0], "w") as out, open(paths[1], "w") as err:
        proc = subprocess.Popen([sys.executable, LAUNCHER, "--num_workers", "2"] + ["--search"] * search +
                                ["--"] + args, cwd=ROOT, stdout=out, stderr=err, text=True, env=env,
                                preexec_fn=_default_sigint)
    proc.read_logs = lambda: [open(p).read() for p in paths]
    proc.worker_log = lambda task: open(os.path.join(re.search(
        r"logs of the tasks other than the chief are in (\S+)", proc.read_logs()[1]).group(1),
        "worker{}.log".format(task))).read()
    return proc


def wait_for_line(run, pattern, timeout=600):
    """Waits until the chief's output has a line matching pattern (the run still going)."""
    deadline = time.time() + timeout
    while not re.search(pattern, run.read_logs()[0], re.M):
        assert time.time() < deadline and run.poll() is None, run.read_logs()[1][-3000:]
        time.sleep(0.5)


def wait_until(run, condition, timeout=600):
    """Polls condition() until it holds (the run still going); returns the chief's pid."""
    deadline = time.time() + timeout
    while True:
        try:
            if condition():
                return started_pids(run.read_logs()[1])["worker0"]
        except (KeyError, FileNotFoundError):  # the chief not started yet
            pass
        assert time.time() < deadline and run.poll() is None, run.read_logs()[1][-3000:]
        time.sleep(0.05)


def started_pids(stderr):
    """{"ps0": pid, "worker0": pid, ...} from the launcher's `started <task> (pid N)` lines."""
    return {name: int(pid) for name, pid in re.findall(r"started (\w+) \(pid (\d+)\)", stderr)}


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not open("/proc/{}/stat".format(pid)).read().split()[2] == "Z"


def test_two_workers_share_the_updates_and_learn(cluster_data, tmp_path):
    out = str(tmp_path / "out")
    epochs, steps_per_epoch = 6, 2 * TRAIN_PER_CLASS // (2 * 16)
    run = launch(data_flags(cluster_data) + TINY + ["--num_epochs", str(epochs), "--output_dir", out,
                                                    "--sync_timeout_secs", "120"], tmp_path,
                 stop_at=r"^epoch = \d+\s+ch_step = 1\s")
    # while it runs (its chief stopped after step 1), the cluster is off the network where
    # namespaces work
    chief = wait_until(run, lambda: is_stopped(started_pids(run.read_logs()[1])["worker0"]))
    if namespaces_work():
        assert "private network namespace: its ports are on loopback only" in run.read_logs()[1]
        assert_off_the_network(started_pids(run.read_logs()[1]))
    else:
        assert "cannot start the cluster in a private network namespace" in run.read_logs()[1]
    os.kill(chief, signal.SIGCONT)
    run.wait(timeout=900)
    stdout, stderr = run.read_logs()
    assert run.returncode == 0, stderr[-3000:]
    total = epochs * steps_per_epoch  # an epoch has half the steps of one process: 2 batches per update
    assert latest_step(out) == total
    # both workers pushed gradients into the shared variables, and one update took two of them
    own_steps = [int(n) for n in re.search(r"^Steps per worker: (\d+) (\d+)$", stdout, re.M).groups()]
    assert min(own_steps) > 0 and 2 * total <= sum(own_steps) <= 2 * total + 4, (own_steps, total)
    # the chief saw every global step at most once, and the loss fell on learnable data
    steps = ch_steps(stdout)
    assert steps == sorted(set(steps)) and steps[-1] == total, steps
    losses = [float(x) for x in re.findall(r"ch_step = \d+\s+loss = (\S+)", stdout)]
    assert sum(losses[-4:]) / 4 < 0.7 * sum(losses[:4]) / 4, losses
    assert "valid_accuracy" in stdout and os.path.isdir(os.path.join(out, "saved_model"))
    # only the chief wrote to output_dir; every process the launcher started has ended
    assert not [f for f in os.listdir(out) if "worker" in f or "ps" in f]
    assert not [name for name, pid in started_pids(stderr).items() if alive(pid)]


def listening_ports(net_dir):
    """{port: address hex} of the LISTEN TCP sockets in /proc/.../net/tcp and tcp6 of net_dir."""
    ports = {}
    for name in ("tcp", "tcp6"):
        with open(os.path.join(net_dir, name)) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A":  # TCP_LISTEN
                    address, port = local.split(":")
                    ports[int(port, 16)] = address
    return ports


def interfaces(net_dir):
    with open(os.path.join(net_dir, "dev")) as f:
        return sorted(line.split(":")[0].strip() for line in f.readlines()[2:])


def cluster_ports(pid):
    """The ports named by a task's --ps_hosts / --worker_hosts."""
    argv = open("/proc/{}/cmdline".format(pid)).read().split("\0")
    hosts = argv[argv.index("--ps_hosts") + 1] + "," + argv[argv.index("--worker_hosts") + 1]
    return [int(h.rsplit(":", 1)[1]) for h in hosts.split(",")]


def assert_off_the_network(pids):
    """Every task's servers listen, seen from this (the host's) network namespace, nowhere: they
    live in another namespace whose only interface is loopback."""
    ports = cluster_ports(pids["worker0"])
    host_ns = os.readlink("/proc/self/ns/net")
    host_listening = listening_ports("/proc/self/net")
    assert not [p for p in ports if p in host_listening], (ports, host_listening)
    for name, pid in pids.items():
        assert os.readlink("/proc/{}/ns/net".format(pid)) != host_ns, name
        net = "/proc/{}/net".format(pid)
        assert interfaces(net) == ["lo"], (name, interfaces(net))
        assert set(ports) <= set(listening_ports(net)), (name, ports, listening_ports(net))


def namespaces_work():
    return subprocess.run(["unshare", "--user", "--map-root-user", "--net", "true"],
                          capture_output=True).returncode == 0


def kill_worker_and_check_the_end(run, pids):
    """Kills worker 1: the run ends with one error line, exit 1, and every process gone."""
    os.kill(pids["worker1"], signal.SIGKILL)
    run.wait(timeout=300)  # sync_timeout_secs without an update, then shut-down: far below this bound
    stdout, stderr = run.read_logs()
    assert run.returncode == 1, (run.returncode, stderr[-3000:])
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and ("sync_timeout_secs" in errors[0] or "worker 1" in errors[0]
                                 or "waited" in errors[0]), stderr[-3000:]
    assert "Traceback" not in stderr
    assert "worker1 exited with status -9" in stderr
    assert not [name for name, pid in pids.items() if alive(pid)]


CELL_LINE = re.compile(r"^(?:worker \d+ )?cell of step (\d+): (.*)$", re.M)


def cells_by_step(*logs):
    """{global step: set of cells the processes' logs say they trained on the step they read}."""
    cells = {}
    for log in logs:
        for step, arc in CELL_LINE.findall(log):
            cells.setdefault(int(step), set()).add(arc)
    return cells


def test_search_on_two_workers_trains_one_cell_per_step_and_resumes(cluster_data, tmp_path):
    """A tiny search on 1 ps + 2 workers, stopped with Ctrl-C after its first epoch and rerun;
    its chief ends it with the default final stage (1 epoch here), trained in its own process."""
    out, epochs, steps_per_epoch = str(tmp_path / "out"), 3, 2 * TRAIN_PER_CLASS // (2 * 16)
    args = data_flags(cluster_data) + SEARCH_TINY + ["--num_epochs", str(epochs), "--output_dir", out,
                                                     "--sync_timeout_secs", "120", "--final_train_epochs", "1"]
    logs = []
    for attempt in ("stopped", "resumed"):
        os.makedirs(str(tmp_path / attempt))
        stopped = attempt == "stopped"
        run = launch(args, tmp_path / attempt, search=True, stop_at=stopped and r"^Progress: epoch 1/3")
        if stopped:  # the chief stops itself after that line; Ctrl-C reaches it there
            chief = wait_until(run, lambda: is_stopped(started_pids(run.read_logs()[1])["worker0"]))
            os.kill(chief, signal.SIGINT)
            os.kill(chief, signal.SIGCONT)
        run.wait(timeout=900)
        stdout, stderr = run.read_logs()
        assert run.returncode == (130 if attempt == "stopped" else 0), stderr[-3000:]
        assert not [name for name, pid in started_pids(stderr).items() if alive(pid)]
        logs += [stdout, run.worker_log(1)]
    assert re.search(r"^Resumed from .* at step [1-9]", stdout, re.M), stdout[:3000]
    # every process trained the same cell at each global step, and the cells change with the step
    cells = cells_by_step(*logs)
    total = epochs * steps_per_epoch
    assert sorted(cells) == list(range(total)), sorted(cells)
    assert all(len(arcs) == 1 for arcs in cells.values()), cells
    assert len({arc for arcs in cells.values() for arc in arcs}) >= total // 2
    assert {s for s, _ in CELL_LINE.findall(logs[1] + logs[3])} == {str(s) for s in range(total)}
    # the child's global step and the controller's update count end where they should
    import tensorflow.compat.v1 as tf
    assert latest_step(out) == total
    assert tf.train.load_variable(out, "controller/train_step") == epochs * 2
    assert len(re.findall(r"^Controller phase: \d+ updates", logs[0] + logs[2], re.M)) >= epochs
    search_logs = [log.split("\nScoring ")[0] for log in (logs[0], logs[2])]  # not the final stage's
    losses = [float(x) for x in re.findall(r"ch_step = \d+\s+loss = (\S+)", "".join(search_logs))]
    # medians: one step's new cell can spike the loss (0.26 -> 0.68 in one run)
    assert np.median(losses[-4:]) < 0.7 * np.median(losses[:4]), losses
    # only the chief wrote; best_arc.txt holds the arc it printed
    assert not [f for f in os.listdir(out) if "worker" in f or "ps" in f]
    assert "Best architecture: " in stdout
    normal, reduce = search_space.parse_arc(os.path.join(out, "best_arc.txt"), num_cells=2)
    assert "Chosen by short training: " + search_space.arc_to_string(normal, reduce) in stdout


def test_search_with_a_backup_worker_drops_stale_steps_and_stops_when_a_worker_dies(cluster_data,
                                                                                       tmp_path):
    """--child_num_aggregate 1 of 2 workers: each update takes the first gradient and drops the
    other worker's, computed for a step that has passed; no process ever trained two cells on
    one step. Then a killed worker stops the search with one line."""
    args = data_flags(cluster_data) + SEARCH_TINY + [
        "--num_epochs", "500", "--output_dir", str(tmp_path / "out"), "--sync_timeout_secs", "10",
        "--child_num_aggregate", "1"]
    run = launch(args, tmp_path, search=True)

    def logs_with_dropped_steps():
        """(chief's log, worker's log) once the chief is past step 12 (epoch 2 of 8 steps) and
        the two workers computed at least 3 gradients more than there were updates: dropped
        ones (a loaded machine's worker may start late, so this waits for it, not for luck)."""
        if "logs of the tasks other than the chief" not in run.read_logs()[1]:
            return None
        stdout, worker = run.read_logs()[0], run.worker_log(1)
        steps = ch_steps(stdout)
        computed = len(CELL_LINE.findall(stdout)) + len(CELL_LINE.findall(worker))
        return (stdout, worker) if steps and max(steps) >= 12 and computed > max(steps) + 2 else None
    wait_until(run, logs_with_dropped_steps)
    stdout, worker = logs_with_dropped_steps()
    cells = cells_by_step(stdout, worker)
    assert all(len(arcs) == 1 for arcs in cells.values()), cells
    kill_worker_and_check_the_end(run, started_pids(run.read_logs()[1]))


# ------------------------------------------------------------------------------------ unit tests
def flags(**values):
    base = dict(job_name=None, task_index=0, ps_hosts=None, worker_hosts=None, child_num_aggregate=None,
                sync_timeout_secs=600)
    base.update(values)
    return types.SimpleNamespace(**base)


def test_tf_config_chief_becomes_worker_zero(monkeypatch):
    config = {"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"], "ps": ["p:9"]},
              "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    c = cluster_lib.from_flags(flags())
    assert (c.job, c.task_index, c.num_workers, c.num_aggregate, c.is_chief) == ("worker", 2, 3, 3, False)
    assert c.spec.job_tasks("worker") == ["a:1", "b:2", "c:3"] and c.spec.job_tasks("ps") == ["p:9"]
    config["task"] = {"type": "chief", "index": 0}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert cluster_lib.from_flags(flags()).is_chief


def test_flags_win_over_tf_config_and_no_cluster_without_either(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cluster_lib.from_flags(flags()) is None
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(UserError, match="TF_CONFIG"):
        cluster_lib.from_flags(flags())
    c = cluster_lib.from_flags(flags(job_name="ps", ps_hosts="h:1", worker_hosts="h:2,h:3"))
    assert (c.job, c.num_workers, c.is_chief) == ("ps", 2, False)


def test_chief_notices_a_worker_whose_step_count_stops():
    sync = cluster_lib.SyncTraining(cluster_lib.from_flags(
        flags(job_name="worker", ps_hosts="h:1", worker_hosts="h:2,h:3", sync_timeout_secs=10)))
    sync.check_workers([1, 1], now=0.0)
    sync.check_workers([2, 2], now=5.0)
    sync.check_workers([9, 2], now=14.0)  # worker 1 still within 10 s of its last step
    with pytest.raises(cluster_lib.ClusterError, match="worker 1 made no training step for 11 s"):
        sync.check_workers([12, 2], now=16.0)


def test_epoch_ends_are_off_the_clock_of_a_workers_step_count(monkeypatch):
    """The chief's epoch ends (eval; a search's controller phase) stop every worker for a while:
    that time is not counted, the child steps' time is, however many epoch ends come between."""
    sync = cluster_lib.SyncTraining(cluster_lib.from_flags(
        flags(job_name="worker", ps_hosts="h:1", worker_hosts="h:2,h:3", sync_timeout_secs=10)))
    clock = [0.0]
    monkeypatch.setattr(cluster_lib.time, "time", lambda: clock[0])
    sync.check_workers([1, 1])
    for epoch_end in (4.0, 98.0):  # 4 s of child steps, then a 90 s epoch end, twice
        clock[0] = epoch_end
        sync.check_workers([epoch_end, 1])  # worker 1 stands still throughout
        sync.pause_watch()
        clock[0] = epoch_end + 90.0
        sync.resume_watch()
    sync.check_workers([200, 1])  # 8 s of child steps since worker 1's last step: within 10 s
    clock[0] = 192.0  # 12 s
    with pytest.raises(cluster_lib.ClusterError, match="worker 1 made no training step for 12 s"):
        sync.check_workers([300, 1])
