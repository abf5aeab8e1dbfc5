"""Reliability of both entry scripts: kill / Ctrl-C and resume, no data loss, NaN stop, seeds.

Every run is a real process running trainer.main(mode) exactly like the entry scripts do, but
forked from a small server process that imported TensorFlow once (`ForkRunner`): on the shared
2-core CI machine a fresh `python main_*.py` spends ~10 s importing TensorFlow before it reads
a single flag, which would put these tests far over their time budget. A forked run is its own
process (own pid, exit status, stdout/stderr files), so SIGKILL / SIGINT reach it as they would
reach the script; test_cli.py covers the real `python main_*.py` start-up.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import records
from test_cli import ARC16
from helpers import assert_one_line_error, data_flags, user_stderr
from stop_at.sitecustomize import is_stopped

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {"final": "main_child_trainer.py", "search": "main_controller_child_trainer.py"}

# --------------------------------------------------------------------------- the fork server
SERVER_SOURCE = r'''
import importlib.util, json, os, signal, sys, traceback
sys.path.insert(0, os.getcwd())
import trainer  # TensorFlow is imported once here, before any fork

spec = importlib.util.spec_from_file_location("stop_at", os.path.join("tests", "stop_at", "sitecustomize.py"))
stop_at = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stop_at)

finished = {}


def child(req):
    code = 1
    try:
        os.setpgid(0, 0)  # its own process group, like a command started from a shell
        fd_in = os.open(os.devnull, os.O_RDONLY)
        fd_out = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        fd_err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd_in, 0)
        os.dup2(fd_out, 1)
        os.dup2(fd_err, 2)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        if req.get("stop_at"):
            stop_at.install(req["stop_at"])
        sys.stderr = open(2, "w", closefd=False)
        sys.argv = [req["script"]] + req["args"]
        signal.signal(signal.SIGINT, signal.default_int_handler)
        trainer.main(req["mode"])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:  # what the interpreter does with an uncaught Ctrl-C
        code = -signal.SIGINT
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        if code < 0:
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        os._exit(code)


def reap(pid, block):
    if pid not in finished:
        done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        if done:
            finished[pid] = os.waitstatus_to_exitcode(status)
    return finished.get(pid)


for line in sys.stdin:
    req = json.loads(line)
    if req["cmd"] == "start":
        pid = os.fork()
        if pid == 0:
            child(req)
        reply = {"pid": pid}
    else:
        reply = {"rc": reap(req["pid"], req["cmd"] == "wait")}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
'''


class Run(object):
    """One started run: pid, its stdout/stderr file paths; `result()` waits and reads them."""

    def __init__(self, server, pid, stdout_path, stderr_path):
        self.server, self.pid = server, pid
        self.stdout_path, self.stderr_path = stdout_path, stderr_path
        self.returncode = None

    def poll(self):
        if self.returncode is None:
            self.returncode = self.server.call(cmd="poll", pid=self.pid)["rc"]
        return self.returncode

    def wait(self):
        if self.returncode is None:
            self.returncode = self.server.call(cmd="wait", pid=self.pid)["rc"]
        return self.returncode

    @property
    def stdout(self):
        return _read(self.stdout_path)

    @property
    def stderr(self):
        return _read(self.stderr_path)

    def wait_stopped(self, timeout=240):
        """Waits until the run has stopped itself at its stop_at line (ForkRunner.start)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if is_stopped(self.pid):
                return
            if self.poll() is not None:
                pytest.fail("run ended (status {}) before its stop line:\n{}\n{}".format(
                    self.returncode, self.stdout[-3000:], self.stderr[-3000:]))
            time.sleep(0.01)
        os.kill(self.pid, signal.SIGKILL)
        self.wait()
        pytest.fail("not stopped within {} s".format(timeout))

    def interrupt(self, sig):
        """Sends sig to a run stopped by wait_stopped, then lets it go on (to handle it)."""
        os.kill(self.pid, sig)
        os.kill(self.pid, signal.SIGCONT)

    def wait_for(self, pattern, timeout=240):
        """Waits until stdout has a line matching `pattern`; fails if the run ends first."""
        regex = re.compile(pattern, re.M)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if regex.search(self.stdout):
                return
            if self.poll() is not None:
                pytest.fail("run ended (status {}) before printing {!r}:\n{}\n{}".format(
                    self.returncode, pattern, self.stdout[-3000:], self.stderr[-3000:]))
            time.sleep(0.01)
        os.kill(self.pid, signal.SIGKILL)
        self.wait()
        pytest.fail("no {!r} within {} s".format(pattern, timeout))


class ForkRunner(object):
    """Starts trainer.main(mode) runs as processes forked from a TensorFlow-imported server."""

    def __init__(self, log_dir):
        self.log_dir, self.count, self.runs = str(log_dir), 0, []
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        self.server_err = open(os.path.join(self.log_dir, "server.err"), "w")
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER_SOURCE], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.server_err, text=True)

    def call(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "fork server died: " + _read(self.server_err.name)[-3000:]
        return json.loads(line)

    def start(self, mode, args, stop_at=None):
        """Starts a run; with stop_at (a regex), the run stops itself (SIGSTOP) right after
        printing the first line that matches it (Run.wait_stopped, Run.interrupt)."""
        self.count += 1
        base = os.path.join(self.log_dir, "run%03d" % self.count)
        pid = self.call(cmd="start", mode=mode, script=SCRIPTS[mode], args=[str(a) for a in args],
                        stdout=base + ".out", stderr=base + ".err", stop_at=stop_at)["pid"]
        run = Run(self, pid, base + ".out", base + ".err")
        self.runs.append(run)
        return run

    def run(self, mode, args):
        run = self.start(mode, args)
        run.wait()
        return run

    def close(self):
        for run in self.runs:  # only runs this runner started, by pid
            if run.poll() is None:
                os.kill(run.pid, signal.SIGKILL)
                run.wait()
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.server_err.close()


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    r = ForkRunner(tmp_path_factory.mktemp("runs"))
    yield r
    r.close()


# ------------------------------------------------------------------------------- helpers
def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def snapshot(folder, only=None):
    """{name: (size, mtime_ns, sha of contents)} of every file under folder (names relative), but
    the lock file, which holds the process id of whichever run last took the folder."""
    import hashlib
    result = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, folder)
            if rel == records.LOCK_FILE or (only is not None and not only(rel)):
                continue
            st = os.stat(path)
            with open(path, "rb") as f:
                digest = hashlib.sha1(f.read()).hexdigest()
            result[rel] = (st.st_size, st.st_mtime_ns, digest)
    return result


def ckpt_files(name):
    return name == "checkpoint" or name.startswith("model.ckpt-")


def latest_step(out):
    import tensorflow.compat.v1 as tf
    latest = tf.train.latest_checkpoint(out)
    assert latest, os.listdir(out)
    return int(latest.rsplit("-", 1)[1])


def resume_to_the_end(runner, mode, args, out, step, total_steps):
    """Reruns the same command; asserts it resumed at `step` and trained on to `total_steps`."""
    second = runner.run(mode, args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert re.search(r"^Resumed from \S*model\.ckpt-{0} at step {0}$".format(step),
                     second.stdout, re.M), second.stdout[:3000]
    assert ch_steps(second.stdout) == list(range(step + 1, total_steps + 1))
    assert latest_step(out) == total_steps
    return second


def ckpt_value(out, name):
    import tensorflow.compat.v1 as tf
    return tf.train.load_checkpoint(tf.train.latest_checkpoint(out)).get_tensor(name)


def ch_steps(stdout):
    return [int(s) for s in re.findall(r"^epoch = \d+\s+ch_step = (\d+)\s", stdout, re.M)]


def read_arcs(path):
    with open(path) as f:
        text = f.read()
    assert text.endswith("\n"), "torn last line: " + repr(text[-80:])
    lines = text.splitlines()
    assert lines[0] == records.ARCS_HEADER.rstrip("\n")
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(row) == 5 for row in rows), [r for r in rows if len(r) != 5]
    return rows


# Tiny configurations (img 8, no extra layers, 4 filters, batch 16): the costs are graph building
# and the first session runs, so the number of steps hardly matters.
FINAL_TINY = ["--img_size", "8", "--child_num_layers", "0", "--child_num_cells", "2",
              "--child_out_filters", "4", "--batch_size", "16", "--log_every", "1", "--seed", "0",
              "--n_aug_img", "2", "--child_cutout_size", "4", "--child_fixed_arc", ARC16]
# Search: B = 1 node per cell halves the (slow) search graph build against B = 2; the final stage
# off (test_final_stage.py tests it; test_cli.py's end-to-end search runs it).
SEARCH_TINY = ["--img_size", "8", "--child_num_layers", "0", "--child_num_cells", "1",
               "--child_out_filters", "4", "--batch_size", "16", "--log_every", "1",
               "--controller_train_steps", "2", "--controller_num_aggregate", "1",
               "--controller_num_final_arcs", "2", "--controller_bl_dec", "0.5", "--final_train_top_k", "0"]
FINAL_BATCHES = 16   # 2 classes x 64 train images x n_aug_img 2 / batch 16
SEARCH_BATCHES = 10  # 2 classes x 80 train images / batch 16


@pytest.fixture(scope="module")
def final_data(tmp_path_factory):
    from helpers import make_png_dataset
    return make_png_dataset(tmp_path_factory.mktemp("final_data"), num_classes=2,
                            per_class=(64, 4, 4), size=8)


@pytest.fixture(scope="module")
def search_data(tmp_path_factory):
    from helpers import make_png_dataset
    return make_png_dataset(tmp_path_factory.mktemp("search_data"), num_classes=2,
                            per_class=(80, 4, 4), size=8)


@pytest.fixture(scope="module")
def final_run(runner, final_data, tmp_path_factory):
    """A finished 2-epoch retraining (checkpoints at steps 8 and 16); tests work on copies."""
    out = str(tmp_path_factory.mktemp("final_run") / "out")
    run = runner.run("final", data_flags(final_data) + FINAL_TINY + ["--num_epochs", "2",
                                                                     "--output_dir", out])
    assert run.returncode == 0, run.stderr[-3000:]
    assert latest_step(out) == 2 * FINAL_BATCHES
    return out


@pytest.fixture(scope="module")
def seeded_searches(runner, search_data, tmp_path_factory):
    """Two fresh 2-epoch searches with --seed 3, run side by side: (runs, output dirs, args)."""
    root = tmp_path_factory.mktemp("seeded")
    outs = [str(root / "a"), str(root / "b")]
    args = [data_flags(search_data) + SEARCH_TINY + ["--seed", "3", "--num_epochs", "2",
                                                     "--output_dir", out] for out in outs]
    runs = [runner.start("search", a) for a in args]
    for run in runs:
        assert run.wait() == 0, run.stderr[-3000:]
    return runs, outs, args


def _copy(src, tmp_path):
    dst = str(tmp_path / "copy")
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------- kill and resume
RECORD_LINE = re.compile(r"^(epoch = \d+\s+ch_step = |ctrl_step = |\w+_accuracy: |val_acc = |"
                         r"(final|uniform) candidate: |Best architecture: |final candidates: |uniform cells: |The chosen)")


def record(stdout):
    """The lines of a log that a seeded run must repeat exactly: training and controller steps
    (without their clock), accuracies, sampled and final cells."""
    return [re.sub(r"\s*mins = \S+", "", line) for line in stdout.splitlines()
            if RECORD_LINE.match(line)]


def interrupted_then_resumed(first, second, step):
    """What an interrupted run printed up to its checkpoint at `step`, then what its resumed run
    printed: the record of the run that was never interrupted, if resuming is exact."""
    lines = record(first.stdout)
    later = [i for i, line in enumerate(lines) if ch_steps(line) and ch_steps(line)[0] > step]
    return lines[:later[0] if later else len(lines)] + record(second.stdout)


def test_search_sigkill_mid_epoch_then_resume_is_the_uninterrupted_run(runner, seeded_searches,
                                                                       tmp_path):
    reference, ref_outs, ref_args = seeded_searches
    out = str(tmp_path / "search")
    args = ref_args[0][:-1] + [out]
    first = runner.start("search", args, stop_at=r"^epoch = \d+\s+ch_step = {}\s".format(SEARCH_BATCHES + 1))
    first.wait_stopped()
    first.interrupt(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL

    step = latest_step(out)
    assert step == SEARCH_BATCHES, "the checkpoint at the end of epoch 1"
    assert ckpt_value(out, "epochs_done") == 1
    baseline = float(ckpt_value(out, "controller/baseline"))
    ctrl_steps = int(ckpt_value(out, "controller/train_step"))
    assert ctrl_steps == 2 and baseline > 0.03, (ctrl_steps, baseline)

    # what a kill in epoch 2's end-of-epoch work could have left: rows of the unfinished epoch 2
    # and a torn last line; the resumed run must drop both
    with open(os.path.join(out, "arcs.tsv"), "a") as f:
        f.write("2\tsample\t0 4 0 4 0 4 0 4\t0.1234\t8\n" * 3 + "2\tsample\t0 1 0")

    second = resume_to_the_end(runner, "search", args, out, step, 2 * SEARCH_BATCHES)

    # the controller continued: its step count and its baseline came from the checkpoint
    m = re.search(r"^ctrl_step = (\d+)\s+loss = \S+\s+ent = (\S+)\s+lr = \S+\s+\|g\| = \S+\s+"
                  r"acc = (\S+)\s+bl = (\S+)", second.stdout, re.M)
    assert m, second.stdout[:3000]
    assert int(m.group(1)) == ctrl_steps + 1
    reward = float(m.group(3)) + 1e-4 * float(m.group(2))  # default entropy weight 1e-4
    restored = 0.5 * baseline + 0.5 * reward               # --controller_bl_dec 0.5
    assert abs(float(m.group(4)) - restored) <= 0.006, (m.group(0), baseline)

    # and everything is what the run that was never killed printed and wrote
    assert interrupted_then_resumed(first, second, step) == record(reference[0].stdout)
    for name in ("arcs.tsv", "best_arc.txt"):
        with open(os.path.join(out, name)) as f, open(os.path.join(ref_outs[0], name)) as g:
            assert f.read() == g.read(), name


def test_retrain_sigkill_mid_epoch_then_resume_is_the_uninterrupted_run(runner, final_run,
                                                                        final_data, tmp_path):
    out = str(tmp_path / "final")
    args = data_flags(final_data) + FINAL_TINY + ["--num_epochs", "2", "--output_dir", out]
    first = runner.start("final", args, stop_at=r"^epoch = \d+\s+ch_step = {}\s".format(FINAL_BATCHES + 1))
    first.wait_stopped()
    first.interrupt(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    step = latest_step(out)
    assert step == FINAL_BATCHES and ckpt_value(out, "epochs_done") == 1

    second = resume_to_the_end(runner, "final", args, out, step, 2 * FINAL_BATCHES)
    assert len(re.findall(r"^Epoch \d+: Eval$", second.stdout, re.M)) == 1  # only epoch 2's
    assert ckpt_value(out, "epochs_done") == 2
    assert not os.path.exists(os.path.join(out, "arcs.tsv"))
    assert interrupted_then_resumed(first, second, step) == record(_read(os.path.join(final_run, "stdout")))


def test_ctrl_c_saves_checkpoint_and_resumes_the_uninterrupted_run(runner, final_run, final_data,
                                                                   tmp_path):
    out = str(tmp_path / "final")
    args = data_flags(final_data) + FINAL_TINY + ["--num_epochs", "2", "--output_dir", out]
    first = runner.start("final", args, stop_at=r"^epoch = \d+\s+ch_step = {}\s".format(FINAL_BATCHES + 3))
    first.wait_stopped()
    first.interrupt(signal.SIGINT)
    assert first.wait() == 130, (first.returncode, first.stderr[-3000:])
    assert "Traceback" not in first.stderr, first.stderr[-3000:]
    assert user_stderr(first.stderr) == []
    last = first.stdout.rstrip("\n").splitlines()[-1]
    m = re.match(r"^Interrupted at step (\d+): checkpoint saved in (\S+); rerun the same "
                 r"command to resume\.$", last)
    assert m and m.group(2) == out, last
    step = int(m.group(1))
    assert FINAL_BATCHES + 3 <= step < 2 * FINAL_BATCHES, step  # mid epoch 2
    assert os.path.exists(os.path.join(out, "model.ckpt-%d.index" % step)), os.listdir(out)
    assert latest_step(out) == step

    second = resume_to_the_end(runner, "final", args, out, step, 2 * FINAL_BATCHES)
    assert interrupted_then_resumed(first, second, step) == record(_read(os.path.join(final_run, "stdout")))


# ------------------------------------------------------------------------- schedule flags
def _seed1_search(runner, search_data, tmp_path, flags):
    """A tiny seeded search with flags that ran to its end: (run, output_dir)."""
    out = str(tmp_path / "search")
    run = runner.run("search", data_flags(search_data) + SEARCH_TINY + ["--seed", "1"] + flags +
                     ["--output_dir", out])
    assert run.returncode == 0, run.stderr[-3000:]
    return run, out


def test_controller_train_every_and_eval_every_epochs(runner, search_data, tmp_path):
    """--controller_train_every 2 and --eval_every_epochs 2 over 3 epochs: one controller phase
    (epoch 2, with its sampled cells), evaluations at epoch 2 and at the last epoch."""
    run, out = _seed1_search(runner, search_data, tmp_path, [
        "--num_epochs", "3", "--controller_train_every", "2", "--eval_every_epochs", "2"])
    assert re.findall(r"^Epoch (\d+): Training controller", run.stdout, re.M) == ["2"]
    assert re.findall(r"^Epoch (\d+): Eval$", run.stdout, re.M) == ["2", "3"]
    assert len(re.findall(r"^ctrl_step = ", run.stdout, re.M)) == 2
    assert int(ckpt_value(out, "controller/train_step")) == 2
    rows = read_arcs(os.path.join(out, "arcs.tsv"))
    assert {r[0] for r in rows if r[1] == "sample"} == {"2"}


def test_uniform_warmup_and_reward_batch_size(runner, search_data, tmp_path):
    """--uniform_warmup_epochs 1 of 2: the controller's one phase is at the end of epoch 2 (the
    warm-up never trains it). --controller_reward_batch_size 4 of the 8 valid images from epoch 2
    on (--controller_reward_batch_from_epoch 2): the cells sampled at epoch 1's end are scored
    on --batch_size images (all 8), epoch 2's on 4 (arcs.tsv's n_images, accuracies in
    quarters). The reward options run too: --controller_baseline loo with
    --controller_common_reward_batch, 2 samples per update, whose sums the checkpoint holds,
    emptied by the last update."""
    run, out = _seed1_search(runner, search_data, tmp_path, [
        "--num_epochs", "2", "--uniform_warmup_epochs", "1", "--controller_reward_batch_size", "4",
        "--controller_reward_batch_from_epoch", "2",
        "--controller_baseline", "loo", "--controller_common_reward_batch", "--controller_num_aggregate", "2"])
    assert re.findall(r"^Epoch (\d+): Training controller", run.stdout, re.M) == ["2"]
    assert int(ckpt_value(out, "controller/train_step")) == int(
        SEARCH_TINY[SEARCH_TINY.index("--controller_train_steps") + 1])
    assert len(re.findall(r"^ctrl_step = ", run.stdout, re.M)) == 2 * 2
    assert float(ckpt_value(out, "controller/loo/reward_sum")) == 0.0
    samples = [r for r in read_arcs(os.path.join(out, "arcs.tsv")) if r[1] == "sample"]
    assert {(r[0], r[4]) for r in samples} == {("1", "8"), ("2", "4")}
    assert all(float(r[3]) * 4 == round(float(r[3]) * 4) for r in samples if r[0] == "2")


def test_end_of_search_scores_uniform_cells_beside_the_controllers(runner, search_data, tmp_path):
    """The end-of-search report's `uniform` cells come from the uniform sampler: their ops are
    spread evenly, while the untrained controller's `final` candidates lean to the two sep convs
    (its start bias); both sets are scored on the whole valid set."""
    out = str(tmp_path / "search")
    run = runner.run("search", data_flags(search_data) + SEARCH_TINY + [
        "--seed", "2", "--num_epochs", "1", "--controller_train_steps", "1",
        "--controller_num_final_arcs", "60", "--output_dir", out])
    assert run.returncode == 0, run.stderr[-3000:]
    rows = read_arcs(os.path.join(out, "arcs.tsv"))
    sep_share = {}
    for source in ("final", "uniform"):
        group = [r for r in rows if r[1] == source]
        assert len(group) == 60 and all(r[4] == "8" for r in group)  # the whole valid split
        ops = [int(op) for r in group for op in r[2].split()[1::2]]
        sep_share[source] = np.mean([op in (0, 1) for op in ops])
    # uniform: 2 of 5 ops; the controller's start: about 0.63 (normal cell), 0.51 (reduce cell)
    assert abs(sep_share["uniform"] - 0.4) < 0.08 and sep_share["final"] > sep_share["uniform"] + 0.1, sep_share
    assert re.search(r"^The chosen cell \(best of 60 final candidates, [01]\.\d{4}\) is (better than|tied "
                     r"with|worse than) the best of 60 uniform cells", run.stdout, re.M), run.stdout[-2000:]


def test_random_search_never_trains_the_controller(runner, search_data, tmp_path):
    """--random_search: the same loop, its cells drawn uniformly; the controller's variables
    (b_soft starts at exactly [10, 10, 0, 0, 0]) and its step counter stay as initialised, and
    the recorded entropy is the uniform maximum."""
    import tensorflow.compat.v1 as tf
    from micro_controller import uniform_entropy
    out = str(tmp_path / "random")
    run = runner.run("search", data_flags(search_data) + SEARCH_TINY + [
        "--seed", "0", "--num_epochs", "2", "--random_search", "--output_dir", out])
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Training controller" not in run.stdout and "ctrl_step" not in run.stdout
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(out))
    assert reader.get_tensor("controller/softmax/b").tolist() == [[10.0, 10.0, 0.0, 0.0, 0.0]]
    assert int(reader.get_tensor("controller/train_step")) == 0
    assert float(reader.get_tensor("controller/baseline")) == 0.0
    with open(os.path.join(out, "progress.tsv")) as f:
        entropies = [float(line.split("\t")[2]) for line in f if "\tentropy\t" in line]
    assert len(entropies) == 2
    assert np.allclose(entropies, uniform_entropy(1), atol=1e-4)
    with open(os.path.join(out, records.RUN_FLAGS_FILE)) as f:
        assert json.load(f)["random_search"] is True
    samples = [r[2] for r in read_arcs(os.path.join(out, "arcs.tsv")) if r[1] == "sample"]
    assert len(set(samples)) > 10  # uniform over 10,000 arcs of B = 1: hardly repeats
    report = run.stdout[run.stdout.index("final candidates:"):run.stdout.index("Best architecture:")]
    assert "--random_search the candidates are uniform draws too" in report and "controller" not in report


def test_search_quality_bench_end_to_end(runner, search_data, tmp_path, monkeypatch, capsys):
    """bench/search_quality.py on a tiny set, runs forked from the runner: both searches and every
    retraining run (the picks first); the table lists the searched cells with accuracies and
    margins; the published cells (B = 5) are skipped with a note at --num_cells 1. A rerun reuses
    every run; a second ENAS variant costs its own search (and its pick's retraining if new); a
    reference cell (a random one) is retrained alike; the summary compares the variants; a
    final-stage variant runs the end of the default's search (final_stage_variant_is_the_defaults_end)."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import quality_summary
    import search_quality
    import search_space

    def run(script, flags, log_path):  # the bench's own run(), through the fork server
        done = runner.run("search" if script == SCRIPTS["search"] else "final", flags)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout
    monkeypatch.setattr(search_quality, "run", run)
    small, work = "--child_num_layers 0 --child_out_filters 4 --batch_size 16", tmp_path / "work"
    argv = [
        "--data_dir", os.path.dirname(search_data[0]), "--img_size", "8", "--num_cells", "1",
        "--search_epochs", "1", "--retrain_epochs", "1", "--num_random", "2",
        "--search_args", small + " --controller_train_steps 1 --controller_num_aggregate 1 "
                                 "--controller_num_final_arcs 2 --final_train_top_k 0",
        "--retrain_args", small + " --n_aug_img 1", "--work_dir", str(work)]
    search_quality.main(argv)
    stdout = capsys.readouterr().out
    margin = r"[+-](?:\d+\.\d\d|nan)"  # nan: the random cells alike (sd 0)
    row = r"^({})\s+([01]\.\d{{4}})\s+([01]\.\d{{4}})\s+" + margin + r"\s+" + margin + r"\s+([\d ]+)$"
    rows = re.findall(row.format(r"random_\d|rs-ws|enas:\w+|ref:\w+"), stdout, re.M)
    assert [r[0] for r in rows] == ["random_0", "random_1", "rs-ws", "enas:default"], stdout
    for name, valid, test, arc in rows:
        search_space.parse_arc(arc, 1)
    for name, kind in (("enas:default", "enas"), ("rs-ws", "random")):
        search_dir, = work.glob("search_{}_seed0_*".format(kind))
        with open(search_dir / "best_arc.txt") as f:
            assert f.read().strip() == [r[3] for r in rows if r[0] == name][0].strip()
    assert "note: reference authors not retrained: its B is 5, --num_cells 1" in stdout
    picks = {r[3].strip() for r in rows if not r[0].startswith("random")}
    with open(work / "retrained.json") as f:
        assert {key.split(" | ")[0] for key in list(json.load(f))[:len(picks)]} == picks
    a_finished_retraining_reruns_to_its_figures(search_quality, argv, work)
    monkeypatch.setattr(search_quality, "run", None)  # a rerun reuses every search and retraining
    search_quality.main(argv)
    assert capsys.readouterr().out == stdout
    scripts = []  # a controller variant: its own ENAS search, the same random search
    monkeypatch.setattr(search_quality, "run",
                        lambda script, *a: scripts.append(script) or run(script, *a))
    search_quality.main(argv + ["--enas_variants", "default=;lr=--controller_lr 0.01",
                                "--reference_arcs", "again=" + rows[0][3]])
    assert scripts.count(SCRIPTS["search"]) == 1 and len(list(work.glob("search_enas_seed0_*/"))) == 2
    again = re.findall(row.format("rs-ws|enas:lr|ref:again"), capsys.readouterr().out, re.M)
    assert [r[0] for r in again] == ["rs-ws", "enas:lr", "ref:again"]
    assert again[0] == rows[2] and again[2][1:] == rows[0][1:]
    new_arcs = {again[1][3]} - {r[3] for r in rows}  # the reference: random_0's cell, no retraining
    assert scripts.count(SCRIPTS["final"]) == len(new_arcs)
    assert len(list(work.glob("quality_seed0_*.json"))) == 1  # the rerun's table replaces the first
    quality_summary.main([str(work)])
    assert re.search(r"^enas:lr\s+enas:default\s+[+-]\d\.\d{4}\s+nan\s+.*\s[01]/1$",
                     capsys.readouterr().out, re.M)
    final_stage_variant_is_the_defaults_end(search_quality, run, argv, work, monkeypatch)


def a_finished_retraining_reruns_to_its_figures(search_quality, argv, work):
    """search_quality.retrain on the folder of a finished retraining (its rerun prints no
    accuracies) returns the figures the first run cached."""
    with open(work / "retrained.json") as f:
        key, accs = next(iter(json.load(f).items()))
    arc, run_key = key.split(" | ")
    flags = search_quality.retrain_flags(search_quality.parse_args(argv), arc)
    assert list(search_quality.retrain(flags, str(work / ("retrain_" + run_key[:12])))) == accs


def final_stage_variant_is_the_defaults_end(search_quality, run, argv, work, monkeypatch):
    """search_quality.main(argv) with a final-stage variant, after the default's search in work:
    its one run resumes a copy of that search at its end, and its arcs.tsv is the default's plus
    the short_train rows."""
    outputs = []
    monkeypatch.setattr(search_quality, "run", lambda script, *a: outputs.append(run(script, *a)) or outputs[-1])
    search_quality.main(argv + ["--enas_variants", "default=;short=--final_train_top_k 2 --final_train_epochs 1"])
    assert "resuming at step" in outputs[0] and "Chosen by short training" in outputs[0]
    tsv_rows = lambda d: [line.split("\t")[1:4] for line in (d / "arcs.tsv").read_text().splitlines()]
    default_dir = Path(search_quality.search_dir(search_quality.parse_args(argv), str(work), "enas", []))
    short_dir, = [d for d in work.glob("search_enas_seed0_*/")
                  if any(r[0] == "short_train" for r in tsv_rows(d))]
    assert [r for r in tsv_rows(short_dir) if r[0] != "short_train"] == tsv_rows(default_dir)


def test_export_only_exports_the_checkpoint_and_trains_nothing(runner, final_run, final_data,
                                                               tmp_path):
    import tensorflow.compat.v1 as tf
    out = _copy(final_run, tmp_path)
    shutil.rmtree(os.path.join(out, "saved_model"))
    before = snapshot(out, only=ckpt_files)
    run = runner.run("final", data_flags(final_data) + FINAL_TINY + [
        "--num_epochs", "2", "--export_only", "--output_dir", out])
    assert run.returncode == 0, run.stderr[-3000:]
    assert ch_steps(run.stdout) == [] and "Eval" not in run.stdout
    assert run.stdout.strip().splitlines()[-1] == "SavedModel written to " + os.path.join(out, "saved_model")
    assert snapshot(out, only=ckpt_files) == before
    exported = tf.train.load_checkpoint(os.path.join(out, "saved_model", "variables", "variables"))
    trained = tf.train.load_checkpoint(tf.train.latest_checkpoint(out))
    weights = [n for n in exported.get_variable_to_shape_map() if n.endswith("/w")]
    assert weights
    for name in weights:
        np.testing.assert_array_equal(exported.get_tensor(name), trained.get_tensor(name))


# ---------------------------------------------------------------------------- no data loss
def test_reset_refuses_folder_with_foreign_file(runner, final_run, final_data, tmp_path):
    out = _copy(final_run, tmp_path)
    with open(os.path.join(out, "notes.txt"), "w") as f:
        f.write("my notes\n")
    before = snapshot(out)
    run = runner.run("final", data_flags(final_data) + FINAL_TINY + [
        "--num_epochs", "1", "--reset_output_dir", "--output_dir", out])
    assert_one_line_error(run, ["--reset_output_dir", "notes.txt", out])
    assert snapshot(out) == before
    with open(os.path.join(out, "notes.txt")) as f:
        assert f.read() == "my notes\n"


def test_reset_deletes_only_its_own_outputs(runner, final_run, final_data, tmp_path):
    out = _copy(final_run, tmp_path)
    assert os.path.exists(os.path.join(out, "model.ckpt-%d.index" % (2 * FINAL_BATCHES)))
    # a different shape is fine after a reset: nothing of the old run is left to clash with
    run = runner.run("final", data_flags(final_data) + FINAL_TINY + [
        "--num_epochs", "1", "--child_out_filters", "6", "--reset_output_dir", "--output_dir", out])
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Resumed from" not in run.stdout
    assert ch_steps(run.stdout) == list(range(1, FINAL_BATCHES + 1))
    names = os.listdir(out)
    assert not any(n.startswith("model.ckpt-%d." % (2 * FINAL_BATCHES)) for n in names), names
    assert latest_step(out) == FINAL_BATCHES
    with open(os.path.join(out, "stdout")) as f:
        assert f.read().count("Model has ") == 1  # the old log went with the old run
    with open(os.path.join(out, records.RUN_FLAGS_FILE)) as f:
        assert json.load(f)["child_out_filters"] == 6


def test_retrain_into_search_output_dir_stops(runner, seeded_searches, final_data, tmp_path):
    out = _copy(seeded_searches[1][0], tmp_path)
    before = snapshot(out)
    run = runner.run("final", data_flags(final_data) + FINAL_TINY + ["--output_dir", out])
    assert_one_line_error(run, ["--output_dir", out])
    assert snapshot(out) == before


@pytest.fixture(scope="module")
def final_data3(tmp_path_factory):
    from helpers import make_png_dataset
    return make_png_dataset(tmp_path_factory.mktemp("final_data3"), num_classes=3,
                            per_class=(6, 2, 2), size=8)


OTHER_ARC16 = "1 1 0 0 2 3 1 4 0 2 1 2 2 1 0 0"
MISMATCHES = {  # case: (flag the error must name, replaced flags)
    "child_num_layers": ("--child_num_layers", {"--child_num_layers": "1"}),
    "child_out_filters": ("--child_out_filters", {"--child_out_filters": "6"}),
    "child_num_cells": ("--child_num_cells", {"--child_num_cells": "1",
                                              "--child_fixed_arc": "0 1 1 2 0 3 1 4"}),
    "child_fixed_arc": ("--child_fixed_arc", {"--child_fixed_arc": OTHER_ARC16}),
    "img_size": ("--img_size", {"--img_size": "12"}),
    "channel": ("--channel", {"--channel": "3"}),
    "num_classes": ("--train_data_dir", None),  # a 3-class data set against a 2-class checkpoint
}


@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_resume_with_other_shape_stops_untouched(case, runner, final_run, final_data,
                                                 final_data3, tmp_path):
    out = _copy(final_run, tmp_path)
    before = snapshot(out)
    flag, replace = MISMATCHES[case]
    args = list(FINAL_TINY) + ["--num_epochs", "3", "--output_dir", out]
    for name, value in (replace or {}).items():
        if name in args:
            args[args.index(name) + 1] = value
        else:
            args += [name, value]
    dirs = final_data3 if case == "num_classes" else final_data
    run = runner.run("final", data_flags(dirs) + args)
    line = assert_one_line_error(run, [flag, out])
    assert "checkpoint" in line
    assert snapshot(out) == before


# ------------------------------------------------------------------------- non-finite loss
def test_nan_loss_stops_with_status_1_and_keeps_checkpoints(runner, final_run, final_data,
                                                           tmp_path):
    out = _copy(final_run, tmp_path)
    before = snapshot(out, only=ckpt_files)
    assert "model.ckpt-%d.index" % (2 * FINAL_BATCHES) in before
    # resume the finished 2-epoch run for 2 more epochs with an absurd step size and no clipping:
    # the first update blows the weights up, the next loss is NaN
    run = runner.run("final", data_flags(final_data) + FINAL_TINY + [
        "--num_epochs", "4", "--child_lr_max", "1e30", "--child_lr_min", "1e29",
        "--child_grad_bound", "0", "--output_dir", out])
    line = assert_one_line_error(run, out, status=1)
    m = re.match(r"^error: child loss is (nan|inf|-inf) at step (\d+);", line)
    assert m, line
    assert 2 * FINAL_BATCHES < int(m.group(2)) < 3 * FINAL_BATCHES  # before any epoch-end save
    assert "Resumed from" in run.stdout
    assert snapshot(out, only=ckpt_files) == before
    assert latest_step(out) == 2 * FINAL_BATCHES


# ---------------------------------------------------------------------------- reproducible
def _losses(run):
    return re.findall(r"^epoch = \d+\s+ch_step = \d+\s+loss = (\S+)", run.stdout, re.M)


def test_seed_reproduces_first_epoch(seeded_searches):
    runs, outs, _ = seeded_searches
    losses = [_losses(r) for r in runs]
    assert len(losses[0]) == len(losses[1]) == 2 * SEARCH_BATCHES
    assert losses[0][:SEARCH_BATCHES] == losses[1][:SEARCH_BATCHES]
    assert len(set(losses[0][:SEARCH_BATCHES])) > 1  # real, changing numbers
    arcs = [read_arcs(os.path.join(out, "arcs.tsv")) for out in outs]
    first = [[r for r in rows if r[0] == "1"] for rows in arcs]
    assert len(first[0]) == 10 and first[0] == first[1]  # arcs and their accuracies
    assert len(set(r[2] for r in first[0])) > 1


# The two seeded searches run side by side, so their timing differs: that exposes the race.
def test_seed_reproduces_losses_and_architectures(seeded_searches):
    runs, outs, _ = seeded_searches
    losses = [_losses(r) for r in runs]
    assert len(losses[0]) == 2 * SEARCH_BATCHES == 20
    assert losses[0] == losses[1]
    arcs = [read_arcs(os.path.join(out, "arcs.tsv")) for out in outs]
    assert len(arcs[0]) == 24  # 20 samples, 2 final candidates, 2 uniform cells
    assert [r[2] for r in arcs[0]] == [r[2] for r in arcs[1]]
    assert arcs[0] == arcs[1]  # accuracies too


def test_seed_repeats_every_line_with_nodes_read_three_times(runner, search_data, tmp_path):
    """Two seeded searches side by side at the default thread count, with B = 3 nodes per cell
    (the last --child_num_cells wins): a node that three slots read gets its gradient as three
    writes into one TensorArray accumulator (ops.ordered_read), which B = 1 never has. Every
    training and controller line, every accuracy and arcs.tsv are the same."""
    outs = [str(tmp_path / name) for name in ("a", "b")]
    runs = [runner.start("search", data_flags(search_data) + SEARCH_TINY + [
        "--child_num_cells", "3", "--seed", "5", "--num_epochs", "2", "--output_dir", out])
        for out in outs]
    for run in runs:
        assert run.wait() == 0, run.stderr[-3000:]
    lines = [record(run.stdout) for run in runs]
    assert len(_losses(runs[0])) == 2 * SEARCH_BATCHES and len(set(_losses(runs[0]))) > 1
    assert lines[0] == lines[1]
    arcs = [read_arcs(os.path.join(out, "arcs.tsv")) for out in outs]
    assert len(arcs[0]) == 24 and arcs[0] == arcs[1]


class _FakeEvalSession(object):
    """Session stand-in for evaluation.Evaluation: `n` examples in batches of 100, then OutOfRangeError;
    global step 25. Keeps the feed of every eval batch run."""

    def __init__(self, g, n):
        self.g, self.n, self.left, self.feeds, self.failed_feeds = g, n, 0, [], []

    def run(self, fetches, feed_dict=None):
        import tensorflow.compat.v1 as tf
        if fetches == self.g.global_step:
            return 25
        if fetches in self.g.eval_init.values():
            self.left = self.n
            return None
        assert fetches == [self.g.eval_correct, self.g.eval_loss_sum], fetches
        if self.left == 0:
            self.failed_feeds.append(dict(feed_dict or {}))
            raise tf.errors.OutOfRangeError(None, None, "End of sequence")
        self.feeds.append(dict(feed_dict))
        count = min(100, self.left)
        self.left -= count
        return count // 2, 0.7 * count


def test_evaluate_runs_each_batch_once_with_its_own_sample_key():
    """Evaluation.evaluate runs exactly ceil(N / 100) batches: a run past the end would fail after
    sampling a cell. In a search each batch feeds its own sample key, a function of the split,
    the epoch and the batch only, so that a resumed run scores with the same cells."""
    import types
    import numpy as np
    import evaluation
    g = types.SimpleNamespace(eval_init={"valid": "init-valid", "test": "init-test"},
                              eval_correct="correct", eval_loss_sum="loss", global_step="global-step",
                              sample_key="sample-key", feed=lambda sess, source: {"source": source},
                              num_train_batches=10)
    data = {"labels": {"valid": np.zeros(250, np.int32), "test": np.zeros(250, np.int32)}}
    sess = _FakeEvalSession(g, 250)
    ev = evaluation.Evaluation(sess, g, data, True, None, ("valid", "test"))
    assert ev.evaluate("valid") == pytest.approx(0.5)
    assert sess.failed_feeds == [] and len(sess.feeds) == 3
    assert ev.evaluate("valid") == pytest.approx(0.5)
    assert ev.evaluate("test") == pytest.approx(0.5)
    keys = [tuple(feed["sample-key"]) for feed in sess.feeds]
    assert keys[:3] == keys[3:6]                   # the same epoch: the same cells
    assert len(set(keys[:3] + keys[6:])) == 6      # per batch and per split


def test_resume_after_final_rows_does_not_duplicate_them(runner, seeded_searches, tmp_path):
    _, outs, args = seeded_searches
    out = _copy(outs[0], tmp_path)
    # the state a kill leaves between score_final_arcs' append_rows and best_arc.txt's write
    os.remove(os.path.join(out, "best_arc.txt"))
    run = runner.run("search", args[0][:-1] + [out])
    assert run.returncode == 0, run.stderr[-3000:]
    rows = read_arcs(os.path.join(out, "arcs.tsv"))
    assert [r[1] for r in rows].count("final") == [r[1] for r in rows].count("uniform") == 2, rows
