"""What a run keeps in output_dir, and the checks that protect it.

  shaping_flags(flags, mode, arc, n)     the flags that shape the saved weights
  data_source_flags(flags)               where the data was read (kept, not compared on resume)
  take_search_data_flags(flags)          a retraining of best_arc.txt: the search's data flags
  prepare_output_dir(path, reset, run)   create / lock / safely reset / check a resumable output_dir
  lock_output_dir(path)                  one live run per output_dir (flock of path/.lock)
  append_lines, keep_lines               a TSV of whole lines only: appended in one write (cut back if
                                         the disk fills), trimmed on resume
  append_rows, keep_rows_up_to           arcs.tsv through those two, trimmed to the checkpoint
  write_atomic(path, text)               write to a temp file, then rename
  retrain_command(flags, arc_path)       the main_child_trainer.py command for a found arc
"""
import fcntl
import json
import os
import shutil

import search_space
from errors import UserError, WriteFailed, writing

RUN_FLAGS_FILE = "run_flags.json"
# Shaping flags an older run_flags.json lacks: their value then.
ADDED_LATER = {"random_search": False, "uniform_warmup_epochs": 0}
# Where a run read its data: in run_flags.json beside the shaping flags, not compared on resume
# (the folders may move); older files lack them.
DATA_SOURCE_FLAGS = ("train_data_dir", "val_data_dir", "test_data_dir", "skip_bad_images")
# What a retraining of a search's best_arc.txt takes from the search's run_flags.json.
SEARCH_DATA_FLAGS = DATA_SOURCE_FLAGS + ("channel", "img_size", "child_num_cells")
ARCS_HEADER = "epoch\tsource\tarc\tvalid_acc\tn_images\n"
# Names this program writes into output_dir; a reset deletes only these.
LOCK_FILE = ".lock"  # flock of the run writing to output_dir (lock_output_dir)
_LOCKS = {}  # realpath of a lock file -> the open file holding this process's lock
OWN_NAMES = (LOCK_FILE, "checkpoint", "stdout", "arcs.tsv", "best_arc.txt", RUN_FLAGS_FILE, "labels.txt",
             "saved_model", "progress.tsv", "search_progress.png", "train_progress.png", "final_stage")
OWN_PREFIXES = ("model.ckpt-", "events.out.tfevents", "best_arc_", ".tmp_")


def shaping_flags(flags, mode, fixed_arc, num_classes):
    """The values a checkpoint's weights depend on; a resume must match them."""
    arc = None if fixed_arc is None else search_space.arc_to_string(*fixed_arc)
    search = {"random_search": flags.random_search,
              "uniform_warmup_epochs": flags.uniform_warmup_epochs} if mode == "search" else {}
    return {**search, "mode": mode, "child_num_layers": flags.child_num_layers,
            "child_out_filters": flags.child_out_filters, "child_num_cells": flags.child_num_cells,
            "child_fixed_arc": arc, "child_use_aux_heads": flags.child_use_aux_heads,
            "img_size": flags.img_size, "channel": flags.channel, "num_classes": num_classes}


def data_source_flags(flags):
    """Where the run reads its data (DATA_SOURCE_FLAGS), the folders as absolute paths."""
    return {name: os.path.abspath(getattr(flags, name)) if name.endswith("_dir") else getattr(flags, name)
            for name in DATA_SOURCE_FLAGS}


def _search_run_flags(arc_path):
    """(path, dict) of the run_flags.json of the search whose output folder holds the file
    arc_path (a --child_fixed_arc), or None: an arc string, or a file outside a search's folder."""
    if not arc_path or not os.path.isfile(arc_path):
        return None
    path = os.path.join(os.path.dirname(arc_path), RUN_FLAGS_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError("--child_fixed_arc {}: cannot read {} beside it ({})".format(arc_path, path, e))
    return (path, saved) if isinstance(saved, dict) and saved.get("mode") == "search" else None


def take_search_data_flags(flags):
    """A retraining of a file in a search's output folder (its best_arc.txt): every flag of
    SEARCH_DATA_FLAGS the command line does not give takes the search's value from its
    run_flags.json (those an older file holds), with one line saying which. flags: the parsed
    absl FLAGS."""
    found = _search_run_flags(flags.child_fixed_arc)
    if found is None:
        return
    path, saved = found
    taken = [name for name in SEARCH_DATA_FLAGS if name in saved and not flags[name].present]
    for name in taken:
        setattr(flags, name, saved[name])
    if taken:
        print("Data flags from the search in {}: {} (give a flag to override)".format(
            path, " ".join(_as_argument(name, saved[name]) for name in taken)))


def _as_argument(name, value):
    """The command-line form of a flag's value: --name value, or --name / --noname."""
    if isinstance(value, bool):
        return "--{}{}".format("" if value else "no", name)
    return "--{} {}".format(name, value)


def _is_own(name):
    return name in OWN_NAMES or name.startswith(OWN_PREFIXES)


def _reset(path):
    """Deletes this program's outputs in path; refuses if anything else is there."""
    names = sorted(os.listdir(path))
    foreign = [n for n in names if not _is_own(n)]
    if foreign:
        raise UserError("--reset_output_dir: {} holds '{}', which this program did not write; "
                        "not deleting anything".format(path, foreign[0]))
    for name in names:
        if name == LOCK_FILE:
            continue  # this run's own lock: deleting it would let another run take a new one
        full = os.path.join(path, name)
        shutil.rmtree(full) if os.path.isdir(full) else os.remove(full)


def _check_resume(path, run_flags):
    """Stops before touching anything if path holds a run whose shaping flags differ."""
    saved_path = os.path.join(path, RUN_FLAGS_FILE)
    if not os.path.exists(saved_path):
        return
    with open(saved_path) as f:
        saved = json.load(f)
    if saved.get("mode") != run_flags["mode"]:
        raise UserError("--output_dir {} holds a {} run; use another --output_dir for a {} run".format(
            path, saved.get("mode"), run_flags["mode"]))
    for key, value in run_flags.items():
        if key not in DATA_SOURCE_FLAGS and saved.get(key, ADDED_LATER.get(key)) != value:
            flag = key if key != "num_classes" else "train_data_dir (number of classes)"
            raise UserError("--{} is {} but the checkpoint in {} was made with {}; use another "
                            "--output_dir or the same value".format(flag, value, path, saved.get(key)))


def lock_output_dir(path):
    """Takes path/.lock for the rest of this process (an exclusive flock holding its pid), or
    raises UserError naming the live process that holds it. The kernel drops the lock when its
    process ends, however it ends (kill -9 too), so a killed run never blocks the next one."""
    lock_path = os.path.join(path, LOCK_FILE)
    if os.path.realpath(lock_path) in _LOCKS:
        return  # this process already holds it (a second run in one process, as tests do)
    with writing(lock_path):
        f = open(lock_path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise UserError("--output_dir {} is in use by a live run (process {}); wait for it to end, "
                        "or use another --output_dir".format(path, holder))
    with writing(lock_path):
        f.truncate(0)
        f.write("{}\n".format(os.getpid()))
        f.flush()
    _LOCKS[os.path.realpath(lock_path)] = f


def prepare_output_dir(path, reset, run_flags):
    """Creates path, locks it for this run (lock_output_dir), resets it safely if asked, checks
    that a run to resume matches, saves run_flags. Changes nothing if another run holds it."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError("--output_dir {} is a file, expected a folder".format(path))
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UserError("--output_dir {}: cannot create it ({})".format(path, e.strerror))
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError("--output_dir {} is not writable".format(path))
    lock_output_dir(path)
    if reset:
        _reset(path)
    _check_resume(path, run_flags)
    write_atomic(os.path.join(path, RUN_FLAGS_FILE), json.dumps(run_flags, indent=1) + "\n")


def write_atomic(path, text):
    """Writes text (str, or bytes such as an encoded PNG) to path through a temporary file and a
    rename, so no reader sees half a file. WriteFailed(path) if the disk is full: path is then
    as it was."""
    tmp = os.path.join(os.path.dirname(path) or ".", ".tmp_" + os.path.basename(path))
    with writing(path):
        try:
            with open(tmp, "wb" if isinstance(text, bytes) else "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def append_lines(path, text, header):
    """Appends whole lines (text ends with a newline) to a TSV in one write and fsync, the header
    first if the file is new. If the disk fills mid-write the file is cut back to its old length,
    so it only ever holds whole lines; then WriteFailed(path)."""
    old_size = os.path.getsize(path) if os.path.exists(path) else 0
    text = text if old_size else header + text
    try:
        with writing(path):
            with open(path, "a") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
    except WriteFailed:
        if os.path.exists(path):
            os.truncate(path, old_size)
        raise


def keep_lines(path, header, keep):
    """On resume: rewrites a TSV with only its whole lines (not a torn last one) for which
    keep(fields) is true. Returns the kept lines' fields, header excluded ([] if no file)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = f.readlines()
    kept, fields = [header], []
    for line in lines[1:]:
        parts = line.rstrip("\n").split("\t")
        if line.endswith("\n") and keep(parts):
            kept.append(line)
            fields.append(parts)
    if kept != lines:
        write_atomic(path, "".join(kept))
    return fields


def append_rows(path, rows):
    """Appends (epoch, source, arc, valid_acc, n_images) rows to arcs.tsv (see append_lines)."""
    append_lines(path, "".join("{}\t{}\t{}\t{:.4f}\t{}\n".format(*row) for row in rows), ARCS_HEADER)


def _arcs_row_of(fields, epoch, drop_sources):
    try:
        return len(fields) == 5 and int(fields[0]) <= epoch and fields[1] not in drop_sources
    except ValueError:
        return False


def keep_rows_up_to(path, epoch, drop_sources=()):
    """On resume: drops rows of epochs after the restored checkpoint, any torn last line, and
    rows of drop_sources, e.g. final candidates a stopped run scored but never picked."""
    keep_lines(path, ARCS_HEADER, lambda fields: _arcs_row_of(fields, epoch, drop_sources))


def retrain_command(flags, arc_path):
    """python main_child_trainer.py ... for the found arc in arc_path. The retraining takes the
    search's data flags from the run_flags.json beside arc_path (take_search_data_flags), so
    only the layout is repeated: NCHW on a GPU."""
    layout = "" if flags.data_format == "NHWC" else " --data_format " + flags.data_format
    return "python main_child_trainer.py --child_fixed_arc {}{}".format(arc_path, layout)
