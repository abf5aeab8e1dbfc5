"""What protects an output_dir: one live run at a time, damaged checkpoints, a full disk.

Runs are forked from test_reliability's TensorFlow-imported server (see there why); the full-disk
runs are real `python main_*.py` processes inside a user + mount namespace (`unshare`) that mounts
a small tmpfs, so the disk really fills (ENOSPC), without root on the host.
"""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

import records
from errors import UserError
from helpers import assert_one_line_error, data_flags, user_stderr
from test_reliability import (  # noqa: F401  (fixtures)
    FINAL_BATCHES, FINAL_TINY, ROOT, SCRIPTS, SEARCH_TINY, _copy, final_data, final_run, latest_step,
    read_arcs, runner, search_data, seeded_searches, snapshot)

HOLD_LOCK = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    import records
    records.lock_output_dir(sys.argv[1])
    print("locked", flush=True)
    time.sleep(600)
""")


def _hold_lock(out):
    """A process that holds out's lock the way a live run does, until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK.format(root=ROOT), out],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


# --------------------------------------------------------------------- one run per output_dir
def test_second_run_on_a_live_output_dir_stops_and_changes_nothing(runner, final_run, final_data,
                                                                   tmp_path):
    out = _copy(final_run, tmp_path)
    args = data_flags(final_data) + FINAL_TINY + ["--num_epochs", "3", "--output_dir", out]
    holder = _hold_lock(out)
    try:
        before = snapshot(out)
        for mode, extra in (("final", []), ("final", ["--reset_output_dir"])):
            second = runner.run(mode, args + extra)
            assert_one_line_error(second, [out, "process {}".format(holder.pid)])
            assert snapshot(out) == before
        search = runner.run("search", data_flags(final_data) + SEARCH_TINY + ["--output_dir", out])
        assert_one_line_error(search, [out, "process {}".format(holder.pid)])
        assert snapshot(out) == before
    finally:
        holder.kill()  # kill -9: the kernel drops its lock
        holder.wait()
    resumed = runner.run("final", args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stdout
    assert latest_step(out) == 3 * FINAL_BATCHES


def test_a_live_run_blocks_a_second_one_until_it_ends(runner, final_data, tmp_path):
    out = str(tmp_path / "out")
    args = data_flags(final_data) + FINAL_TINY + ["--num_epochs", "2", "--output_dir", out]
    first = runner.start("final", args, stop_at=r"^epoch = \d+\s+ch_step = 1\s")
    first.wait_stopped()  # holding the lock, mid-run
    second = runner.run("final", args)
    assert_one_line_error(second, [out, "process {}".format(first.pid)])
    os.kill(first.pid, signal.SIGCONT)
    assert first.wait() == 0, first.stderr[-3000:]
    assert latest_step(out) == 2 * FINAL_BATCHES
    # an early time estimate after 3 steps, inside the first epoch
    assert re.search(r"^Progress: in epoch 1/2, step 3/%d, .* min left" % (2 * FINAL_BATCHES),
                     first.stdout, re.M), first.stdout[:2000]
    with open(os.path.join(out, records.LOCK_FILE)) as f:
        assert f.read().strip() == str(first.pid)


# ------------------------------------------------------------------------ damaged checkpoints
def _flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def _data_file(out):
    return next(os.path.join(out, n) for n in os.listdir(out) if ".data-" in n)


def _not_the_log(name):
    """Files a failed resume may touch: the log it appends to, its lock, run_flags (same text)."""
    return name not in ("stdout", records.LOCK_FILE, records.RUN_FLAGS_FILE)


INDEX = "model.ckpt-%d.index" % (2 * FINAL_BATCHES)
DAMAGE = {  # case: (what to do to a copy of a finished run, a name the error line must hold)
    "truncated data": (lambda out: os.truncate(_data_file(out), 100), ".data-00000-of-00001"),
    "corrupt data": (lambda out: _flip_byte(_data_file(out), 200), ".data-00000-of-00001"),
    "missing data": (lambda out: os.remove(_data_file(out)), ".data-"),
    "truncated index": (lambda out: os.truncate(os.path.join(out, INDEX), 20), INDEX),
    "corrupt index": (lambda out: _flip_byte(os.path.join(out, INDEX), 10), INDEX),
    "checkpoint names a missing step": (
        lambda out: open(os.path.join(out, "checkpoint"), "w").write(
            'model_checkpoint_path: "model.ckpt-99"\n'), "model.ckpt-99"),
    "garbage checkpoint file": (
        lambda out: open(os.path.join(out, "checkpoint"), "w").write("\x00{{ not a proto"),
        "checkpoint"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_checkpoint_on_resume_stops_and_deletes_nothing(case, runner, final_run,
                                                                final_data, tmp_path):
    out = _copy(final_run, tmp_path)
    damage, must_name = DAMAGE[case]
    damage(out)
    before = snapshot(out, only=_not_the_log)
    log = open(os.path.join(out, "stdout")).read()
    run = runner.run("final", data_flags(final_data) + FINAL_TINY + ["--num_epochs", "3",
                                                                     "--output_dir", out])
    line = assert_one_line_error(run, [out, must_name])
    assert "--output_dir" in line and "nothing was deleted" in line
    assert snapshot(out, only=_not_the_log) == before  # checkpoint, TSVs, plots as they were
    assert open(os.path.join(out, "stdout")).read().startswith(log)  # the log only grew


def test_checkpoint_files_without_a_checkpoint_file_resume_from_the_latest(runner, final_run,
                                                                          final_data, tmp_path):
    """What a kill between the Saver's two writes of a first save leaves: the rerun resumes."""
    out = _copy(final_run, tmp_path)
    os.remove(os.path.join(out, "checkpoint"))
    run = runner.run("final", data_flags(final_data) + FINAL_TINY + ["--num_epochs", "3",
                                                                     "--output_dir", out])
    assert run.returncode == 0, run.stderr[-3000:]
    assert "has no 'checkpoint' file; resuming from model.ckpt-%d" % (2 * FINAL_BATCHES) in run.stdout
    assert latest_step(out) == 3 * FINAL_BATCHES


def test_a_moved_output_dir_resumes_from_its_own_checkpoint(runner, final_run, final_data,
                                                           tmp_path):
    out = _copy(final_run, tmp_path)
    moved = str(tmp_path / "moved")
    os.rename(out, moved)
    run = runner.run("final", data_flags(final_data) + FINAL_TINY + ["--num_epochs", "3",
                                                                     "--output_dir", moved])
    assert run.returncode == 0, run.stderr[-3000:]
    assert re.search(r"^Resumed from {}/model\.ckpt-{} at step".format(
        re.escape(moved), 2 * FINAL_BATCHES), run.stdout, re.M), run.stdout[:2000]


# ---------------------------------------------------------------------------------- full disk
FULL_DISK = r"""
set -e
mount -t tmpfs -o size={size} none "$MNT"
cp -a "$SRC" "$MNT/out"
head -c "$(( $(df -B1 --output=avail "$MNT" | tail -1) - {free} ))" /dev/zero > "$MNT/filler"
set +e
"$PY" {script} {args} --output_dir "$MNT/out" > "$HOST/stdout" 2> "$HOST/stderr"
echo $? > "$HOST/rc"
rm "$MNT/filler"
cp -a "$MNT/out" "$HOST/after"
"""


def _namespaces_work():
    try:
        return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _namespaces_work(), reason="needs unshare with user and mount namespaces")
@pytest.mark.parametrize("mode", ["final", "search"])
def test_full_disk_stops_with_one_line_and_keeps_a_restorable_checkpoint(
        mode, runner, final_run, seeded_searches, final_data, search_data, tmp_path):
    """The disk fills during the resumed run's first epoch end (free: 1.5 checkpoints, the
    new checkpoint is written before the old one goes). Exit 1 with one line naming a file and
    ENOSPC; the copy taken afterwards holds whole TSV rows and resumes from its checkpoint."""
    dirs = final_data if mode == "final" else search_data
    flags = FINAL_TINY if mode == "final" else SEARCH_TINY
    src = final_run if mode == "final" else seeded_searches[1][0]  # finished 2-epoch runs
    step = latest_step(src)
    ckpt_bytes = os.path.getsize(_data_file(src))
    args = data_flags(dirs) + flags + ["--num_epochs", "4"]
    host, mnt = tmp_path / "host", tmp_path / "mnt"
    host.mkdir()
    mnt.mkdir()
    script = FULL_DISK.format(size="64m", free=int(1.5 * ckpt_bytes) + 8192,
                              script=SCRIPTS[mode], args=" ".join("'{}'".format(a) for a in args))
    env = dict(os.environ, MNT=str(mnt), SRC=src, HOST=str(host), PY=sys.executable,
               TF_CPP_MIN_LOG_LEVEL="2")
    r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    stderr = (host / "stderr").read_text()
    assert (host / "rc").read_text().strip() == "1", stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = user_stderr(stderr)
    assert len(lines) == 1, lines
    assert re.match(r"^error: cannot write \S*/out/\S+: No space left on device; ", lines[0]), lines
    after = str(host / "after")
    for name in ("arcs.tsv",) if mode == "search" else ():
        read_arcs(os.path.join(after, name))
    with open(os.path.join(after, "progress.tsv")) as f:
        text = f.read()
    assert text.endswith("\n") and all(len(l.split("\t")) == 3 for l in text.splitlines())
    resumed = runner.run(mode, args + ["--output_dir", after])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    m = re.search(r"^Resumed from \S+model\.ckpt-(\d+) at step", resumed.stdout, re.M)
    assert m and int(m.group(1)) >= step, resumed.stdout[:2000]


APPEND_PAST_LIMIT = textwrap.dedent("""
    import resource, signal, sys
    sys.path.insert(0, {root!r})
    import records
    from errors import WriteFailed
    path = sys.argv[1]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    limit = len(open(path).read()) + 30            # room for half of the rows below
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        records.append_rows(path, [(3, "sample", "0 1 2 3", 0.5, 16)] * 3)
    except WriteFailed as e:
        print(e)
""")


def test_a_tsv_append_cut_short_by_the_disk_leaves_only_whole_rows(tmp_path):
    """The file-size limit (RLIMIT_FSIZE) makes the kernel write part of the rows and then fail,
    as a full disk does; append_lines cuts the file back to its rows before the append."""
    path = str(tmp_path / "arcs.tsv")
    records.append_rows(path, [(1, "sample", "0 1 2 3", 0.25, 16), (2, "sample", "1 1 2 3", 0.5, 16)])
    with open(path) as f:
        before = f.read()
    r = subprocess.run([sys.executable, "-c", APPEND_PAST_LIMIT.format(root=ROOT), path],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("cannot write {}: File too large".format(path)), r.stdout
    with open(path) as f:
        assert f.read() == before
    assert len(read_arcs(path)) == 2


# ------------------------------------------------------------------------------ run_flags.json
def _retraining_flags(argv):
    """A FlagValues of the flags take_search_data_flags reads, parsed from argv."""
    from absl import flags as absl_flags
    fv = absl_flags.FlagValues()
    for name in ("train_data_dir", "val_data_dir", "test_data_dir", "child_fixed_arc"):
        absl_flags.DEFINE_string(name, "data/" + name, "", flag_values=fv)
    absl_flags.DEFINE_boolean("skip_bad_images", False, "", flag_values=fv)
    for name, default in (("channel", None), ("img_size", 16), ("child_num_cells", 5)):
        absl_flags.DEFINE_integer(name, default, "", flag_values=fv)
    fv(["x"] + argv)
    return fv


def _search_folder(tmp_path, run_flags):
    folder = tmp_path / "search"
    folder.mkdir()
    (folder / "best_arc.txt").write_text("0 0 1 1 0 0 1 1\n")
    (folder / records.RUN_FLAGS_FILE).write_text(json.dumps(run_flags))
    return str(folder / "best_arc.txt"), str(folder / records.RUN_FLAGS_FILE)


SEARCH_RUN_FLAGS = {"mode": "search", "child_num_layers": 2, "channel": 3, "img_size": 12,
                    "child_num_cells": 1, "train_data_dir": "/d/train", "val_data_dir": "/d/valid",
                    "test_data_dir": "/d/test", "skip_bad_images": True}


def test_retraining_takes_the_search_data_flags_not_given(tmp_path, capsys):
    """A retraining of a search's best_arc.txt takes the search's data flags (not its other
    shaping flags), but those on its command line, and says which in one line."""
    arc, path = _search_folder(tmp_path, SEARCH_RUN_FLAGS)
    flags = _retraining_flags(["--child_fixed_arc", arc, "--img_size", "8", "--val_data_dir", "v"])
    records.take_search_data_flags(flags)
    assert capsys.readouterr().out.splitlines() == [
        "Data flags from the search in {}: --train_data_dir /d/train --test_data_dir /d/test "
        "--skip_bad_images --channel 3 --child_num_cells 1 (give a flag to override)".format(path)]
    assert [getattr(flags, n) for n in records.SEARCH_DATA_FLAGS] == [
        "/d/train", "v", "/d/test", True, 3, 8, 1]


def test_an_older_search_gives_what_it_recorded(tmp_path, capsys):
    """An older run_flags.json without the data folders: the folders stay as given."""
    old = {k: v for k, v in SEARCH_RUN_FLAGS.items() if k not in records.DATA_SOURCE_FLAGS}
    arc, _ = _search_folder(tmp_path, old)
    flags = _retraining_flags(["--child_fixed_arc", arc])
    records.take_search_data_flags(flags)
    assert "--channel 3 --img_size 12 --child_num_cells 1 (give" in capsys.readouterr().out
    assert flags.train_data_dir == "data/train_data_dir"


@pytest.mark.parametrize("case", ["arc_string", "retraining_folder", "no_run_flags"])
def test_nothing_taken_outside_a_search_folder(case, tmp_path, capsys):
    mode = "final" if case == "retraining_folder" else "search"
    arc, path = _search_folder(tmp_path, dict(SEARCH_RUN_FLAGS, mode=mode))
    if case == "no_run_flags":
        os.remove(path)
    flags = _retraining_flags(["--child_fixed_arc", "0 0 1 1 0 0 1 1" if case == "arc_string" else arc])
    records.take_search_data_flags(flags)
    assert capsys.readouterr().out == "" and flags.channel is None and flags.img_size == 16


def test_unreadable_search_run_flags_is_one_line_naming_it(tmp_path):
    arc, path = _search_folder(tmp_path, {})
    with open(path, "w") as f:
        f.write('{"mode": "sea')
    with pytest.raises(UserError, match=re.escape(path)):
        records.take_search_data_flags(_retraining_flags(["--child_fixed_arc", arc]))


def test_resume_compares_the_shaping_flags_not_where_the_data_is(tmp_path):
    """The data folders are kept in run_flags.json (the retraining reads them) but may move
    between a run and its resume; a shaping flag may not change."""
    out = str(tmp_path / "out")
    shaping = {"mode": "final", "channel": 1, "num_classes": 2}
    records.prepare_output_dir(out, False, dict(shaping, train_data_dir="/a/train"))
    records.prepare_output_dir(out, False, dict(shaping, train_data_dir="/b/train"))
    with open(os.path.join(out, records.RUN_FLAGS_FILE)) as f:
        assert json.load(f)["train_data_dir"] == "/b/train"
    with pytest.raises(UserError, match="--channel is 3 but"):
        records.prepare_output_dir(out, False, dict(shaping, channel=3, train_data_dir="/b/train"))
