"""Bad input to the entry scripts: exit status 2, one `error: ...` line, no traceback, nothing written.

Runs go through test_reliability.ForkRunner: real processes running trainer.main(mode) as the
scripts do, forked from a server that imported TensorFlow once (a fresh interpreter spends ~10 s
on that import on the shared CI machine). test_real_cli_gives_the_same_error checks one case
against a real `python main_child_trainer.py` process.
"""
import json
import math
import os
import shutil
import subprocess
import sys
import types

import cv2
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import enas_flags
import errors
import search_space
from test_cli import ARC16
from helpers import assert_one_line_error, data_flags, user_stderr
from test_reliability import ROOT, runner  # noqa: F401  (runner: a fixture)

TINY = ["--img_size", "8", "--child_num_layers", "0", "--child_num_cells", "2",
        "--child_out_filters", "4", "--batch_size", "16", "--log_every", "1", "--seed", "0",
        "--num_epochs", "1"]
FINAL = TINY + ["--n_aug_img", "1", "--child_fixed_arc", ARC16]
SEARCH = TINY + ["--controller_train_steps", "1", "--controller_num_aggregate", "1",
                 "--controller_num_final_arcs", "1"]
ARGS = {"final": FINAL, "search": SEARCH}


@pytest.fixture(scope="module")
def base_data(tmp_path_factory):
    """2 classes x (8 train, 2 valid, 2 test) gray 8x8 PNGs: one batch of 16 per epoch."""
    from helpers import make_png_dataset
    root = tmp_path_factory.mktemp("base_data")
    make_png_dataset(root, num_classes=2, per_class=(8, 2, 2), size=8)
    return str(root)


@pytest.fixture
def data(base_data, tmp_path):
    """A private copy of base_data that a test may break: (root, (train, valid, test))."""
    root = str(tmp_path / "data")
    shutil.copytree(base_data, root)
    return root, tuple(os.path.join(root, s) for s in ("train", "valid", "test"))


def _run(runner, dirs, extra, tmp_path, mode="final", base=None):  # noqa: F811
    out = str(tmp_path / "out")
    args = data_flags(dirs) + list(ARGS[mode] if base is None else base) + list(extra)
    if "--output_dir" not in extra:
        args += ["--output_dir", out]
    return runner.run(mode, args), out


def _refused(runner, dirs, extra, tmp_path, must_name, mode="final", base=None):  # noqa: F811
    run, out = _run(runner, dirs, extra, tmp_path, mode, base)
    line = assert_one_line_error(run, must_name)
    if "--output_dir" not in extra:
        assert not os.path.exists(out), "output_dir was created for a run that never started"
    return line


# ------------------------------------------------------------------------------- data folders
@pytest.mark.parametrize("mode", ["final", "search"])
def test_missing_data_folder(mode, runner, data, tmp_path):  # noqa: F811
    _, (train, valid, test) = data
    missing = str(tmp_path / "no_such_folder")
    _refused(runner, (missing, valid, test), [], tmp_path, [missing, "does not exist"], mode)


def test_empty_data_folder(runner, data, tmp_path):  # noqa: F811
    _, (train, valid, test) = data
    shutil.rmtree(valid)
    os.mkdir(valid)
    _refused(runner, (train, valid, test), [], tmp_path, [valid, "no class subfolders"])


def test_class_folder_missing_from_one_split(runner, data, tmp_path):  # noqa: F811
    _, (train, valid, test) = data
    shutil.rmtree(os.path.join(test, "1"))
    _refused(runner, (train, valid, test), [], tmp_path, [test, "'1'"])


def test_class_folder_only_in_one_split(runner, data, tmp_path):  # noqa: F811
    _, (train, valid, test) = data
    shutil.copytree(os.path.join(valid, "1"), os.path.join(valid, "extra"))
    _refused(runner, (train, valid, test), [], tmp_path, [valid, "'extra'"])


def test_single_class(runner, data, tmp_path):  # noqa: F811
    _, dirs = data
    for split_dir in dirs:
        shutil.rmtree(os.path.join(split_dir, "1"))
    _refused(runner, dirs, [], tmp_path, [dirs[0], "at least 2"])


def test_empty_class_folder(runner, data, tmp_path):  # noqa: F811
    _, (train, valid, test) = data
    folder = os.path.join(train, "1")
    shutil.rmtree(folder)
    os.mkdir(folder)
    _refused(runner, (train, valid, test), [], tmp_path, [folder, "no image files"])


# ---------------------------------------------------------------------------------- bad files
def _add_corrupt_png(train):
    path = os.path.join(train, "1", "broken.png")
    with open(path, "wb") as f:
        f.write(b"this is not a PNG at all\x00\x01\x02")
    return path


def test_corrupt_image_is_named(runner, data, tmp_path):  # noqa: F811
    _, dirs = data
    path = _add_corrupt_png(dirs[0])
    _refused(runner, dirs, [], tmp_path, [path, "--skip_bad_images"])


def test_corrupt_image_skipped_with_flag(runner, data, tmp_path):  # noqa: F811
    _, dirs = data
    _add_corrupt_png(dirs[0])  # 16 good train images + this one
    run, out = _run(runner, dirs, ["--skip_bad_images"], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "train: 16 images, 2 classes, 8x8x1, 1 unreadable files skipped" in run.stdout
    assert "valid: 4 images, 2 classes, 8x8x1\n" in run.stdout  # nothing skipped there
    assert os.path.exists(os.path.join(out, "model.ckpt-1.index"))


def test_non_image_file_in_class_folder(runner, data, tmp_path):  # noqa: F811
    _, dirs = data
    path = os.path.join(dirs[1], "0", "notes.txt")
    with open(path, "w") as f:
        f.write("where these images came from\n")
    _refused(runner, dirs, [], tmp_path, [path])


def test_real_cli_gives_the_same_error(runner, data, tmp_path):  # noqa: F811
    """The forked runs behave like `python main_child_trainer.py` (status, the one error line)."""
    _, dirs = data
    _add_corrupt_png(dirs[0])
    forked = _refused(runner, dirs, [], tmp_path, "broken.png")
    out = str(tmp_path / "cli_out")
    r = subprocess.run([sys.executable, "main_child_trainer.py"] + data_flags(dirs) + FINAL +
                       ["--output_dir", out], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = user_stderr(r.stderr)
    assert lines == [forked]
    assert not os.path.exists(out)


def _recolour(dirs, to_colour):
    for split_dir in dirs:
        for dirpath, _, files in os.walk(split_dir):
            for name in files:
                path = os.path.join(dirpath, name)
                img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
                if to_colour:
                    img = np.dstack([img, np.roll(img, 1, axis=0), 255 - img])  # real colour
                assert cv2.imwrite(path, img)


def test_grayscale_files_under_channel_3_are_converted(runner, data, tmp_path):  # noqa: F811
    _, dirs = data  # make_png_dataset wrote 8-bit gray files
    run, out = _run(runner, dirs, ["--channel", "3"], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "train: 16 images, 2 classes, 8x8x3" in run.stdout
    assert os.path.exists(os.path.join(out, "model.ckpt-1.index"))


def test_colour_files_under_channel_1_are_converted(runner, data, tmp_path):  # noqa: F811
    _, dirs = data
    _recolour(dirs, to_colour=True)
    assert cv2.imread(os.path.join(dirs[0], "0", "0.png"), cv2.IMREAD_UNCHANGED).shape == (8, 8, 3)
    run, out = _run(runner, dirs, ["--channel", "1"], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "train: 16 images, 2 classes, 8x8x1" in run.stdout
    notice = "--channel 1: the training images in {} are colour, read as grey".format(dirs[0])
    assert [line for line in run.stdout.splitlines() if line.startswith("--channel")] == [
        notice + " (--channel 3 reads them as RGB)"]
    assert os.path.exists(os.path.join(out, "model.ckpt-1.index"))


# --------------------------------------------------------------------------------- flag values
FLAG_CASES = {  # case: (replaced flags, what the error must name)
    "img_size_10": ({"--img_size": "10"}, ["--img_size", "10"]),
    "channel_2": ({"--channel": "2"}, ["--channel", "2"]),
    "batch_larger_than_train_set": ({"--batch_size": "17"}, ["--batch_size", "16 images"]),
    "num_epochs_0": ({"--num_epochs": "0"}, ["--num_epochs"]),
    "batch_size_0": ({"--batch_size": "0"}, ["--batch_size"]),
    "out_filters_0": ({"--child_out_filters": "0"}, ["--child_out_filters"]),
    "out_filters_5": ({"--child_out_filters": "5"}, ["--child_out_filters", "even"]),
    "num_cells_0": ({"--child_num_cells": "0"}, ["--child_num_cells"]),
    "num_layers_negative": ({"--child_num_layers": "-1"}, ["--child_num_layers"]),
    "keep_prob_0": ({"--child_keep_prob": "0"}, ["--child_keep_prob"]),
    "n_aug_img_0": ({"--n_aug_img": "0"}, ["--n_aug_img"]),
    "img_size_not_a_number": ({"--img_size": "big"}, ["img_size"]),
    "clip_mode_unknown": ({"--child_clip_mode": "value"}, ["--child_clip_mode", "value"]),
    "lr_min_above_lr_max": ({"--child_lr_min": "0.1"}, ["--child_lr_min", "--child_lr_max", "0.1"]),
    "seed_negative": ({"--seed": "-1"}, ["--seed", "-1"]),
    "l2_reg_nan": ({"--child_l2_reg": "nan"}, ["--child_l2_reg", "nan"]),
}


def _with(base, replace):
    args = list(base)
    for name, value in replace.items():
        if name in args:
            args[args.index(name) + 1] = value
        else:
            args += [name, value]
    return args


ONE_PS, TWO_WORKERS = "127.0.0.1:2220", "127.0.0.1:2221,127.0.0.1:2222"
CLUSTER_CASES = {  # main_child_trainer.py only; case: (added flags, what the error must name)
    "job_name_chief": ({"--job_name": "chief", "--ps_hosts": ONE_PS, "--worker_hosts": TWO_WORKERS},
                       ["--job_name", "chief"]),
    "ps_hosts_missing": ({"--job_name": "worker", "--worker_hosts": TWO_WORKERS}, ["--ps_hosts"]),
    "worker_host_without_port": ({"--job_name": "worker", "--ps_hosts": ONE_PS, "--worker_hosts": "localhost"},
                                 ["--worker_hosts", "host:port"]),
    "task_index_too_large": ({"--job_name": "worker", "--task_index": "2", "--ps_hosts": ONE_PS,
                              "--worker_hosts": TWO_WORKERS}, ["--task_index", "2"]),
    "num_aggregate_above_workers": ({"--job_name": "worker", "--ps_hosts": ONE_PS, "--worker_hosts": TWO_WORKERS,
                                     "--child_num_aggregate": "3"}, ["--child_num_aggregate", "3"]),
    "sync_timeout_0": ({"--job_name": "worker", "--ps_hosts": ONE_PS, "--worker_hosts": TWO_WORKERS,
                        "--sync_timeout_secs": "0"}, ["--sync_timeout_secs"]),
}


@pytest.mark.parametrize("case", sorted(CLUSTER_CASES))
def test_bad_cluster_flag(case, runner, data, tmp_path):  # noqa: F811
    _, dirs = data
    replace, names = CLUSTER_CASES[case]
    _refused(runner, dirs, [], tmp_path, names, "final", base=_with(FINAL, replace))


@pytest.mark.parametrize("mode", ["final", "search"])
@pytest.mark.parametrize("case", sorted(FLAG_CASES))
def test_bad_flag_value(case, mode, runner, data, tmp_path):  # noqa: F811
    _, dirs = data
    replace, names = FLAG_CASES[case]
    _refused(runner, dirs, [], tmp_path, names, mode, base=_with(ARGS[mode], replace))


def test_bad_shared_init(runner, data, tmp_path):  # noqa: F811
    _, dirs = data
    _refused(runner, dirs, [], tmp_path, ["--child_shared_init", "zeros"], "search",
             base=_with(ARGS["search"], {"--child_shared_init": "zeros"}))


@pytest.mark.parametrize("replace,names", [
    ({"--controller_baseline": "mean"}, ["--controller_baseline", "mean"]),
    ({"--controller_baseline": "loo", "--controller_num_aggregate": "1"},
     ["--controller_baseline loo", "--controller_num_aggregate", "1"]),
    ({"--controller_reward_batch_from_epoch": "1"},
     ["--controller_reward_batch_size", "--controller_reward_batch_from_epoch"])])
def test_bad_controller_reward_flags(replace, names, runner, data, tmp_path):  # noqa: F811
    _, dirs = data
    _refused(runner, dirs, [], tmp_path, names, "search", base=_with(ARGS["search"], replace))


def test_warmup_not_shorter_than_the_search(runner, data, tmp_path):  # noqa: F811
    _, dirs = data
    epochs = ARGS["search"][ARGS["search"].index("--num_epochs") + 1]
    _refused(runner, dirs, [], tmp_path, ["--uniform_warmup_epochs", epochs], "search",
             base=_with(ARGS["search"], {"--uniform_warmup_epochs": epochs}))


def test_baseline_decay_above_1(runner, data, tmp_path):  # noqa: F811
    """--controller_bl_dec 1.5 made the baseline NaN many steps on; now it stops at once."""
    _, dirs = data
    _refused(runner, dirs, [], tmp_path, ["--controller_bl_dec", "[0, 1)", "1.5"], "search",
             base=_with(ARGS["search"], {"--controller_bl_dec": "1.5"}))


@pytest.fixture(scope="module")
def flag_defaults():
    """{mode: {flag: (default, absl type: "int", "float", "string", "bool")}} of both scripts, each
    from a fresh process (absl defines a flag once per process)."""
    code = ("import json, sys, enas_flags; enas_flags.define_flags(sys.argv[1]); F = enas_flags.FLAGS; "
            "F(['x']); print(json.dumps({n: (F[n].value, F[n].flag_type()) for n in enas_flags.user_flags}))")
    found = {}
    for mode in ("search", "final"):
        r = subprocess.run([sys.executable, "-c", code, mode], cwd=ROOT, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr[-2000:]
        found[mode] = json.loads(r.stdout)
    return found


def _default_flags(flag_defaults, mode):
    """A mode's flags at their defaults (an arc for the retraining), as check_flags reads them."""
    values = {name: value for name, (value, _) in flag_defaults[mode].items()}
    return types.SimpleNamespace(**dict(values, child_fixed_arc=None if mode == "search" else ARC16))


def _modes_of(flag_defaults, name):
    return [mode for mode in ("search", "final") if name in flag_defaults[mode]]


def test_every_numeric_flag_has_a_checked_range(flag_defaults):
    """Every int and float flag of both scripts is in enas_flags.RANGES (or is --channel or
    --img_size, checked by _check_data_flags), and the defaults pass check_flags."""
    checked = {name for name, _ in enas_flags.RANGES} | {"channel", "img_size"}
    for mode, defaults in flag_defaults.items():
        numeric = {name for name, (_, kind) in defaults.items() if kind in ("int", "float")}
        assert numeric <= checked, sorted(numeric - checked)
        enas_flags.check_flags(_default_flags(flag_defaults, mode), mode)


def _outside(low, low_included, high, high_included, is_int):
    """Values outside an interval (enas_flags.bounds): below it, above it, and for floats NaN."""
    if is_int:
        below = st.integers(max_value=math.ceil(low) - 1 if low_included else math.floor(low))
        above = (st.nothing() if high == math.inf else
                 st.integers(min_value=math.floor(high) + 1 if high_included else math.ceil(high)))
        return below | above
    above = st.just(math.inf) if high == math.inf else st.floats(min_value=high, exclude_min=high_included)
    return st.floats(max_value=low, exclude_max=low_included) | above | st.just(math.nan)


def _inside(low, low_included, high, high_included, is_int):
    if is_int:
        first = math.ceil(low) if low_included else math.floor(low) + 1
        if high == math.inf:
            return st.integers(first, first + 10 ** 9)
        return st.integers(first, math.floor(high) if high_included else math.ceil(high) - 1)
    finite = high != math.inf
    return st.floats(low, high if finite else None, exclude_min=not low_included,
                     exclude_max=finite and not high_included, allow_nan=False, allow_infinity=False)


# Flags whose rule is more than an interval: (values inside, values outside).
NOT_AN_INTERVAL = {
    "channel": (st.sampled_from([1, 3, None]), st.integers().filter(lambda c: c not in (1, 3))),
    "img_size": (st.integers(1, 10 ** 4).map(lambda k: 4 * k),
                 st.integers().filter(lambda s: s <= 0 or s % 4)),
    "child_out_filters": (st.integers(1, 10 ** 4).map(lambda k: 2 * k),
                          st.integers().filter(lambda f: f <= 0 or f % 2)),
}


def _draw_value(data, flag_defaults, mode, name, inside):
    """A value of flag name in mode, drawn inside or outside its range."""
    if name in NOT_AN_INTERVAL:
        return data.draw(NOT_AN_INTERVAL[name][0 if inside else 1])
    limits = enas_flags.bounds(_default_flags(flag_defaults, mode), dict(enas_flags.RANGES)[name])
    is_int = flag_defaults[mode][name][1] == "int"
    return data.draw((_inside if inside else _outside)(*limits, is_int))


NUMERIC_FLAGS = ["channel", "img_size"] + [name for name, _ in enas_flags.RANGES]


@pytest.mark.parametrize("name", NUMERIC_FLAGS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_numeric_flag_out_of_range_is_one_line_naming_it(flag_defaults, name, data):
    """Every numeric flag, in each script that has it, at a value outside its range (NaN and
    infinities too): check_flags stops on it with one line naming it; inside its range, never
    on it."""
    for mode in _modes_of(flag_defaults, name):
        flags = _default_flags(flag_defaults, mode)
        setattr(flags, name, _draw_value(data, flag_defaults, mode, name, inside=False))
        with pytest.raises(errors.UserError) as err:
            enas_flags.check_flags(flags, mode)
        assert str(err.value).startswith("--{} must be ".format(name)) and "\n" not in str(err.value)
        setattr(flags, name, _draw_value(data, flag_defaults, mode, name, inside=True))
        try:
            enas_flags.check_flags(flags, mode)
        except errors.UserError as e:  # a bound of another flag's range (--child_lr_max, --num_epochs)
            assert not str(e).startswith("--{} ".format(name)), str(e)


def test_bad_mixed_precision(runner, data, tmp_path):  # noqa: F811
    _, dirs = data
    _refused(runner, dirs, [], tmp_path, ["--mixed_precision", "float8"], "final",
             base=_with(FINAL, {"--mixed_precision": "float8"}))


def test_output_dir_is_a_file(runner, data, tmp_path):  # noqa: F811
    _, dirs = data
    path = str(tmp_path / "results.txt")
    with open(path, "w") as f:
        f.write("precious\n")
    _refused(runner, dirs, ["--output_dir", path], tmp_path, ["--output_dir", path])
    with open(path) as f:
        assert f.read() == "precious\n"


def test_output_dir_not_writable(runner, data, tmp_path):  # noqa: F811
    if os.geteuid() == 0:
        pytest.skip("runs as root: folder permissions do not bind, the run would succeed")
    _, dirs = data
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o500)
    try:
        _refused(runner, dirs, ["--output_dir", str(out)], tmp_path, ["--output_dir", str(out)])
        assert os.listdir(str(out)) == []
    finally:
        out.chmod(0o700)


# --------------------------------------------------------------------------- --child_fixed_arc
def _arc_file(tmp_path, content, mode="w"):
    path = str(tmp_path / "arc.txt")
    with open(path, mode) as f:
        f.write(content)
    return path


BAD_ARC_TEXT = {
    "negative_index": "-1 0 1 2 1 4 2 3 1 0 0 3 2 4 1 2",
    "float": "0 0 1 2 1 4 2 3 1 0 0 3 2 4 1 2.0",
    "commas": "0,0,1,2,1,4,2,3,1,0,0,3,2,4,1,2",
    "too_many": ARC16 + " 0",
    "whitespace_only": "   ",
    "reduce_cell_forward_index": "0 0 1 2 1 4 2 3 1 0 0 3 3 4 1 2",
    "a_folder_name": ROOT,
    "wrong_length": "0 0 1 2 1 4 2 3 1 0 0 3 2 4 1",
    "forward_index": "2 0 1 2 1 4 2 3 1 0 0 3 2 4 1 2",
    "op_7": "0 0 1 2 1 4 2 3 1 0 0 3 2 4 1 7",
    "non_integer": "0 0 1 2 1 4 2 3 1 0 0 3 2 4 1 x",
    "superscript_digit": "0 0 1 2 1 4 2 3 1 0 0 3 2 4 1 \u00b9",  # isdigit() but not int()
}


@pytest.mark.parametrize("case", sorted(BAD_ARC_TEXT))
def test_malformed_fixed_arc(case, runner, data, tmp_path):  # noqa: F811
    _, dirs = data
    _refused(runner, dirs, [], tmp_path, "--child_fixed_arc",
             base=_with(FINAL, {"--child_fixed_arc": BAD_ARC_TEXT[case]}))


def test_fixed_arc_missing(runner, data, tmp_path):  # noqa: F811
    _, dirs = data
    base = FINAL[:FINAL.index("--child_fixed_arc")] + FINAL[FINAL.index("--child_fixed_arc") + 2:]
    _refused(runner, dirs, [], tmp_path, "--child_fixed_arc", base=base)


def test_fixed_arc_empty_string(runner, data, tmp_path):  # noqa: F811
    _, dirs = data
    _refused(runner, dirs, [], tmp_path, ["--child_fixed_arc", "required"],
             base=_with(FINAL, {"--child_fixed_arc": ""}))


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00\x81 binary", b"0 0 1 2"],
                         ids=["empty_file", "binary_file", "short_file"])
def test_fixed_arc_file_bad_contents(content, runner, data, tmp_path):  # noqa: F811
    _, dirs = data
    path = _arc_file(tmp_path, content, "wb")
    _refused(runner, dirs, [], tmp_path, "--child_fixed_arc",
             base=_with(FINAL, {"--child_fixed_arc": path}))


def test_fixed_arc_file_on_two_lines_gives_one_line(runner, data, tmp_path):  # noqa: F811
    _, dirs = data
    path = _arc_file(tmp_path, "0 0 1 2 1 4 2 3\n1 0 0 3 2 4 1\n")  # 15 integers
    _refused(runner, dirs, [], tmp_path, "--child_fixed_arc",
             base=_with(FINAL, {"--child_fixed_arc": path}))


def test_fixed_arc_file_on_two_lines_is_accepted(runner, data, tmp_path):  # noqa: F811
    """A well-formed arc may be split over lines (e.g. normal cell, then reduction cell)."""
    _, dirs = data
    path = _arc_file(tmp_path, "0 0 1 2 1 4 2 3\n1 0 0 3 2 4 1 2\n")
    run, _ = _run(runner, dirs, [], tmp_path, base=_with(FINAL, {"--child_fixed_arc": path}))
    assert run.returncode == 0, run.stderr[-3000:]


ARC_TEXT = st.one_of(
    st.text(max_size=80),
    st.lists(st.one_of(st.integers(-3, 9).map(str), st.sampled_from(["x", "1.5", "\u00b2", ""])),
             max_size=44).map(" ".join),
    st.lists(st.integers(0, 6).map(str), min_size=8, max_size=40).map(" ".join),
)


@settings(max_examples=300, deadline=None)
@given(text=ARC_TEXT, num_cells=st.integers(1, 5))
def test_parse_arc_random_text_only_user_error(text, num_cells):
    try:
        normal, reduce = search_space.parse_arc(text, num_cells)
    except errors.UserError as e:
        assert "--child_fixed_arc" in str(e)
        return
    # accepted: then it is a valid arc that prints back to the same integers
    assert len(normal) == len(reduce) == 4 * num_cells
    assert search_space.arc_to_string(normal, reduce).split() == text.split()
    for cell in (normal, reduce):
        for pos, value in enumerate(cell):
            assert 0 <= value < (pos // 4 + 2 if pos % 2 == 0 else search_space.NUM_OPS)


@example(text="0 0 1\n2", num_cells=1)
@settings(max_examples=100, deadline=None)
@given(text=ARC_TEXT, num_cells=st.integers(1, 5))
def test_parse_arc_error_is_one_line(text, num_cells):
    try:
        search_space.parse_arc(text, num_cells)
    except errors.UserError as e:
        assert "\n" not in str(e) and "\r" not in str(e), repr(str(e))


def test_checkpoint_of_another_graph_is_refused_and_kept(runner, data, tmp_path):  # noqa: F811
    """Same flags, but the latest checkpoint holds other variables (as one written by an older
    version of this code): one line naming --output_dir, and the checkpoints are not touched."""
    import tensorflow.compat.v1 as tf
    _, dirs = data
    first, out = _run(runner, dirs, [], tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    with tf.Graph().as_default():
        tf.get_variable("some_old_layer", [3], initializer=tf.zeros_initializer())
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver().save(sess, os.path.join(out, "model.ckpt"), global_step=999)
    checkpoints = lambda: {name: os.path.getmtime(os.path.join(out, name))  # noqa: E731
                           for name in os.listdir(out) if name.startswith(("model.ckpt", "checkpoint"))}
    kept = checkpoints()
    run, _ = _run(runner, dirs, ["--num_epochs", "2"], tmp_path)
    assert_one_line_error(run, ["--output_dir", "does not fit this model"])
    assert checkpoints() == kept
