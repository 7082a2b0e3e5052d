"""The zero-shot prior: text embeddings of class names, the anchored probe (CLAP) and PCB balancing.

Quality is measured offline with a synthetic prior on real Fashion-MNIST features: t_c is the
normalised mean embedding of class c in a disjoint split plus noise, tuned to about 60 % zero-shot
accuracy (no CLIP weights can be fetched here). Plumbing uses a tiny OpenCLIP with random weights.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from alwidget import datasets, embed, strategies
from alwidget.images import ImageSet
from alwidget.balance import balanced_select
from alwidget.prior import (DEFAULT_TEMPLATES, AnchoredProbe, TextPrior, class_prompts, class_text_embeddings,
                            clap_multipliers, zero_shot_proba)
from alwidget.probe import LinearProbe
from alwidget.session import Session, strategy_accepts

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY = "alwidget-test-prior-ViT"
SPEC = f"openclip:{TINY}/random"
C = 10
NOISE = 3.0  # prior noise: ~60 % zero-shot accuracy on these features (measured; see fm fixture)


@pytest.fixture(scope="module")
def tiny():
    import open_clip

    cfg = {"embed_dim": 32,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    path = os.path.join(os.environ["ALWIDGET_CACHE_DIR"], f"{TINY}.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    open_clip.add_model_config(path)
    return SPEC


def _stratified(labels, per_class, seed):
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                                   for c in range(C)]))


@pytest.fixture(scope="module")
def fm():
    """Fashion-MNIST features (EfficientNet-Lite0 @ 96 px, the demo encoder; embedded once into
    the test run's cache): a 1,200-image pool from the train split and class means from 400
    test-split images, the source of the synthetic prior."""
    tr, te = datasets.fashion_mnist("train", download=False), datasets.fashion_mnist("test", download=False)
    a, b = _stratified(tr.labels, 120, 0), _stratified(te.labels, 40, 1)
    X = embed.embed_images(ImageSet.from_arrays(tr.images[a]), embed.DEMO_ENCODER, progress=False).features
    Xs = embed.embed_images(ImageSet.from_arrays(te.images[b]), embed.DEMO_ENCODER, progress=False).features
    ys = te.labels[b]
    M = np.stack([Xs[ys == c].mean(0) for c in range(C)])
    return X, tr.labels[a].astype(np.int64), M / np.linalg.norm(M, axis=1, keepdims=True)


def noisy_prior(M, seed, noise=NOISE):
    T = M + noise * np.random.default_rng(seed).standard_normal(M.shape) / np.sqrt(M.shape[1])
    return T / np.linalg.norm(T, axis=1, keepdims=True)


def random_prior(M, seed):
    T = np.random.default_rng(seed + 1000).standard_normal(M.shape)
    return T / np.linalg.norm(T, axis=1, keepdims=True)


def labelled(y, per_class, seed):
    labels = np.full(y.size, -1, np.int64)
    if per_class:
        idx = _stratified(y, per_class, seed)
        labels[idx] = y[idx]
    return labels


def accuracy(proba, y, labels):
    free = labels < 0
    return float((proba.argmax(1)[free] == y[free]).mean())


def curves(X, y, make_prior, M, budgets=(0, 1, 2, 5), seeds=range(20)):
    """{budget: {"zs", "anchored", "plain"}: mean accuracy over seeds} (plain at 0 labels: chance)."""
    out = {}
    for per in budgets:
        acc = {"zs": [], "anchored": [], "plain": []}
        for seed in seeds:
            T, labels = make_prior(M, seed), labelled(y, per, seed)
            acc["zs"].append(accuracy(zero_shot_proba(X, T), y, labels))
            ap = AnchoredProbe(T, device="cpu", seed=seed).fit(X, labels, n_classes=C)
            acc["anchored"].append(accuracy(ap.predict_proba(), y, labels))
            acc["plain"].append(accuracy(LinearProbe(device="cpu", seed=seed).fit(X, labels, n_classes=C)
                                         .predict_proba(), y, labels) if per else 1.0 / C)
        out[per] = {k: float(np.mean(v)) for k, v in acc.items()}
    return out


# ------------------------------------------------------------------------------ quality
def test_anchored_probe_beats_plain_probe_and_zero_shot_with_a_useful_prior(fm):
    X, y, M = fm
    res = curves(X, y, noisy_prior, M)
    assert 0.5 <= res[0]["zs"] <= 0.7, res  # the synthetic prior is as weak as the spec asks
    assert res[0]["anchored"] == pytest.approx(res[0]["zs"], abs=1e-9)  # no label: the zero-shot classifier
    for per, r in res.items():
        assert r["anchored"] >= r["plain"] and r["anchored"] >= r["zs"], (per, res)
    assert res[1]["anchored"] >= res[1]["plain"] + 0.1  # the prior matters most when labels are fewest


def test_anchored_probe_is_at_most_a_point_below_the_plain_probe_with_a_random_prior(fm):
    X, y, M = fm
    res = curves(X, y, random_prior, M, budgets=(1, 2, 5))
    for per, r in res.items():
        assert r["zs"] < 0.2, res  # the random prior is useless
        assert r["anchored"] >= r["plain"] - 0.01, (per, res)


def test_prior_test_falls_back_to_the_plain_probe_and_says_why(fm):
    X, y, M = fm
    labels = labelled(y, 2, 0)
    ap = AnchoredProbe(random_prior(M, 0), device="cpu").fit(X, labels, n_classes=C)
    assert ap.mode == "plain" and "no better than chance" in ap.prior_info["reason"]
    ref = LinearProbe(device="cpu").fit(X, labels, n_classes=C)
    np.testing.assert_allclose(ap.predict_proba(), ref.predict_proba(), atol=1e-5)
    ap.fit(X, labels, n_classes=C)  # warm refit stays plain
    good = AnchoredProbe(noisy_prior(M, 0), device="cpu").fit(X, labels, n_classes=C)
    assert good.mode == "anchored" and good.prior_info["p_value"] < 0.01
    assert "anchored to the text prior" in good.prior_info["reason"]


# ------------------------------------------------------------------------------ mechanics
def test_clap_multipliers():
    y = np.array([0, 0, 1, 3])
    p_true = np.array([0.8, 0.6, 0.2, 0.9])
    has = np.array([True, True, True, False])
    lam = clap_multipliers(p_true, y, has)
    np.testing.assert_allclose(lam, [0.7, 0.2, 0.45, 0.0])  # class 2: mean of labelled text classes


def test_anchored_probe_interface_and_strategies(fm):
    X, y, M = fm
    T = noisy_prior(M, 3)
    zero = AnchoredProbe(T, device="cpu").fit(X, np.full(y.size, -1), n_classes=C)
    assert zero.mode == "zero-shot"
    np.testing.assert_allclose(zero.predict_proba(), zero_shot_proba(X, T), atol=2e-4)
    labels = labelled(y, 1, 3)
    ap = AnchoredProbe(T, device="cpu", seed=3).fit(X, labels, n_classes=C)
    assert ap.predict_proba().shape == (y.size, C) and ap.n_classes == C and ap.is_fitted
    # new inputs are normalised like the pool: a scaled copy of the pool scores the same
    np.testing.assert_allclose(ap.predict_proba(3.0 * X[:50]), ap.predict_proba()[:50], atol=1e-4)
    assert ap.predict_dropout(None, n_passes=3, p=0.5, seed=0).shape == (3, y.size)
    for name in ("margin", "dropquery", "badge", "entropy"):
        idx, info = strategies.select(name, X, labels, 10, probe=ap, return_info=True, n_classes=C)
        assert idx.size == 10 and np.all(labels[idx] < 0) and info["strategy"] == name


def test_classes_without_text_and_classes_added_later(fm):
    X, y, M = fm
    T = noisy_prior(M, 4)
    T[9] = 0.0  # class 9 has no text
    labels = labelled(y, 2, 4)
    labels[labels == 8] = -1  # class 8: text, no label
    ap = AnchoredProbe(T[:9], device="cpu").fit(X, labels, n_classes=C)  # T shorter than the classes
    p = ap.predict_proba()
    assert p.shape == (y.size, C) and np.all(p[:, 8] >= 0) and p[:, 8].max() > 0.5  # text keeps class 8 alive
    assert p[:, 9].max() > 0.5  # labels alone make class 9
    none = labels.copy()
    none[none == 9] = -1
    p2 = AnchoredProbe(T[:9], device="cpu").fit(X, none, n_classes=C).predict_proba()
    assert np.all(p2[:, 9] == 0)  # neither text nor labels: never predicted
    zs = zero_shot_proba(X, np.concatenate([T[:9], np.zeros((1, T.shape[1]))]))
    assert np.all(zs[:, 9] == 0)
    np.testing.assert_allclose(zs.sum(1), 1.0, atol=1e-5)


def test_balanced_select_contract(fm):
    X, y, M = fm
    labels = labelled(y, 1, 5)
    proba = zero_shot_proba(X, noisy_prior(M, 5))
    excl = np.flatnonzero(labels < 0)[:30]
    idx, info = balanced_select(strategies.select, "margin", X, labels, 10, proba=proba, exclude=excl,
                                probe=None, n_classes=C, return_info=True)
    assert idx.size == 10 and np.unique(idx).size == 10 and np.all(labels[idx] < 0)
    assert not np.isin(idx, excl).any() and "PCB" in info["reason"]
    assert np.bincount(proba[idx].argmax(1), minlength=C).max() <= 2  # spread over the predicted classes


def _labels_to_find_every_class(X, y, T, strategy, balanced, seed, B=10, budget=200):
    """Labels bought until every class has one, selecting as a Session does (PCB while scarce)."""
    names = [str(c) for c in range(C)]
    prior = TextPrior(names, T)
    probe = prior.make_probe(lambda: names, device="cpu", seed=seed)
    labels = np.full(y.size, -1, np.int64)
    while (labels >= 0).sum() < budget:
        fitted = bool((labels >= 0).any())
        kw = dict(seed=seed + int((labels >= 0).sum()), geometry_seed=seed, probe=probe if fitted else None)
        if strategy_accepts(strategy, "n_classes"):
            kw["n_classes"] = C
        select = prior.selector(strategies.select, labels, names, X, kw["probe"]) if balanced else strategies.select
        pick = select(strategy, X, labels, B, **kw)
        labels[pick] = y[pick]
        probe.fit(X, labels, n_classes=C)
        if np.unique(labels[labels >= 0]).size == C:
            break
    return int((labels >= 0).sum())


def test_balanced_selection_finds_every_class_sooner(fm):
    """A long-tailed pool (120 ... 6 items per class; which classes are rare varies by seed)."""
    X0, y0, M = fm
    sizes = [120, 120, 100, 80, 60, 40, 25, 15, 10, 6]
    need = {False: [], True: []}
    for seed in range(12):
        rng = np.random.default_rng(seed)
        perm = rng.permutation(C)
        rows = np.concatenate([rng.choice(np.flatnonzero(y0 == perm[i]), sizes[i], replace=False) for i in range(C)])
        X, y, T = X0[rows], y0[rows], noisy_prior(M, seed)
        for balanced in (False, True):
            need[balanced].append(_labels_to_find_every_class(X, y, T, "auto", balanced, seed))
    assert np.mean(need[True]) < np.mean(need[False]), need


# ------------------------------------------------------------------------------ text and the Session
def test_class_text_embeddings_average_the_templates(tiny):
    names = ["ankle_boot", "bag"]
    templates = DEFAULT_TEMPLATES + ("a photo of a {}, a type of clothing.",)
    T = class_text_embeddings(names, tiny, templates)
    assert T.shape == (2, 32) and T.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(T, axis=1), 1.0, atol=1e-5)
    assert class_prompts("ankle_boot", templates)[1] == "a photo of a ankle boot, a type of clothing."
    e = embed.encode_text(class_prompts("bag", templates), encoder=tiny, device="cpu").astype(np.float64).mean(0)
    np.testing.assert_allclose(T[1], e / np.linalg.norm(e), atol=1e-5)
    prior = TextPrior.from_names(names, tiny, templates)
    assert prior.scale == pytest.approx(1 / 0.07, rel=1e-4)  # open_clip's initial logit scale
    with pytest.raises(ValueError, match="class name"):
        class_text_embeddings(names, tiny, ["no placeholder"])
    with pytest.raises(Exception, match="no text tower"):
        class_text_embeddings(names, "efficientnet-lite0")


def test_session_starts_from_the_zero_shot_guess(fm):
    X, y, M = fm
    names = [f"class {c}" for c in range(C)]
    T = noisy_prior(M, 6)
    with Session(X, classes=names, text_prior=T, seed=0, batch_size=10) as s:
        s.wait()
        st = s.status
        assert st["guess"] is True and st["prior"]["mode"] == "zero-shot"
        np.testing.assert_allclose(s.predict_proba(), zero_shot_proba(X, T), atol=1e-6)
        assert "PCB" in st["reason"]  # the first batch is class-balanced by the zero-shot guess
        batch = s.next_batch()
        assert batch.size == 10
        for c in range(C):
            s.label_many(np.flatnonzero(y == c)[:2], names[c])
        s.wait()
        st = s.status
        assert st["prior"]["mode"] == "anchored" and st["guess"] is False
        assert isinstance(s.probe, AnchoredProbe) and "PCB" not in st["reason"]  # every class has 2: balanced enough
        assert accuracy(s.predict_proba(), y, s.label_array()) > 0.6


def test_session_prior_maps_rows_by_class_name(fm, tmp_path):
    X, y, M = fm
    T = noisy_prior(M, 7)
    store = tmp_path / "labels.sqlite"
    with Session(X, classes=["b", "a"], store=str(store)) as s:  # the store remembers b, a
        s.label(0, "a")
    with Session(X, classes=["a", "b"], store=str(store), text_prior=T[:2]) as s:
        assert s.classes == ["b", "a"]
        np.testing.assert_allclose(s.prior.matrix_for(s.classes), T[[1, 0]], atol=1e-6)


def test_session_prior_errors(fm, tiny):
    X, y, M = fm
    with pytest.raises(ValueError, match="one row per class"):
        Session(X, classes=["a", "b", "c"], text_prior=M[:2])
    with pytest.raises(ValueError, match="classes="):
        Session(X, text_prior=M[:2])
    with pytest.raises(ValueError, match="text_encoder="):
        Session(X, classes=["a", "b"], text_prior=True)
    with pytest.raises(ValueError, match="same checkpoint"):
        Session(X, classes=["a", "b"], text_prior=True, text_encoder=tiny)  # 32-d text, 1280-d images


def test_session_text_prior_true_embeds_the_class_names(tiny, fm):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 32)).astype(np.float32)
    with Session(X, classes=["bag", "sneaker"], text_prior=True, text_encoder=tiny) as s:
        assert s.prior.scale == pytest.approx(1 / 0.07, rel=1e-4)
        s.label(0, "sandal")  # a class added later is embedded when first seen
        s.wait()
        assert s.status["error"] is None
        assert np.linalg.norm(s.prior.matrix_for(["sandal"])) == pytest.approx(1.0, abs=1e-5)
        assert s.predict_proba().shape == (200, 3)
