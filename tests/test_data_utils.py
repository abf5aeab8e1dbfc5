"""Tests for data_utils: reading folders, augmentation, cutout and the tf.data pipelines."""
import os

import cv2
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import data_utils
import reward
from helpers import make_png_dataset
from errors import UserError


def _read(dirs, channel=1, img_size=12, n_aug_img=1, **kw):
    return data_utils.read_data(*dirs, channel=channel, img_size=img_size,
                                n_aug_img=n_aug_img, **kw)


def _take(ds, n):
    """First n elements of a dataset as numpy (images, labels) pairs."""
    with tf.Graph().as_default():
        nxt = tf.data.make_one_shot_iterator(ds()).get_next()
        with tf.Session() as sess:
            return [sess.run(nxt) for _ in range(n)]


def _take_all(ds):
    with tf.Graph().as_default():
        nxt = tf.data.make_one_shot_iterator(ds()).get_next()
        out = []
        with tf.Session() as sess:
            while True:
                try:
                    out.append(sess.run(nxt))
                except tf.errors.OutOfRangeError:
                    return out


@pytest.fixture
def dirs(tmp_path):
    return make_png_dataset(tmp_path, num_classes=3, per_class=(8, 2, 2), size=12)


@pytest.fixture
def data(dirs):
    return _read(dirs)


def test_labels_follow_sorted_folder_names(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "valid", "test"):
        for name, value in (("b", 100), ("a", 10), ("c", 200)):
            os.makedirs(tmp_path / split / name)
            img = np.full((4, 4), value, np.uint8) + rng.integers(0, 2, (4, 4)).astype(np.uint8)
            cv2.imwrite(str(tmp_path / split / name / "x.png"), img)
    d = _read([str(tmp_path / s) for s in ("train", "valid", "test")], img_size=4)
    assert d["class_names"] == ["a", "b", "c"]
    assert d["labels"]["train"].dtype == np.int32
    means = [d["images"]["train"][d["labels"]["train"] == k].mean() for k in range(3)]
    assert means[0] < 20 and 90 < means[1] < 110 and means[2] > 190


def test_shapes_channels_and_resize(dirs):
    d1 = _read(dirs, channel=1, img_size=12)
    assert d1["images"]["train"].shape == (24, 12, 12, 1)
    assert d1["images"]["valid"].shape == (6, 12, 12, 1)
    assert d1["images"]["train"].dtype == np.uint8
    d3 = _read(dirs, channel=3, img_size=16)
    assert d3["images"]["test"].shape == (6, 16, 16, 3)
    assert d3["mean"].shape == (3,) and d3["std"].dtype == np.float32


def _single_file_dataset(root, train_imgs):
    """Two classes; train class 'a' holds the given images, everything else is gray."""
    for split in ("train", "valid", "test"):
        for cls in ("a", "b"):
            os.makedirs(root / split / cls, exist_ok=True)
            cv2.imwrite(str(root / split / cls / "g.png"), np.full((8, 8), 50, np.uint8))
    for name, img in train_imgs.items():
        cv2.imwrite(str(root / "train" / "a" / name), img)
    return [str(root / s) for s in ("train", "valid", "test")]


def test_rgb_order_and_conversions(tmp_path):
    blue = np.zeros((8, 8, 3), np.uint8)
    blue[..., 0] = 255  # BGR: pure blue
    dirs = _single_file_dataset(tmp_path, {"blue.png": blue})
    d3 = _read(dirs, channel=3, img_size=8)
    imgs, labels = d3["images"]["train"], d3["labels"]["train"]
    files = sorted(os.listdir(tmp_path / "train" / "a"))
    img = imgs[labels == 0][files.index("blue.png")]
    assert img[..., 2].min() == 255 and img[..., 0].max() == 0      # RGB: blue last
    gray = imgs[labels == 0][files.index("g.png")]                    # gray file under channel 3
    assert (gray == 50).all()
    d1 = _read(dirs, channel=1, img_size=8)                           # colour file under channel 1
    img1 = d1["images"]["train"][d1["labels"]["train"] == 0][files.index("blue.png")]
    assert img1.shape == (8, 8, 1) and abs(int(img1[0, 0, 0]) - 29) <= 1  # 0.114 * 255


NOT_GIVEN = {1: "--channel not given: the training images are grey (channel 1)",
             3: "--channel not given: the training images are colour, read as RGB (channel 3)"}


@pytest.mark.parametrize("channel", [1, 3])
def test_channel_not_given_is_read_from_the_training_images(tmp_path, capsys, channel):
    """--channel unset: 3 for a folder of colour PNGs, 1 for grey ones, with one line saying so."""
    dirs = make_png_dataset(tmp_path, num_classes=2, per_class=(4, 1, 1), size=8, channel=channel)
    assert data_utils.settle_channel(None, dirs[0]) == channel
    assert capsys.readouterr().out.splitlines() == [NOT_GIVEN[channel]]


def test_shipped_digits_are_read_as_grey(capsys):
    train = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "train")
    assert data_utils.settle_channel(None, train) == 1
    assert capsys.readouterr().out.splitlines() == [NOT_GIVEN[1]]


def test_grey_stored_as_colour_is_grey_and_one_colour_file_is_colour(tmp_path):
    """Grey stored as three (or, with alpha, four) equal channels counts as grey; one colour
    file among grey ones makes the folder colour."""
    grey = np.random.default_rng(0).integers(0, 256, (8, 8, 1)).astype(np.uint8)
    bgra = np.dstack([grey, grey, grey, np.full_like(grey, 7)])
    dirs = _single_file_dataset(tmp_path, {"grey3.png": np.dstack([grey] * 3), "grey4.png": bgra})
    assert not data_utils.train_images_are_colour(dirs[0])
    bgra[0, 0, 1] += 1
    cv2.imwrite(os.path.join(dirs[0], "b", "colour.png"), bgra)
    assert data_utils.train_images_are_colour(dirs[0])
    assert data_utils.settle_channel(None, dirs[0]) == 3


def test_channel_1_on_colour_images_says_they_are_read_as_grey(tmp_path, capsys):
    colour = make_png_dataset(tmp_path / "c", num_classes=2, per_class=(4, 1, 1), size=8, channel=3)
    grey = make_png_dataset(tmp_path / "g", num_classes=2, per_class=(4, 1, 1), size=8, channel=1)
    assert data_utils.settle_channel(1, colour[0]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "--channel 1: the training images in {} are colour, read as grey (--channel 3 reads them "
        "as RGB)".format(colour[0])]
    assert data_utils.settle_channel(1, grey[0]) == 1 and data_utils.settle_channel(3, colour[0]) == 3
    assert capsys.readouterr().out == ""


def test_sixteen_bit_and_alpha(tmp_path):
    img16 = np.full((8, 8), 65535, np.uint16)
    bgra = np.zeros((8, 8, 4), np.uint8)
    bgra[..., 1] = 255
    bgra[..., 3] = 7
    dirs = _single_file_dataset(tmp_path, {"deep.png": img16, "alpha.png": bgra})
    d = _read(dirs, channel=3, img_size=8)
    files = sorted(os.listdir(tmp_path / "train" / "a"))
    imgs = d["images"]["train"][d["labels"]["train"] == 0]
    assert (imgs[files.index("deep.png")] == 255).all()
    assert (imgs[files.index("alpha.png")] == [0, 255, 0]).all()


def test_class_mismatch_names_class(dirs):
    os.rename(os.path.join(dirs[1], "2"), os.path.join(dirs[1], "9"))
    with pytest.raises(UserError, match="'2'") as err:
        _read(dirs)
    assert dirs[1] in str(err.value)


def test_extra_class_names_class(dirs):
    os.makedirs(os.path.join(dirs[2], "zz"))
    with pytest.raises(UserError, match="'zz'"):
        _read(dirs)


def test_missing_folder(dirs, tmp_path):
    with pytest.raises(UserError, match="nope"):
        _read([dirs[0], str(tmp_path / "nope"), dirs[2]])


def test_folder_without_classes(dirs, tmp_path):
    os.makedirs(tmp_path / "empty")
    with pytest.raises(UserError, match="empty"):
        _read([dirs[0], dirs[1], str(tmp_path / "empty")])


def test_empty_class_folder(dirs):
    folder = os.path.join(dirs[0], "1")
    for f in os.listdir(folder):
        os.remove(os.path.join(folder, f))
    with pytest.raises(UserError, match="no image files") as err:
        _read(dirs)
    assert folder in str(err.value)


def test_single_class(tmp_path):
    dirs = make_png_dataset(tmp_path, num_classes=1)
    with pytest.raises(UserError, match="at least 2"):
        _read(dirs)


def test_non_image_file_and_skip(dirs):
    bad = os.path.join(dirs[0], "0", "notes.txt")
    with open(bad, "w") as f:
        f.write("hello")
    with pytest.raises(UserError) as err:
        _read(dirs)
    assert bad in str(err.value) and "\n" not in str(err.value)
    d = _read(dirs, skip_bad_images=True)
    assert d["num_skipped"] == 1
    assert len(d["labels"]["train"]) == 24


@pytest.mark.parametrize("kw, flag", [
    (dict(img_size=10), "--img_size"), (dict(img_size=0), "--img_size"), (dict(channel=2), "--channel")])
def test_bad_data_flags(kw, flag):
    """The data flags are checked with the others (enas_flags.check_flags), before any reading;
    --channel may be left unset (None: read from the data)."""
    import enas_flags
    values = dict(dict(channel=1, img_size=12), **kw)
    enas_flags._check_data_flags(1, 12)
    enas_flags._check_data_flags(None, 12)
    with pytest.raises(UserError, match=flag):
        enas_flags._check_data_flags(values["channel"], values["img_size"])


def test_batch_larger_than_the_training_set_names_the_folder(dirs):
    with pytest.raises(UserError, match="--batch_size 25 is larger than the training set") as err:
        _read(dirs, batch_size=25)
    assert dirs[0] in str(err.value)
    assert len(_read(dirs, batch_size=24)["labels"]["train"]) == 24


def test_mean_std_per_channel_train(dirs):
    d = _read(dirs, channel=3)
    x = d["images"]["train"].astype(np.float64)
    np.testing.assert_allclose(d["mean"], x.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(d["std"], x.std(axis=(0, 1, 2)), rtol=1e-5)
    assert not np.allclose(d["mean"], d["images"]["valid"].mean(axis=(0, 1, 2)))


@pytest.mark.parametrize("channel", [1, 3])
def test_augment_image(channel):
    img = np.random.default_rng(1).integers(30, 220, (16, 16, channel)).astype(np.uint8)
    changed = 0
    for seed in range(6):
        out = data_utils.augment_image(img, np.random.default_rng(seed))
        assert out.shape == img.shape and out.dtype == np.uint8
        changed += not np.array_equal(out, img)
    assert changed >= 4
    a = data_utils.augment_image(img, np.random.default_rng(7))
    b = data_utils.augment_image(img, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


def test_brightness_contrast_all_channels():
    img = np.full((4, 4, 3), 100, np.uint8)
    out = data_utils._brightness_contrast(img, np.random.default_rng(0))
    assert (out == out[0, 0, 0]).all() and out[0, 0, 0] != 100


def test_apply_cutout():
    x = np.ones((5, 10, 10, 2), np.float32)
    out = data_utils.apply_cutout(x, 4, np.random.default_rng(0))
    for img in out:
        zeros = np.argwhere(img[..., 0] == 0)
        assert len(zeros) > 0
        (y0, x0), (y1, x1) = zeros.min(0), zeros.max(0)
        assert (img[y0:y1 + 1, x0:x1 + 1] == 0).all()       # one solid rectangle
        assert y1 - y0 < 4 and x1 - x0 < 4
        assert (y1 - y0 == 3 or y1 == 9) and (x1 - x0 == 3 or x1 == 9)
        assert (img == 0).sum() == (y1 - y0 + 1) * (x1 - x0 + 1) * 2


def test_num_train_batches():
    assert data_utils.num_train_batches(10, 1, 4) == 3
    assert data_utils.num_train_batches(10, 2, 4) == 5
    assert data_utils.num_train_batches(8, 1, 4) == 2


def _match_originals(data, batches):
    """Index in train of each normalised sample that equals an original image, else -1."""
    norm = (data["images"]["train"].astype(np.float32) - data["mean"]) / data["std"]
    flat = norm.reshape(len(norm), -1)
    found = []
    for x, _ in batches:
        for img in x.reshape(len(x), -1):
            hits = np.flatnonzero(np.abs(flat - img).max(1) < 1e-4)
            found.append(hits[0] if len(hits) else -1)
    return found


def test_train_epoch_n_aug_1(data):
    n, bs = len(data["labels"]["train"]), 5
    nb = data_utils.num_train_batches(n, 1, bs)
    batches = _take(lambda: data_utils.train_dataset(data, bs, seed=3), nb + 1)
    sizes = [len(y) for _, y in batches]
    assert sum(sizes[:nb]) == n and sizes[nb - 1] == n - bs * (nb - 1) and sizes[nb] == bs
    assert sorted(_match_originals(data, batches[:nb])) == list(range(n))
    labels = np.concatenate([y for _, y in batches[:nb]])
    assert np.bincount(labels).tolist() == np.bincount(data["labels"]["train"]).tolist()
    assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int32


def test_train_epoch_n_aug_2(dirs):
    data = _read(dirs, n_aug_img=2)
    n, bs = len(data["labels"]["train"]), 7
    nb = data_utils.num_train_batches(n, 2, bs)
    batches = _take(lambda: data_utils.train_dataset(data, bs, seed=1), nb)
    assert sum(len(y) for _, y in batches) == 2 * n
    labels = np.concatenate([y for _, y in batches])
    assert np.bincount(labels).tolist() == (2 * np.bincount(data["labels"]["train"])).tolist()
    found = _match_originals(data, batches)
    assert set(range(n)) <= set(found)          # every original present
    assert found.count(-1) >= n // 2             # most augmented samples differ


def test_train_static_shape_and_cutout(data):
    ds = data_utils.train_dataset(data, 4, seed=0, cutout_size=3)
    assert ds.element_spec[0].shape.as_list() == [None, 12, 12, 1]
    assert ds.element_spec[1].shape.as_list() == [None]
    (x, _), = _take(lambda: data_utils.train_dataset(data, 4, seed=0, cutout_size=3), 1)
    assert all((img == 0).sum() >= 1 for img in x)


def test_same_seed_same_batches(dirs):
    data = _read(dirs, n_aug_img=3)
    a = _take(lambda: data_utils.train_dataset(data, 6, seed=5), 3)
    b = _take(lambda: data_utils.train_dataset(data, 6, seed=5), 3)
    c = _take(lambda: data_utils.train_dataset(data, 6, seed=6), 3)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))


def test_eval_dataset_every_example_once(data):
    batches = _take_all(lambda: data_utils.eval_dataset(data, "train", batch_size=5))
    assert [len(y) for _, y in batches] == [5, 5, 5, 5, 4]
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    norm = (data["images"]["train"].astype(np.float32) - data["mean"]) / data["std"]
    np.testing.assert_allclose(x, norm, atol=1e-5)
    np.testing.assert_array_equal(y, data["labels"]["train"])


def test_mixed_eval_dataset_every_example_once_in_one_fixed_mixed_order(data):
    """mixed=True (the search's eval): every example once, the same order on every pass, and
    not in file order (whose batches would hold one class each)."""
    passes = [_take_all(lambda: data_utils.eval_dataset(data, "train", batch_size=5, mixed=True))
              for _ in range(2)]
    for a, b in zip(*passes):
        np.testing.assert_array_equal(a[1], b[1])
    x = np.concatenate([b[0] for b in passes[0]])
    y = np.concatenate([b[1] for b in passes[0]])
    norm = (data["images"]["train"].astype(np.float32) - data["mean"]) / data["std"]
    order = [int(np.argmin(np.abs(norm - xi).reshape(len(norm), -1).sum(1))) for xi in x]
    assert sorted(order) == list(range(len(norm)))
    assert order != sorted(order)
    np.testing.assert_array_equal(y, data["labels"]["train"][order])


def test_reward_batch_is_a_function_of_the_key(data):
    """Batches of min(batch, N_valid) distinct valid images: the same key gives the same batch,
    another key (either of its two numbers) or another seed another batch."""
    def batch(batch_size, key, seed=0):
        return reward.reward_batch(data, batch_size, seed, np.array(key, np.int64))
    n_valid = len(data["labels"]["valid"])
    whole = batch(100, [1, 0])
    assert len(whole[1]) == n_valid  # capped at the valid set
    assert len({img.tobytes() for img in whole[0]}) == n_valid  # distinct images
    a = batch(4, [1, 5])
    assert a[0].shape == (4, 12, 12, 1) and a[0].dtype == np.float32
    np.testing.assert_array_equal(a[0], batch(4, [1, 5])[0])
    for other in (batch(4, [1, 6]), batch(4, [2, 5]), batch(4, [1, 5], seed=1)):
        assert not np.array_equal(a[0], other[0])
    norm = (data["images"]["valid"].astype(np.float32) - data["mean"]) / data["std"]
    for img, label in zip(*a):  # each image is a valid image with its own label
        j = int(np.argmin(np.abs(norm - img).reshape(n_valid, -1).sum(1)))
        np.testing.assert_array_equal(norm[j], img)
        assert data["labels"]["valid"][j] == label


def test_graph_def_small(data):
    big = dict(data, images=dict(data["images"], train=np.zeros((4000, 12, 12, 1), np.uint8)),
               labels=dict(data["labels"], train=np.zeros(4000, np.int32)))  # 576 KB of pixels
    with tf.Graph().as_default() as g:
        tf.data.make_one_shot_iterator(data_utils.train_dataset(big, 4)).get_next()
        assert g.as_graph_def().ByteSize() < 50000
