"""Write the shipped toy dataset: 8x8 handwritten digits as PNG class folders.

Origin: the UCI "Optical Recognition of Handwritten Digits" data set
(E. Alpaydin, C. Kaynak; https://archive.ics.uci.edu/dataset/80), licence CC BY 4.0,
as bundled with scikit-learn (`sklearn.datasets.load_digits`, 1,797 images, gray levels 0..16).

Output: data/{train,valid,test}/<digit>/<index>.png, 8x8 8-bit grayscale,
values round(v * 255 / 16); stratified 70/10/20 split with random_state=0.
scikit-learn is needed only to rerun this script, not to use the data.

Usage: python data/make_digits.py [out_dir]   (default: the folder of this script)
"""
import os
import sys

import cv2
import numpy as np


def main(out_dir):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * 255.0 / 16.0).astype(np.uint8)  # [1797, 8, 8]
    labels = digits.target
    idx = np.arange(len(labels))
    idx_train, idx_rest = train_test_split(
        idx, test_size=0.3, stratify=labels, random_state=0)
    idx_valid, idx_test = train_test_split(
        idx_rest, test_size=2.0 / 3.0, stratify=labels[idx_rest], random_state=0)
    for split, split_idx in (("train", idx_train), ("valid", idx_valid), ("test", idx_test)):
        for i in sorted(split_idx):
            folder = os.path.join(out_dir, split, str(labels[i]))
            os.makedirs(folder, exist_ok=True)
            if not cv2.imwrite(os.path.join(folder, "%04d.png" % i), images[i]):
                raise OSError("could not write %s" % folder)
        print("%s: %d images" % (split, len(split_idx)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
