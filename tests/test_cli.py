"""The command line, run in-process through alwidget.cli.main on small real data."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from alwidget import datasets
from alwidget.cli import build_parser, main
from alwidget.store import LabelStore


def test_parser_rejects_bad_budgets():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--budgets", "10,x"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--budgets", "0,10"])


def test_simulate_prints_table_and_writes_csv_and_plot(tmp_path, capsys):
    csv, html = tmp_path / "c.csv", tmp_path / "c.html"
    rc = main(["simulate", "--dataset", "digits", "--strategies", "random,typiclust", "--budgets", "10,20",
               "--seeds", "2", "--csv", str(csv), "--plot", str(html)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "typiclust" in out and "random" in out
    df = pd.read_csv(csv)
    assert set(df.columns) >= {"strategy", "seed", "n_labels", "accuracy"}
    assert len(df) == 2 * 2 * 2 and df["accuracy"].between(0, 1).all()
    assert "plotly" in html.read_text()[:200000].lower()


def test_embed_project_and_export_round_trip(tmp_path, capsys):
    ds = datasets.digits()
    folder = tmp_path / "imgs"
    for i in range(12):
        sub = folder / ds.class_names[ds.labels[i]]
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ds.images[i]).resize((32, 32)).save(sub / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    emb = tmp_path / "emb.npz"
    rc = main(["embed", str(folder), "--encoder", "efficientnet-lite0@96", "--out", str(emb),
               "--labels-from-subfolders", "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "skipped 1 unreadable" in out and "broken.jpg" in out
    z = np.load(emb)
    assert z["features"].shape == (12, 1280) and len(z["names"]) == 12 and len(z["labels"]) == 12
    np.testing.assert_allclose(np.linalg.norm(z["features"], axis=1), 1, atol=1e-4)

    coords = tmp_path / "map.npz"
    assert main(["project", str(emb), "--out", str(coords), "--method", "preview"]) == 0
    assert np.load(coords)["coords"].shape == (12, 2)

    store_path = tmp_path / "l.sqlite"
    store = LabelStore(store_path, n_samples=12)
    store.label(3, "cat")
    store.label_many([4, 5], "dog")
    store.close()
    out_csv = tmp_path / "labels.csv"
    assert main(["export", str(store_path), "--out", str(out_csv)]) == 0
    got = pd.read_csv(out_csv)
    assert dict(zip(got["index"], got["label"])) == {3: "cat", 4: "dog", 5: "dog"}


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.sqlite"), "--out", str(tmp_path / "x.csv")]) == 2
    assert "alwidget export:" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="does not exist"):
        main(["embed", str(tmp_path / "nope"), "--out", str(tmp_path / "e.npz")])
