"""Write the Fashion-MNIST demo subset shipped inside the package.

    python scripts/make_demo_subset.py [--per-class 100] [--source /usr/share/datasets/fashion-mnist]

Reads the real IDX files (Debian package ``dataset-fashion-mnist`` or ``--source``), draws
``--per-class`` images of each class from the training split (seeded, stratified) and writes
``alwidget/data/fashion_mnist_demo.npz`` plus the licence file next to it. The size is chosen
so that a first embedding of the whole subset with the demo encoder takes well under a
minute on a laptop CPU (see bench/bench_embed.py) while the file stays about half a megabyte.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from alwidget import datasets

LICENCE = """\
Fashion-MNIST demo subset shipped with alwidget
================================================

The file fashion_mnist_demo.npz holds {n} images ({per_class} per class) drawn with seed {seed}
from the training split of Fashion-MNIST; `source_index` gives each image's index in that split.

Fashion-MNIST: https://github.com/zalandoresearch/fashion-mnist
Han Xiao, Kashif Rasul, Roland Vollgraf. "Fashion-MNIST: a Novel Image Dataset for
Benchmarking Machine Learning Algorithms." arXiv:1708.07747, 2017.

The MIT License (MIT)

Copyright (c) 2017 Zalando SE, https://tech.zalando.com

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def stratified_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` indices of each class, drawn without replacement, in a shuffled order."""
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in np.unique(labels)]
    idx = np.concatenate(picks)
    return idx[rng.permutation(idx.size)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--source", default=None, help="folder with the IDX files (default: Debian package, user cache)")
    ap.add_argument("--out", default=str(Path(datasets.__file__).with_name("data")))
    args = ap.parse_args(argv)

    full = datasets.fashion_mnist("train", path=args.source, download=False)
    idx = stratified_indices(full.labels, args.per_class, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out / "fashion_mnist_demo.npz",
        images=full.images[idx],
        labels=full.labels[idx].astype(np.uint8),
        source_index=idx.astype(np.int32),
        class_names=np.array(full.class_names),
        licence=np.array(datasets.FASHION_MNIST_LICENCE),
    )
    (out / "LICENSE-fashion-mnist.txt").write_text(
        LICENCE.format(n=idx.size, per_class=args.per_class, seed=args.seed)
    )
    size = (out / "fashion_mnist_demo.npz").stat().st_size
    print(f"wrote {idx.size} images ({args.per_class} per class) to {out / 'fashion_mnist_demo.npz'} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
