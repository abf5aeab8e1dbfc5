"""Generates PNG class folders for benchmarks: harder data than the shipped 8x8 digits.

    python bench/make_dataset.py OUT_DIR [--kind digits|cluttered] [--train 5000 --valid 1000
                                 --test 1000] [--size 28] [--seed 0]

Writes OUT_DIR/{train,valid,test}/<0..9>/<i>.png. Nothing is downloaded; every image is drawn
with OpenCV:
  digits     MNIST-like: a white digit glyph on black, 28x28 gray, in one of OpenCV's 8 vector
             fonts (italic or not), random stroke width, scale, rotation (+-15 deg), shear and
             shift, blurred. A fixed small CNN reaches about 99 % on it.
  cluttered  harder, RGB: the same glyphs in a random colour on a random colour gradient,
             partly hidden by distractor strokes and blobs of similar colours, with noise. Cells
             differ on it (retrained accuracies spread over several points).
"""
import argparse
import os

import cv2
import numpy as np

FONTS = [cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX,
         cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_COMPLEX_SMALL,
         cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_COMPLEX]
NUM_CLASSES = 10
CANVAS = 64  # glyphs are drawn large, warped, then shrunk to --size


def glyph_mask(digit, rng):
    """float32 [CANVAS, CANVAS] in [0, 1]: one digit in a random font, stroke, scale and pose."""
    canvas = np.zeros((CANVAS, CANVAS), np.uint8)
    font = FONTS[rng.integers(len(FONTS))] | (cv2.FONT_ITALIC if rng.random() < 0.3 else 0)
    thickness = int(rng.integers(2, 6))
    (w, h), _ = cv2.getTextSize(str(digit), font, 1.0, thickness)
    scale = rng.uniform(0.55, 0.8) * CANVAS / max(w, h)
    (w, h), base = cv2.getTextSize(str(digit), font, scale, thickness)
    org = ((CANVAS - w) // 2, (CANVAS + h) // 2)
    cv2.putText(canvas, str(digit), org, font, scale, 255, thickness, cv2.LINE_AA)
    angle, shear = rng.uniform(-15, 15), rng.uniform(-0.25, 0.25)
    m = cv2.getRotationMatrix2D((CANVAS / 2, CANVAS / 2), angle, 1.0)
    m[0, 1] += shear
    m[:, 2] += rng.uniform(-0.08, 0.08, 2) * CANVAS
    canvas = cv2.warpAffine(canvas, m, (CANVAS, CANVAS))
    return cv2.GaussianBlur(canvas, (3, 3), 0).astype(np.float32) / 255.0


def digit_image(digit, size, rng):
    """uint8 [size, size]: MNIST-like white digit on black."""
    return cv2.resize((glyph_mask(digit, rng) * 255).astype(np.uint8), (size, size),
                      interpolation=cv2.INTER_AREA)


def _gradient(rng, n):
    """float32 [n, n, 3]: a linear blend of two random colours along a random direction."""
    c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    t = np.linspace(0, 1, n, dtype=np.float32)
    a = rng.uniform(0, 2 * np.pi)
    ramp = np.clip(0.5 + (np.cos(a) * (t[None, :] - 0.5) + np.sin(a) * (t[:, None] - 0.5)), 0, 1)
    return (c0 * (1 - ramp[..., None]) + c1 * ramp[..., None]).astype(np.float32)


def cluttered_image(digit, size, rng):
    """uint8 [size, size, 3] (BGR): a coloured digit on a gradient among distractor strokes."""
    img = _gradient(rng, CANVAS)
    for _ in range(int(rng.integers(3, 7))):  # distractors in colours of their own
        colour = tuple(float(v) for v in rng.uniform(0, 1, 3))
        p = tuple(int(v) for v in rng.integers(0, CANVAS, 2))
        if rng.random() < 0.5:
            q = tuple(int(v) for v in rng.integers(0, CANVAS, 2))
            cv2.line(img, p, q, colour, int(rng.integers(2, 6)), cv2.LINE_AA)
        else:
            cv2.circle(img, p, int(rng.integers(3, 10)), colour, -1, cv2.LINE_AA)
    mask = glyph_mask(digit, rng)[..., None]
    colour = rng.uniform(0, 1, 3).astype(np.float32)
    img = img * (1 - mask) + colour * mask
    img += rng.normal(0, 0.06, img.shape).astype(np.float32)
    img = cv2.resize(np.clip(img, 0, 1), (size, size), interpolation=cv2.INTER_AREA)
    return (img * 255).round().astype(np.uint8)


def write_split(split_dir, count, kind, size, rng):
    """count images, classes balanced (image i is digit i % 10), into split_dir/<digit>/<i>.png."""
    draw = digit_image if kind == "digits" else cluttered_image
    for k in range(NUM_CLASSES):
        os.makedirs(os.path.join(split_dir, str(k)), exist_ok=True)
    for i in range(count):
        digit = i % NUM_CLASSES
        path = os.path.join(split_dir, str(digit), "%d.png" % i)
        if not cv2.imwrite(path, draw(digit, size, rng)):
            raise RuntimeError("cv2.imwrite failed: " + path)


def make_dataset(root, counts=(5000, 1000, 1000), kind="digits", size=28, seed=0):
    """Writes root/{train,valid,test}; counts = images per split. Returns the three folders."""
    rng = np.random.default_rng(seed)
    dirs = [os.path.join(root, s) for s in ("train", "valid", "test")]
    for split_dir, count in zip(dirs, counts):
        write_split(split_dir, count, kind, size, rng)
    return dirs


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out_dir")
    p.add_argument("--kind", choices=("digits", "cluttered"), default="digits")
    p.add_argument("--train", type=int, default=5000)
    p.add_argument("--valid", type=int, default=1000)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    dirs = make_dataset(args.out_dir, (args.train, args.valid, args.test), args.kind, args.size,
                        args.seed)
    print("wrote {} ({} images)".format(", ".join(dirs), args.train + args.valid + args.test))


if __name__ == "__main__":
    main()
