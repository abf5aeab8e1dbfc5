"""The authors' final-training recipe: pad-and-crop and flip augmentation on every batch
(--child_random_crop_pad, --child_random_flip), cutout after them, and training on train + valid
with no validation pass (--train_with_valid)."""
import os
import re
import subprocess
import sys
import types

import cv2
import numpy as np
import tensorflow.compat.v1 as tf

import data_utils
import graph as graph_lib
import search_space
from helpers import data_flags, make_png_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_random_crop_keeps_the_size_and_shifts_by_at_most_pad():
    """One bright pixel per image: after pad 2 and a random crop it moved by at most 2 pixels
    per axis (or left the window), the shape is unchanged, and the crops differ."""
    images = np.zeros([64, 8, 8, 1], np.float32)
    images[:, 4, 3] = 1.0
    out = data_utils.random_crop_flip(images, 2, False, np.random.default_rng(0))
    assert out.shape == images.shape
    moves = set()
    for img in out:
        ys, xs = np.nonzero(img[..., 0])
        assert len(ys) <= 1
        if len(ys):
            assert abs(ys[0] - 4) <= 2 and abs(xs[0] - 3) <= 2
            moves.add((ys[0] - 4, xs[0] - 3))
    assert len(moves) > 5


def test_random_flip_mirrors_about_half_the_images_left_right():
    images = np.random.default_rng(1).random([200, 6, 6, 3]).astype(np.float32)
    out = data_utils.random_crop_flip(images.copy(), 0, True, np.random.default_rng(2))
    same = np.all(out == images, axis=(1, 2, 3))
    mirrored = np.all(out == images[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(same | mirrored)
    assert 60 < mirrored.sum() < 140


def test_train_batches_crop_flip_then_cutout(tmp_path):
    """In the pipeline: the image size is kept, and the cutout square (zeros after
    normalisation) is still cut after the crop and flip."""
    dirs = make_png_dataset(tmp_path, num_classes=2, per_class=(8, 2, 2), size=12, channel=3)
    data = data_utils.read_data(*dirs, channel=3, img_size=12, n_aug_img=2)
    with tf.Graph().as_default():
        ds = data_utils.train_dataset(data, 8, seed=0, cutout_size=4, crop_pad=0, flip=True)
        assert ds.element_spec[0].shape.as_list() == [None, 12, 12, 3]
        x, _ = tf.data.make_one_shot_iterator(ds).get_next()
        with tf.Session() as sess:
            batch = sess.run(x)
    assert batch.shape == (8, 12, 12, 3)
    assert all((img == 0).all(axis=-1).sum() >= 4 for img in batch)  # a clipped 4x4 square


def test_train_with_valid_trains_on_both_folders(tmp_path):
    dirs = make_png_dataset(tmp_path, num_classes=2, per_class=(8, 3, 2), size=8)
    plain = data_utils.read_data(*dirs, channel=1, img_size=8, n_aug_img=1)
    both = data_utils.read_data(*dirs, channel=1, img_size=8, n_aug_img=1, train_with_valid=True)
    assert len(both["labels"]["train"]) == 16 + 6
    np.testing.assert_array_equal(both["images"]["train"][16:], plain["images"]["valid"])
    all_images = np.concatenate([plain["images"]["train"], plain["images"]["valid"]])
    np.testing.assert_allclose(both["mean"], all_images.reshape(-1, 1).mean(0), rtol=1e-5)


def _stripes(root, per_class, size=12, seed=0):
    """Two classes that crops and flips keep apart: horizontal or vertical stripes (random
    phase, noise), grey PNGs in root/{train,valid,test}/{h,v}."""
    rng = np.random.default_rng(seed)
    for split, count in zip(("train", "valid", "test"), per_class):
        for name, axis in (("h", 0), ("v", 1)):
            os.makedirs(os.path.join(root, split, name))
            for i in range(count):
                line = (np.arange(size) + rng.integers(4)) % 4 < 2
                img = np.where(line[:, None] if axis == 0 else line[None, :], 200, 40)
                img = np.clip(img + rng.normal(0, 25, (size, size)), 0, 255).astype(np.uint8)
                assert cv2.imwrite(os.path.join(root, split, name, "%d.png" % i), img)
    return [os.path.join(root, s) for s in ("train", "valid", "test")]


def test_authors_recipe_learns(tmp_path):
    """The authors' augmentation (pad 2, flip, cutout 4) on train + valid: test accuracy rises
    from chance to at least 0.85 in 60 steps of a small fixed-arc child."""
    dirs = _stripes(str(tmp_path), (24, 8, 20))
    data = data_utils.read_data(*dirs, channel=1, img_size=12, n_aug_img=1, train_with_valid=True)
    flags = types.SimpleNamespace(
        child_num_layers=0, child_num_cells=2, child_out_filters=8, child_keep_prob=1.0,
        child_drop_path_keep_prob=0.8, child_use_aux_heads=True, child_l2_reg=1e-4,
        child_grad_bound=5.0, child_clip_mode="global", child_lr_max=0.05, child_lr_min=0.0005,
        child_lr_T_0=10, child_lr_T_mul=2, num_epochs=20, data_format="NHWC", batch_size=16,
        seed=0, child_cutout_size=4, child_random_crop_pad=2, child_random_flip=True,
        num_threads=0, mixed_precision="none", child_recompute="none")
    arc = search_space.parse_arc("0 0 1 2 1 4 2 3 1 0 0 3 2 4 1 2", 2)

    def test_accuracy(sess, g):
        sess.run(g.eval_init["test"])
        correct = 0
        while True:
            try:
                correct += sess.run(g.eval_correct, g.feed(sess, "test"))
            except tf.errors.OutOfRangeError:
                return correct / float(len(data["labels"]["test"]))
    with tf.Graph().as_default():
        tf.set_random_seed(0)
        g = graph_lib.build(flags, data, arc)
        with tf.Session(config=graph_lib.session_config(flags)) as sess:
            sess.run(g.init_op)
            before = test_accuracy(sess, g)
            for _ in range(60):
                sess.run(g.train.train_op)
            after = test_accuracy(sess, g)
    assert before < 0.7 and after >= 0.85, (before, after)


def test_cli_train_with_valid_has_no_validation_pass(tmp_path):
    dirs = make_png_dataset(tmp_path / "data", num_classes=3, per_class=(16, 4, 4), size=8)
    r = subprocess.run([sys.executable, "main_child_trainer.py"] + data_flags(dirs) + [
        "--img_size", "8", "--child_num_layers", "0", "--child_num_cells", "2",
        "--child_out_filters", "4", "--batch_size", "16", "--num_epochs", "1", "--n_aug_img", "1",
        "--child_fixed_arc", "0 0 1 2 1 4 2 3 1 0 0 3 2 4 1 2", "--train_with_valid",
        "--child_random_crop_pad", "1", "--child_random_flip", "--child_cutout_size", "2",
        "--output_dir", str(tmp_path / "final")], cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "train + valid: 60 training images (--train_with_valid)" in r.stdout
    assert "Training: 1 epochs of 4 child steps (4 steps)" in r.stdout  # 60 / 16
    assert not re.search(r"^valid_accuracy", r.stdout, re.M)
    assert re.search(r"^test_accuracy: [01]\.\d{4}", r.stdout, re.M)
