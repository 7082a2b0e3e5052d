"""Command line: ``alwidget demo | embed | project | simulate | export``.

A thin layer over the Python API: argument parsing, friendly errors, printing.
Heavy modules are imported inside each command so ``alwidget --help`` is instant.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

SIM_DATASETS = ("digits", "fashion-mnist", "demo")


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _names(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError("expected at least one name")
    return values


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(port=args.port, open_browser=not args.no_browser, notebook_dir=args.dir)
    return 0


def cmd_embed(args) -> int:
    from .embed import embed_images
    from .images import ImageSet

    path = Path(args.path)
    if not path.exists():
        raise SystemExit(f"alwidget embed: {path} does not exist")
    images = ImageSet.from_folder(path, labels_from_subfolders=args.labels_from_subfolders) if path.is_dir() \
        else ImageSet.from_paths([path])
    print(f"{len(images)} image file(s) found under {path}")
    if args.address is not None and args.engine != "ray":
        raise SystemExit("alwidget embed: --address names a Ray cluster; use it with --engine ray")
    emb = embed_images(images, encoder=args.encoder, device=args.device, batch_size=args.batch_size,
                       cache_dir=args.cache_dir, engine=args.engine, ray_address=args.address)
    names = np.asarray([images.names[i] for i in emb.keep], dtype=str)
    extra = {}
    if images.given_labels is not None:
        extra["labels"] = np.asarray([images.given_labels[i] for i in emb.keep], dtype=str)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, features=emb.features, names=names, encoder_id=np.asarray(emb.encoder_id), **extra)
    print(f"wrote {emb.features.shape[0]} x {emb.features.shape[1]} embeddings ({emb.encoder_id}) to {out}")
    if len(emb.skipped):
        print(f"skipped {len(emb.skipped)} unreadable file(s):")
        print(emb.skipped.to_string(index=False, max_rows=20))
    return 0


def cmd_project(args) -> int:
    from .project import project_file

    project_file(args.file, args.out, seed=args.seed, method=args.method)
    print(f"wrote 2-D coordinates to {args.out}")
    return 0


def simulation_features(name: str, *, encoder: str | None = None):
    """(features, labels, class_names) for a simulation data set.

    digits: L2-normalised pixels. fashion-mnist / demo: embeddings of the shipped
    Fashion-MNIST subset with the offline encoder (cached after the first run).
    """
    from . import datasets

    if name == "digits":
        ds = datasets.digits()
        x = ds.images.reshape(len(ds.images), -1).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
        return x, np.asarray(ds.labels), list(ds.class_names)
    if name in ("fashion-mnist", "demo"):
        from .embed import embed_images
        from .images import ImageSet

        from .embed import DEMO_ENCODER

        ds = datasets.demo()
        emb = embed_images(ImageSet.from_arrays(ds.images, labels=ds.labels), encoder=encoder or DEMO_ENCODER)
        return emb.features, np.asarray(ds.labels)[emb.keep], list(ds.class_names)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(SIM_DATASETS)}")


def cmd_simulate(args) -> int:
    from .simulate import learning_curve_figure, simulate

    x, y, _ = simulation_features(args.dataset)
    df = simulate(x, y, strategy=args.strategies, budgets=args.budgets, seed=list(range(args.seeds)),
                  batch_size=args.batch_size)
    table = df.groupby(["strategy", "n_labels"])["accuracy"].agg(["mean", "std"]).unstack("n_labels")
    print(f"accuracy on {args.dataset} (mean and std over {args.seeds} seed(s), unlabelled pool as test set)")
    print(table.round(3).to_string())
    if args.csv:
        df.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    if args.plot:
        learning_curve_figure(df, title=f"{args.dataset}: accuracy vs labels").write_html(
            args.plot, include_plotlyjs=True)
        print(f"wrote {args.plot}")
    return 0


def cmd_export(args) -> int:
    from .store import LabelStore

    from .store_view import export_dataframe

    store = LabelStore.open_readonly(args.store)
    try:
        df = store.to_dataframe()
        if not all(k.startswith("row:") for k in store.items.keys):
            df = df.drop(columns="index")  # without the images, only the keys name the items
    finally:
        store.close()
    out = export_dataframe(df, args.out)
    print(f"wrote {len(df)} label(s) to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alwidget", description="Label image sets with active learning.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="start JupyterLab on the quickstart notebook (bundled data, offline)")
    d.add_argument("--port", type=int, default=None)
    d.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    d.add_argument("--dir", default=None, help="working folder for the notebooks (default: ./alwidget-demo)")
    d.set_defaults(func=cmd_demo)

    e = sub.add_parser("embed", help="embed a folder of images into an .npz file")
    e.add_argument("path")
    e.add_argument("--encoder", default="openclip:ViT-B-32/laion2b_s34b_b79k",
                   help="encoder spec: openclip:ARCH/TAG, openclip:ARCH//path/to/ckpt.pt, efficientnet-lite0")
    e.add_argument("--out", required=True)
    e.add_argument("--device", default="auto")
    e.add_argument("--batch-size", type=int, default=None)
    e.add_argument("--cache-dir", default=None)
    e.add_argument("--labels-from-subfolders", action="store_true")
    e.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="where to embed: this process, or a Ray cluster (pip install 'alwidget[ray]'; the cache "
                        "folder must be shared storage the workers see at the same path)")
    e.add_argument("--address", default=None,
                   help="Ray cluster address for --engine ray (e.g. ray://head:10001 or auto; default: "
                        "$RAY_ADDRESS, else a local Ray)")
    e.set_defaults(func=cmd_embed)

    pr = sub.add_parser("project", help="2-D map coordinates (UMAP) for an embeddings file")
    pr.add_argument("file")
    pr.add_argument("--out", required=True)
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--method", choices=("umap", "preview"), default="umap")
    pr.set_defaults(func=cmd_project)

    s = sub.add_parser("simulate", help="oracle-driven learning curves")
    s.add_argument("--dataset", choices=SIM_DATASETS, default="digits")
    s.add_argument("--strategies", type=_names, default=["random", "typiclust", "probcover", "dropquery", "margin"])
    s.add_argument("--budgets", type=_ints, default=[10, 20, 50, 100])
    s.add_argument("--seeds", type=int, default=3)
    s.add_argument("--batch-size", type=int, default=None)
    s.add_argument("--csv", default=None, help="write the raw results as CSV")
    s.add_argument("--plot", default=None, help="write a plotly HTML learning-curve figure")
    s.set_defaults(func=cmd_simulate)

    x = sub.add_parser("export", help="export the current labels of a store file to CSV or parquet")
    x.add_argument("store")
    x.add_argument("--out", required=True)
    x.set_defaults(func=cmd_export)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError, ImportError) as exc:
        print(f"alwidget {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
