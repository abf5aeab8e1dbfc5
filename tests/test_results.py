"""Tests of the result tools: cell diagrams, progress plots, SavedModel export and predict.py."""
import os
import subprocess
import sys
import types

import cv2
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import export
import progress
import errors
import search_space
import visualize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARC8 = "0 0 1 2 1 4 2 3 1 0 0 3 2 4 1 2"  # child_num_cells 2


def random_arc(num_cells, rng):
    """A random valid arc string: node n takes two inputs < n and two ops in 0..4."""
    values = []
    for _ in range(2):
        for n in range(2, num_cells + 2):
            values += [rng.integers(0, n), rng.integers(0, 5), rng.integers(0, n), rng.integers(0, 5)]
    return " ".join(str(int(v)) for v in values)


def _check_png(path):
    assert os.path.isfile(path), path
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(path)
    assert img is not None, path
    h, w = img.shape[:2]
    assert 200 <= w <= 3000 and 200 <= h <= 3000, (path, img.shape)
    assert os.path.getsize(path) < 200 * 1024
    return img


@pytest.mark.parametrize("name,arc,num_cells", [
    ("mnist", search_space.MNIST_ARC, 5), ("cifar10", search_space.CIFAR10_ARC, 5), ("random", random_arc(5, np.random.default_rng(1)), 5),
    ("random7", random_arc(7, np.random.default_rng(2)), 7), ("small", ARC8, 2)])
def test_draw_arc_writes_two_pngs(tmp_path, name, arc, num_cells):
    paths = visualize.draw_arc(arc, str(tmp_path), num_cells=num_cells, prefix=name + "_")
    assert [os.path.basename(p) for p in paths] == [name + "_normal.png", name + "_reduction.png"]
    for p in paths:
        img = _check_png(p)
        assert (img == 255).mean() > 0.5  # white background


def test_draw_arc_from_file_and_random_cells(tmp_path):
    arc_file = tmp_path / "best_arc.txt"
    arc_file.write_text(search_space.MNIST_ARC + "\n")
    paths = visualize.draw_arc(str(arc_file), str(tmp_path / "out"), prefix="best_arc_")
    for p in paths:
        _check_png(p)
    rng = np.random.default_rng(0)
    for _ in range(20):  # draw_cell works for any valid cell
        b = int(rng.integers(1, 8))
        normal, _ = search_space.parse_arc(random_arc(b, rng), b)
        img = visualize.draw_cell(normal, "random")
        assert img.dtype == np.uint8 and img.ndim == 3 and min(img.shape[:2]) >= 200


@pytest.mark.parametrize("arc", [search_space.MNIST_ARC, search_space.CIFAR10_ARC])
def test_diagram_labels_sit_by_their_own_edge(arc):
    """No op label comes within LABEL_CLEARANCE px of a box that is not an end of its edge (so it
    cannot read as another node's), and identity edges are coloured apart from the unused-node grey."""
    for cell in search_space.parse_arc(arc, 5):
        b, edges, out_id = visualize._cell_graph(cell)
        pos = visualize._layout(b, edges, out_id)
        for (src, dst, op), (_, rect) in zip(edges, visualize._route(edges, pos)):
            if rect is None:
                continue
            for n, p in pos.items():
                if n not in (src, dst):
                    assert not visualize._overlap(rect, visualize._box(p, pad=visualize.LABEL_CLEARANCE)), \
                        (cell, src, dst, n)
    identity = np.array(visualize.OP_COLORS[search_space.OP_NAMES.index("identity")], float)
    assert np.abs(identity - np.array(visualize.CONCAT_COLOR, float)).max() >= 100


def test_draw_arc_rejects_bad_arc(tmp_path):
    with pytest.raises(errors.UserError):
        visualize.draw_arc("0 0 5 1", str(tmp_path))
    r = subprocess.run([sys.executable, "visualize.py", "1 2 3", "--output_dir", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "error:" in r.stderr


def test_accuracy_zoom_panel_where_the_run_spends_its_time():
    """A run that climbs to 0.93-1.0 early gets a zoomed panel of its later half; its y range is
    that band, not 0-1. A run still climbing steadily gets none."""
    epochs = list(range(1, 21))
    plateau = [0.1, 0.5, 0.8, 0.9] + [0.93 + 0.07 * k / 16.0 for k in range(16)]
    label, late = progress.zoom_panel("accuracy", {"valid_acc": (epochs, plateau)})
    xs, ys = late["valid_acc"]
    assert xs[0] == 11 and xs[-1] == 20 and min(ys) >= 0.93 and "zoomed" in label
    assert progress.zoom_panel("accuracy", {"valid_acc": (epochs, [e / 20.0 for e in epochs])}) is None
    img = progress.draw_panels([("accuracy", {"valid_acc": (epochs, plateau)}), (label, late)], "t")
    assert img.shape[0] > progress.PANEL_H * 2


def test_progress_log_resume_and_plots(tmp_path):
    out = str(tmp_path)
    log = progress.ProgressLog(out)
    for e in range(1, 6):
        log.add(e, loss=2.0 / e, valid_acc=0.2 * e - 0.1, test_acc=0.2 * e - 0.15,
                baseline=0.1 * e, entropy=10.0 - e)
    with open(os.path.join(out, progress.PROGRESS_FILE), "a") as f:
        f.write("6\tloss\t0.3")  # a torn last line
    again = progress.ProgressLog(out, keep_up_to=4)
    assert again.series("loss")[0] == [1, 2, 3, 4]
    assert again.series("valid_acc")[1][0] == pytest.approx(0.1)
    again.add(5, loss=0.5)
    assert progress.ProgressLog(out).series("loss") == ([1, 2, 3, 4, 5], again.series("loss")[1])
    with open(os.path.join(out, "arcs.tsv"), "w") as f:
        f.write("epoch\tsource\tarc\tvalid_acc\tn_images\n")
        for e in range(1, 5):
            for k in range(3):
                f.write("{}\tsample\t0 0 1 1\t{:.4f}\t16\n".format(e, 0.1 * e + 0.01 * k))
        f.write("4\tfinal\t0 0 1 1\t0.9000\t16\n")
    assert progress.read_sampled_acc(os.path.join(out, "arcs.tsv"))[2] == pytest.approx(0.21)
    for path in (progress.plot_train_progress(again, os.path.join(out, "train_progress.png")),
                 progress.plot_search_progress(os.path.join(out, "arcs.tsv"), out,
                                               os.path.join(out, "search_progress.png")),
                 again.plot(os.path.join(out, "one.png"), ["valid_acc", "test_acc"], "accuracy"),
                 progress.plot_train_progress(progress.ProgressLog(str(tmp_path / "empty")),
                                              os.path.join(out, "empty.png"))):
        _check_png(path)


# ------------------------------------------------------------------- export and predict.py
def _flags(**over):
    f = dict(child_num_layers=1, child_num_cells=2, child_out_filters=4, child_keep_prob=0.9,
             child_drop_path_keep_prob=0.9, child_use_aux_heads=True, child_l2_reg=1e-4,
             child_grad_bound=5.0, child_clip_mode="global", child_lr_max=0.05, child_lr_min=0.0005, child_lr_T_0=10,
             child_lr_T_mul=2, num_epochs=1, data_format="NHWC", batch_size=16, seed=0,
             child_cutout_size=None, child_random_crop_pad=0, child_random_flip=False, num_threads=2,
             mixed_precision="none", child_recompute="none")
    f.update(over)
    return types.SimpleNamespace(**f)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny fixed-arc model trained a few steps in-process, its eval predictions on the test
    split (the trainer's eval graph), and its export."""
    import data_utils
    import graph as graph_lib
    from helpers import make_png_dataset
    root = tmp_path_factory.mktemp("results")
    dirs = make_png_dataset(root / "data", num_classes=3, per_class=(16, 4, 5), size=8, channel=3)
    data = data_utils.read_data(*dirs, channel=3, img_size=8, n_aug_img=1)
    flags = _flags()
    fixed_arc = search_space.parse_arc(ARC8, flags.child_num_cells)
    out = str(root / "final")
    os.makedirs(out)
    with tf.Graph().as_default():
        tf.set_random_seed(0)
        g = graph_lib.build(flags, data, fixed_arc)
        with tf.Session(config=graph_lib.session_config(flags)) as sess:
            sess.run(g.init_op)
            for _ in range(4):
                sess.run(g.train.train_op)
            g.saver.save(sess, os.path.join(out, "model.ckpt"), global_step=4, write_meta_graph=False)
            sess.run(g.eval_init["test"])
            preds = []
            while True:
                try:
                    preds.append(sess.run(g.eval_predictions, g.feed(sess, "test")))
                except tf.errors.OutOfRangeError:
                    break
    export_dir = export.export_from_checkpoint(flags, data, fixed_arc, out)
    return types.SimpleNamespace(data=data, flags=flags, arc=fixed_arc, out=out, dirs=dirs,
                                 export_dir=export_dir, eval_preds=np.concatenate(preds))


def test_export_matches_eval_predictions(trained):
    from predict import Predictor
    assert trained.export_dir == os.path.join(trained.out, "saved_model")
    with open(os.path.join(trained.out, "labels.txt")) as f:
        assert f.read().splitlines() == trained.data["class_names"]
    p = Predictor(trained.export_dir)
    assert (p.img_size, p.channel) == (8, 3)
    probs = p.predict(trained.data["images"]["test"])  # uint8, normalised inside the graph
    assert probs.shape == (len(trained.data["labels"]["test"]), 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(np.argmax(probs, axis=1), trained.eval_preds)


def test_export_refuses_foreign_folder_and_replaces_own(trained, tmp_path):
    foreign = tmp_path / "saved_model"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep me")
    with pytest.raises(errors.UserError, match="not overwriting"):
        export.export_from_checkpoint(trained.flags, trained.data, trained.arc, trained.out,
                                      export_dir=str(foreign))
    assert (foreign / "mine.txt").read_text() == "keep me"
    again = export.export_from_checkpoint(trained.flags, trained.data, trained.arc, trained.out)
    assert os.path.isfile(os.path.join(again, "saved_model.pb"))
    assert not [n for n in os.listdir(trained.out) if n.startswith(".tmp_")]
    with pytest.raises(errors.UserError, match="no checkpoint"):
        export.export_from_checkpoint(trained.flags, trained.data, trained.arc, str(tmp_path))


def test_predict_cli_on_folder(trained, tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(3):  # other sizes and gray: converted as in training
        name = str(folder / ("sub" if i == 2 else "") / "img{}.png".format(i))
        cv2.imwrite(name, rng.integers(0, 256, (12, 12) if i == 1 else (8, 8, 3)).astype(np.uint8))
        names.append(name)
    (folder / "notes.txt").write_text("not an image")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    r = subprocess.run([sys.executable, "predict.py", trained.export_dir, str(folder)], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    if not os.path.exists("/dev/nvidiactl"):  # no GPU driver: CUDA's failing cuInit is expected
        assert "cuInit" not in r.stderr
    lines = r.stdout.strip().splitlines()
    assert [l.split("\t")[0] for l in lines] == sorted(names)
    for line in lines:
        path, cls, prob = line.split("\t")
        assert cls in trained.data["class_names"]
        assert 0.0 <= float(prob) <= 1.0 and len(prob.split(".")[1]) == 4
    bad = subprocess.run([sys.executable, "predict.py", trained.export_dir, str(tmp_path / "nope.png")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error:")


def test_predict_into_a_closed_pipe_ends_quietly(trained, tmp_path):
    """`predict.py ... | head -1`: the reader closes the pipe after one line; predict stops
    without a traceback and with status 0."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(3000):  # more output (about 200 KB) than a pipe buffer holds
        cv2.imwrite(str(folder / "image_{:05d}_of_a_long_name.png".format(i)), np.full((8, 8, 3), i % 256, np.uint8))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    p = subprocess.Popen([sys.executable, "predict.py", trained.export_dir, str(folder)], cwd=ROOT,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.readline()
    p.stdout.close()  # as `head -1` does
    stderr = p.stderr.read().decode()
    assert p.wait(timeout=300) == 0, stderr[-2000:]
    assert first.decode().startswith(str(folder))
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_visualize_draws_without_tensorflow(tmp_path):
    """Drawing a cell needs no TensorFlow: visualize.py imports none (python -X importtime)."""
    arc = search_space.MNIST_ARC
    r = subprocess.run([sys.executable, "-X", "importtime", "visualize.py", arc, "--output_dir",
                        str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(os.listdir(tmp_path)) == ["normal.png", "reduction.png"]
    imported = [line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line]
    assert "cv2" in imported and not [m for m in imported if m.startswith("tensorflow")]
