"""Bad input to the entry scripts: exit status 2, one `error: ...` line, no traceback, nothing written.

Runs go through test_reliability.ForkRunner: real processes running trainer.main(mode) as the
scripts do, forked from a server that imported TensorFlow once (a fresh interpreter spends ~10 s
on that import on the shared CI machine). test_real_cli_gives_the_same_error checks one case
against a real `python main_child_trainer.py` process.
"""
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

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
     ["--controller_baseline loo", "--controller_num_aggregate", "1"])])
def test_bad_controller_baseline(replace, names, runner, data, tmp_path):  # noqa: F811
    _, dirs = data
    _refused(runner, dirs, [], tmp_path, names, "search", base=_with(ARGS["search"], replace))


def test_warmup_not_shorter_than_the_search(runner, data, tmp_path):  # noqa: F811
    _, dirs = data
    epochs = ARGS["search"][ARGS["search"].index("--num_epochs") + 1]
    _refused(runner, dirs, [], tmp_path, ["--uniform_warmup_epochs", epochs], "search",
             base=_with(ARGS["search"], {"--uniform_warmup_epochs": epochs}))


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
