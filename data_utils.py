"""Reading image folders and feeding them to the graph through tf.data.

Layout: <split_dir>/<class>/<image file>; classes are the string-sorted subfolder names of the
train folder, and every split must hold the same class folders. Images stay uint8 in memory;
augmentation and normalisation ((x - mean) / std, per-channel train statistics on the 0..255
scale) happen per batch inside a tf.numpy_function, so no image array becomes a graph constant.

API
  settle_channel(channel, train_dir) -> 1 or 3: --channel, or when not given, 3 if the first
                                  training images are colour (train_images_are_colour), else 1
  read_data(train_dir, valid_dir, test_dir, channel, img_size, n_aug_img, skip_bad_images=False,
            batch_size=None, train_with_valid=False)
                                  -> dict: images/labels per split, class_names, mean, std, ...
  augment_image(img, rng)         -> the seed's OpenCV augmentation of one uint8 [H,W,C] image
  random_crop_flip(images, pad, flip, rng) -> the authors' pad-and-crop and left-right flip
  apply_cutout(images, size, rng) -> zeroes one size x size square per image (in place)
  num_train_batches(num_train, n_aug_img, batch_size) -> batches per training epoch
  train_dataset(data, batch_size, seed=None, cutout_size=None, shard=(0, 1), crop_pad=0, flip=False,
                start_batch=0)    shuffled, augmented, endless
  eval_dataset(data, split, batch_size=100, mixed=False)        one pass over a split
Datasets yield (images float32 [B,H,W,C] normalised, labels int32 [B]).
  images_at(data, split, indices)  -> numpy (images, labels) of split at indices, not augmented
"""
import math
import os

import cv2
import numpy as np
import tensorflow.compat.v1 as tf

from errors import UserError

SPLITS = ("train", "valid", "test")


def _visible(names):
    """Sorted names without hidden entries (".DS_Store", ".ipynb_checkpoints")."""
    return sorted(n for n in names if not n.startswith("."))


def _list_classes(split_dir):
    """Sorted class subfolder names of split_dir; UserError if missing or without classes."""
    if not os.path.isdir(split_dir):
        raise UserError("data folder %s does not exist (expected <class>/<image> subfolders)"
                        % split_dir)
    classes = [n for n in _visible(os.listdir(split_dir))
               if os.path.isdir(os.path.join(split_dir, n))]
    if not classes:
        raise UserError("data folder %s has no class subfolders (expected <class>/<image>)"
                        % split_dir)
    return classes


def _check_same_classes(split_dir, classes, train_classes):
    """UserError naming split_dir and the first missing or extra class folder."""
    missing = sorted(set(train_classes) - set(classes))
    extra = sorted(set(classes) - set(train_classes))
    if missing:
        raise UserError("data folder %s lacks class folder '%s' that the train folder has"
                        % (split_dir, missing[0]))
    if extra:
        raise UserError("data folder %s has class folder '%s' that the train folder lacks"
                        % (split_dir, extra[0]))


def _to_uint8(img):
    """8-bit copy of a decoded image; 16-bit is scaled by 255/65535; None if unsupported."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return np.round(img / 257.0).astype(np.uint8)
    return None


def _read_unchanged(path):
    """The file's image as stored (cv2.IMREAD_UNCHANGED: [H,W] or [H,W,C], BGR order, any depth);
    None if unreadable."""
    try:
        return cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    except (cv2.error, OSError, ValueError):
        return None


def is_colour(img):
    """Whether an image as stored (_read_unchanged) has colour: 3 or 4 channels whose first three
    differ somewhere. Grey stored as three equal channels is grey."""
    return (img.ndim == 3 and img.shape[2] >= 3 and
            not (np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2])))


def train_images_are_colour(train_dir, num_files=12):
    """Whether any of num_files files of train_dir, spread evenly over its class folders in
    order, is a colour image (is_colour). Unreadable files are passed over (read_data names
    them); UserError as read_data's for a missing or empty folder."""
    files = _list_files(train_dir, _list_classes(train_dir))
    for path, _ in files[::max(1, len(files) // num_files)][:num_files]:
        img = _read_unchanged(path)
        if img is not None and is_colour(img):
            return True
    return False


def settle_channel(channel, train_dir):
    """The channel to read the data with: channel (--channel: 1, 3, or None when not given); None
    becomes 3 if the training images are colour (train_images_are_colour), else 1. Prints one line
    saying so, and one when channel 1 reads colour images as grey."""
    if channel == 3:
        return 3
    colour = train_images_are_colour(train_dir)
    if channel is None:
        channel = 3 if colour else 1
        print("--channel not given: the training images are " +
              ("colour, read as RGB (channel 3)" if colour else "grey (channel 1)"))
    elif colour:
        print("--channel 1: the training images in {} are colour, read as grey (--channel 3 "
              "reads them as RGB)".format(train_dir))
    return channel


def decode_image(path, channel, img_size):
    """Decode one file to uint8 [img_size, img_size, channel] (RGB when 3); None if unreadable."""
    img = _read_unchanged(path)
    if img is None or img.ndim not in (2, 3) or img.size == 0:
        return None
    img = _to_uint8(img)
    if img is None:
        return None
    if img.ndim == 3:
        n = img.shape[2]
        if n in (1, 2):
            img = img[:, :, 0]                      # gray (+ alpha)
        elif n == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
        elif n != 3:
            return None
    if channel == 1 and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    elif channel == 3:
        code = cv2.COLOR_GRAY2RGB if img.ndim == 2 else cv2.COLOR_BGR2RGB
        img = cv2.cvtColor(img, code)
    if img.shape[:2] != (img_size, img_size):
        img = cv2.resize(img, (img_size, img_size), interpolation=cv2.INTER_LINEAR)
    return img.reshape(img_size, img_size, channel)


def _list_files(split_dir, classes):
    """[(path, label)] of every regular file in each class folder; UserError for empty ones."""
    files = []
    for label, name in enumerate(classes):
        folder = os.path.join(split_dir, name)
        paths = [os.path.join(folder, f) for f in _visible(os.listdir(folder))]
        paths = [p for p in paths if os.path.isfile(p)]
        if not paths:
            raise UserError("class folder %s has no image files" % folder)
        files.extend((p, label) for p in paths)
    return files


def _read_split(split_dir, classes, channel, img_size, skip_bad_images):
    """Read one split -> (uint8 [N,S,S,C], int32 [N], num_skipped)."""
    files = _list_files(split_dir, classes)
    images = np.empty((len(files), img_size, img_size, channel), np.uint8)
    labels = np.empty(len(files), np.int32)
    n = 0
    for path, label in files:
        img = decode_image(path, channel, img_size)
        if img is None:
            if not skip_bad_images:
                raise UserError("cannot read %s as an image (remove it or pass "
                                "--skip_bad_images)" % path)
            continue
        images[n], labels[n] = img, label
        n += 1
    seen = set(labels[:n].tolist())
    for label, name in enumerate(classes):
        if label not in seen:
            raise UserError("class folder %s has no readable image"
                            % os.path.join(split_dir, name))
    if n < len(files):
        images, labels = images[:n].copy(), labels[:n].copy()
    return images, labels, len(files) - n


def _channel_stats(images, chunk_pixels=1 << 22):
    """Per-channel mean and std (float32 [C]) of uint8 [N,H,W,C], two passes in float64 chunks."""
    n, h, w, c = images.shape
    step = max(1, chunk_pixels // (h * w * c))
    count = float(n * h * w)
    total = np.zeros(c, np.float64)
    for i in range(0, n, step):
        total += images[i:i + step].sum(axis=(0, 1, 2), dtype=np.float64)
    mean = total / count
    sq = np.zeros(c, np.float64)
    for i in range(0, n, step):
        sq += ((images[i:i + step].astype(np.float64) - mean) ** 2).sum(axis=(0, 1, 2))
    std = np.sqrt(sq / count)
    std[std == 0] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def read_data(train_dir, valid_dir, test_dir, channel, img_size, n_aug_img,
              skip_bad_images=False, batch_size=None, train_with_valid=False):
    """Read the three split folders (the flag values are checked by enas_flags.check_flags;
    this checks the data: folders, images, and batch_size against the training set).
    train_with_valid: the training split is train + valid (its statistics too); valid stays.

    Returns {"images": {split: uint8 [N,S,S,C]}, "labels": {split: int32 [N]},
    "class_names": [str], "mean": float32 [C], "std": float32 [C], "channel": int,
    "img_size": int, "n_aug_img": int, "num_skipped": int}; S = img_size, C = channel.
    """
    dirs = dict(zip(SPLITS, (train_dir, valid_dir, test_dir)))
    classes = _list_classes(train_dir)
    if len(classes) < 2:
        raise UserError("data folder %s has %d class folder(s); at least 2 are needed"
                        % (train_dir, len(classes)))
    for split in SPLITS[1:]:
        _check_same_classes(dirs[split], _list_classes(dirs[split]), classes)
    data = {"images": {}, "labels": {}, "class_names": classes, "channel": int(channel),
            "img_size": int(img_size), "n_aug_img": int(n_aug_img), "num_skipped": 0}
    for split in SPLITS:
        images, labels, skipped = _read_split(dirs[split], classes, channel, img_size,
                                              skip_bad_images)
        data["images"][split], data["labels"][split] = images, labels
        data["num_skipped"] += skipped
        print("%s: %d images, %d classes, %dx%dx%d%s" % (
            split, len(labels), len(classes), img_size, img_size, channel,
            ", %d unreadable files skipped" % skipped if skipped else ""))
    if train_with_valid:
        for part in ("images", "labels"):
            data[part]["train"] = np.concatenate([data[part]["train"], data[part]["valid"]])
        print("train + valid: %d training images (--train_with_valid)" % len(data["labels"]["train"]))
    if batch_size is not None and batch_size > len(data["labels"]["train"]):
        raise UserError("--batch_size %d is larger than the training set (%d images in %s)" % (
            batch_size, len(data["labels"]["train"]), train_dir))
    data["mean"], data["std"] = _channel_stats(data["images"]["train"])
    return data


def _restore_channels(out, like):
    """cv2 drops a trailing 1-channel axis: give `out` the shape of `like`."""
    return out.reshape(like.shape)


def _enlarge(img, rng):
    """Zoom x1.2 about the centre, same size (warpAffine zoom-crop)."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), 0, 1.2)
    return _restore_channels(cv2.warpAffine(img, m, (w, h)), img)


def _rotate(img, rng):
    """Rotate by a random integer angle in [-20, 20] degrees, black border."""
    h, w = img.shape[:2]
    angle = int(rng.integers(-20, 21))
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
    return _restore_channels(cv2.warpAffine(img, m, (w, h), borderValue=0), img)


def _brightness_contrast(img, rng):
    """out = saturate(img * alpha + beta), alpha = clip(U(0.1,1), 0.7, 1.3), beta = U(6,32)."""
    alpha = np.clip(rng.uniform(0.1, 1.0), 0.7, 1.3)
    beta = rng.uniform(6.0, 32.0)
    out = img.astype(np.float32) * np.float32(alpha) + np.float32(beta)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _pepper(img, rng):
    """Set each pixel (all its channels) to 0 with probability 0.1."""
    out = img.copy()
    out[rng.random(img.shape[:2]) < 0.1] = 0
    return out


def _flip(img, rng):
    """Horizontal flip."""
    return np.ascontiguousarray(img[:, ::-1])


def augment_image(img, rng):
    """Seed augmentation of one uint8 [H,W,C] image (C in 1, 3) -> uint8 [H,W,C].

    Ops in order, each applied with probability 0.5 (only applied ops are computed):
    enlarge x1.2, rotation, brightness/contrast, pepper noise, horizontal flip (C == 3 only).
    rng: numpy.random.Generator.
    """
    ops = [_enlarge, _rotate, _brightness_contrast, _pepper]
    if img.shape[-1] == 3:
        ops.append(_flip)
    apply = rng.random(len(ops)) < 0.5
    out = np.ascontiguousarray(img)
    for op, on in zip(ops, apply):
        if on:
            out = op(out, rng)
    return out


def apply_cutout(images, cutout_size, rng):
    """Zero one cutout_size^2 square per image of float32 [B,H,W,C], in place; returns it.

    The top-left corner is uniform in [0,H) x [0,W); the square is clipped at the border.
    """
    _, h, w, _ = images.shape
    for img in images:
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        img[y:y + cutout_size, x:x + cutout_size, :] = 0.0
    return images


def random_crop_flip(images, pad, flip, rng):
    """The authors' CIFAR-10 augmentation of float32 [B,H,W,C], per image: zero-pad by pad pixels
    per side and crop a random H x W window (pad 0: no crop), then flip left-right with
    probability 0.5 if flip. Returns a new array."""
    b, h, w, _ = images.shape
    if pad:
        padded = np.pad(images, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
        ys, xs = rng.integers(0, 2 * pad + 1, b), rng.integers(0, 2 * pad + 1, b)
        images = np.stack([p[y:y + h, x:x + w] for p, y, x in zip(padded, ys, xs)])
    if flip:
        flipped = rng.random(b) < 0.5
        images[flipped] = images[flipped, :, ::-1]
    return images


def num_train_batches(num_train, n_aug_img, batch_size):
    """Batches in one training epoch: ceil(num_train * n_aug_img / batch_size)."""
    return int(math.ceil(num_train * n_aug_img / float(batch_size)))


def _batch_fn(data, split, seed, augment, cutout_size, crop_pad=0, flip=False):
    """numpy function (int64 indices [B], int64 batch_no) -> (float32 [B,H,W,C], int32 [B]).

    Sample index i is image i % N, OpenCV-augmented iff augment and i >= N; then every image is
    normalised, random-cropped and flipped (random_crop_flip) and cut out, as configured.
    """
    images, labels = data["images"][split], data["labels"][split]
    mean, std = data["mean"], data["std"]
    n = len(labels)

    def fn(indices, batch_no):
        rng = (np.random.default_rng() if seed is None
               else np.random.default_rng([int(seed) % (1 << 63), int(batch_no)]))
        idx = indices % n
        x = images[idx]
        if augment:
            for j in np.flatnonzero(indices >= n):
                x[j] = augment_image(x[j], rng)
        x = (x.astype(np.float32) - mean) / std
        if crop_pad or flip:
            x = random_crop_flip(x, crop_pad, flip, rng)
        if cutout_size:
            apply_cutout(x, cutout_size, rng)
        return x, labels[idx]
    return fn


def _to_batches(index_ds, data, fn, batch_dim=None, first_batch_no=0):
    """Zip index batches with a batch counter (from first_batch_no) and map them through the
    numpy function fn."""
    s, c = data["img_size"], data["channel"]

    def py_map(indices, batch_no):
        x, y = tf.numpy_function(fn, [indices, batch_no], [tf.float32, tf.int32])
        x.set_shape([batch_dim, s, s, c])
        y.set_shape([batch_dim])
        return x, y
    ds = tf.data.Dataset.zip((index_ds, tf.data.Dataset.range(first_batch_no, 1 << 62)))
    ds = ds.map(py_map, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def train_dataset(data, batch_size, seed=None, cutout_size=None, shard=(0, 1), crop_pad=0, flip=False,
                  start_batch=0):
    """Endless training batches: (float32 [B,H,W,C] normalised, int32 [B]), from batch number
    start_batch on (a resumed run: with a seed, the batches the run never stopped would read).

    Each epoch shuffles range(N * n_aug_img) afresh (num_train_batches batches, the last may be
    smaller); index i is image i % N, OpenCV-augmented when i >= N; then, on every image, the
    optional random crop (crop_pad), flip and cutout (_batch_fn).
    shard (index, count): only the indices i with i % count == index (a worker's share of a cluster).
    """
    m = len(data["labels"]["train"]) * data["n_aug_img"]
    shard_index, num_shards = shard
    idx = tf.data.Dataset.range(shard_index, m, num_shards)
    idx = idx.shuffle(len(range(shard_index, m, num_shards)), seed=seed, reshuffle_each_iteration=True)
    idx = idx.batch(batch_size).repeat().skip(start_batch)  # indices only: cheap to replay
    return _to_batches(idx, data, _batch_fn(data, "train", seed, True, cutout_size, crop_pad, flip),
                       first_batch_no=start_batch)


def eval_dataset(data, split, batch_size=100, mixed=False):
    """One pass over split: (float32 [B,H,W,C] normalised, int32 [B]), last B smaller.

    mixed=False: in file order (class folder by class folder). mixed=True: in one fixed random
    order, the same on every pass, so that every batch mixes the classes. The search child's BN
    normalises with the batch's own statistics, so a batch of one class loses what tells it
    apart: in file order its valid accuracy was close to chance.
    """
    n = len(data["labels"][split])
    idx = tf.data.Dataset.range(n)
    if mixed:
        idx = idx.shuffle(n, seed=0, reshuffle_each_iteration=False)
    return _to_batches(idx.batch(batch_size), data, _batch_fn(data, split, 0, False, None))


def images_at(data, split, indices):
    """The images of split at indices (int [B]), not augmented, as numpy arrays (float32
    [B,H,W,C] normalised, int32 [B]): reward.reward_batch's images."""
    return _batch_fn(data, split, 0, False, None)(np.asarray(indices), 0)
