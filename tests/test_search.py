"""Search: text search (tiny OpenCLIP, random weights), more-like-this and the query kNN against
brute force, near-duplicate groups on a pool with planted copies, outliers and filters."""
from __future__ import annotations

import os

import numpy as np
import pytest
from embed_data import TINY_CLIP

from alwidget import datasets, embed, search
from alwidget.geometry import knn_query
from alwidget.images import ImageSet
from alwidget.search import (TextSearchUnavailable, mask_labelled, mask_name, mask_predicted, mask_rows,
                             mask_uncertainty, more_like_this, near_duplicates, outlier_scores, outliers,
                             search_session, search_text, search_vector, similar_session, text_search_status)
from alwidget.session import Session

os.environ.setdefault("HF_HUB_OFFLINE", "1")



@pytest.fixture(scope="module")
def clip_pool(tiny_clip):
    """The shipped demo images (1,000) embedded with the tiny OpenCLIP."""
    ds = datasets.demo()
    return embed.embed_images(ImageSet.from_arrays(ds.images), tiny_clip, device="cpu", progress=False).features


def unit(rng, n, d):
    X = rng.standard_normal((n, d)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def brute_top(X, q, k, exclude=()):
    s = (X.astype(np.float64) @ np.asarray(q, np.float64).ravel()) / np.linalg.norm(q)
    s[list(exclude)] = -np.inf
    return np.argsort(-s, kind="stable")[:k], s


# ------------------------------------------------------------------------------ text
def test_text_search_ranks_by_cosine_with_the_same_checkpoint(tiny_clip, clip_pool):
    X = clip_pool
    res = search_text(X, "a photo of a red dress", tiny_clip, k=25)
    assert len(res) == 25 and res.indices.dtype == np.int64 and res.query == "a photo of a red dress"
    assert np.all(np.diff(res.scores) <= 0)
    t = embed.encode_text(["a photo of a red dress"], encoder=tiny_clip, device="cpu")[0]
    ref, s = brute_top(X, t, 25)
    np.testing.assert_array_equal(res.indices, ref)
    np.testing.assert_allclose(res.scores, s[ref], atol=1e-5)
    assert '"a photo of a red dress"' in res.message and "25 items" in res.message
    other = search_text(X, "a photo of a sneaker", tiny_clip, k=25)
    assert not np.array_equal(other.indices, res.indices)
    excl = search_text(X, "a photo of a red dress", tiny_clip, k=25, exclude=res.indices[:5])
    np.testing.assert_array_equal(excl.indices[:20], res.indices[5:])


def test_text_search_is_disabled_with_a_sentence_without_a_text_tower(tiny_clip, clip_pool, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_hub"))
    X = clip_pool
    with pytest.raises(TextSearchUnavailable, match="no text tower") as exc:
        search_text(X, "a dress", embed.DEMO_ENCODER)
    assert "efficientnet-lite0" in str(exc.value) and "More like this" in str(exc.value)
    with pytest.raises(TextSearchUnavailable, match="without a text encoder"):
        search_text(X, "a dress", None)
    with pytest.raises(ValueError, match="non-empty"):
        search_text(X, "   ", tiny_clip)
    with pytest.raises(ValueError, match="same OpenCLIP checkpoint"):
        search_text(np.ones((10, 8), np.float32), "a dress", tiny_clip)
    with pytest.raises(TextSearchUnavailable, match="not in the local cache"):  # weights unavailable offline
        search_text(X, "a dress", "openclip:ViT-B-32/laion2b_s34b_b79k")


def test_session_entry_points(tiny_clip, clip_pool):
    X = clip_pool
    with Session(X, text_encoder=tiny_clip) as s:
        ok, sentence = text_search_status(s)
        assert ok and TINY_CLIP in sentence
        res = search_session(s, "a bag", k=10)
        np.testing.assert_array_equal(res.indices, search_text(X, "a bag", tiny_clip, k=10).indices)
        s.label_many(res.indices[:3], "bag")
        fresh = search_session(s, "a bag", k=10, unlabelled_only=True)
        assert not np.isin(fresh.indices, res.indices[:3]).any()
        like = similar_session(s, [int(res.indices[0])], k=5)
        assert like.indices.size == 5 and res.indices[0] not in like.indices
    with Session(X) as s:
        ok, sentence = text_search_status(s)
        assert not ok and "text_encoder=" in sentence
        with pytest.raises(TextSearchUnavailable):
            search_session(s, "a bag")
    with Session(X, text_encoder="efficientnet-lite0@96") as s:
        assert "no text tower" in text_search_status(s)[1]


def test_a_callable_text_encoder(clip_pool):
    X = clip_pool
    calls = []

    def my_text(prompts):
        calls.append(list(prompts))
        return np.tile(X[7], (len(prompts), 1)) * 2.0  # any scale: rows are normalised

    res = search_text(X, "anything", my_text, k=3)
    assert res.indices[0] == 7 and res.scores[0] == pytest.approx(1.0, abs=1e-5)
    search_text(X, "anything", my_text, k=3)
    assert calls == [["anything"]]  # the prompt's embedding is kept


# ------------------------------------------------------------------------------ by example
def test_query_knn_equals_brute_force():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 24)).astype(np.float32)
    Q = rng.standard_normal((5, 24)).astype(np.float32)
    d, i = knn_query(X, Q, 7, metric="euclidean")
    ref = np.sqrt(((Q[:, None, :].astype(np.float64) - X[None]) ** 2).sum(-1))
    np.testing.assert_array_equal(i, np.argsort(ref, axis=1, kind="stable")[:, :7])
    np.testing.assert_allclose(d, np.sort(ref, axis=1)[:, :7], atol=1e-4)
    v, i = knn_query(X, Q[0], 4000, metric="inner", exclude=[3, 3, 5])
    assert i.shape == (1, 2998) and not np.isin(i, [3, 5]).any() and np.all(np.diff(v[0]) <= 0)
    with pytest.raises(ValueError, match="metric"):
        knn_query(X, Q, 3, metric="cosine")


def test_more_like_this_equals_brute_force():
    rng = np.random.default_rng(1)
    X = unit(rng, 5000, 64) * rng.uniform(0.5, 2.0, (5000, 1)).astype(np.float32)  # not unit rows
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    one = more_like_this(X, 42, k=50)
    ref, s = brute_top(Xn, Xn[42], 50, exclude=[42])
    np.testing.assert_array_equal(one.indices, ref)
    np.testing.assert_allclose(one.scores, s[ref], atol=1e-5)
    rows = [3, 17, 256, 4000]
    many = more_like_this(X, rows, k=50)
    ref, _ = brute_top(Xn, Xn[rows].mean(0), 50, exclude=rows)
    np.testing.assert_array_equal(many.indices, ref)
    assert "the 4 selected items" in many.message
    assert more_like_this(X, rows, k=3, include_query=True).indices.size == 3
    with pytest.raises(ValueError, match="out of range"):
        more_like_this(X, [5000])
    with pytest.raises(ValueError, match="cancel out"):
        more_like_this(np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], np.float32), [0, 1])
    everything = search_vector(X[:3], X[0], 5, exclude=[0, 1, 2])
    assert len(everything) == 0 and "excluded" in everything.message


# ------------------------------------------------------------------------------ duplicates, outliers
def planted_pool(seed=0, n=3000, d=64, n_groups=60):
    """Random unit rows (pairwise cosine ~ N(0, 1/64): no natural near-copies) plus planted groups of
    1-3 near-copies (cosine >= 0.97) and a few exact copies. Returns (X, planted groups)."""
    rng = np.random.default_rng(seed)
    X = unit(rng, n, d)
    rows, groups = [X], []
    nxt = n
    for g, src in enumerate(rng.choice(n, n_groups, replace=False)):
        m = 1 + g % 3
        noise = rng.standard_normal((m, d)).astype(np.float32) * (0.0 if g % 10 == 0 else 0.02)
        cp = X[src] + noise
        rows.append(cp / np.linalg.norm(cp, axis=1, keepdims=True))
        groups.append([int(src)] + list(range(nxt, nxt + m)))
        nxt += m
    return np.concatenate(rows).astype(np.float32), groups


def _pairs(groups):
    return {(min(a, b), max(a, b)) for g in groups for a in g for b in g if a != b}


def test_near_duplicates_find_planted_copies():
    X, planted = planted_pool()
    rng = np.random.default_rng(5)
    perm = rng.permutation(X.shape[0])  # copies not next to their originals
    inv = np.argsort(perm)
    dup = near_duplicates(X[perm], threshold=0.95)
    found = _pairs([perm[g].tolist() for g in dup.groups])
    truth = _pairs(planted)
    recall = len(found & truth) / len(truth)
    precision = len(found & truth) / max(1, len(found))
    assert recall == 1.0 and precision >= 0.95, (recall, precision)
    assert len(dup.groups) == len(planted)
    assert all(np.all(np.diff(g) > 0) for g in dup.groups)
    assert [len(g) for g in dup.groups] == sorted((len(g) for g in dup.groups), reverse=True)
    assert dup.mask().sum() == sum(len(g) for g in planted)
    assert dup.group_of[inv[planted[0][0]]] == dup.group_of[inv[planted[0][1]]] >= 0
    assert "groups of near-duplicates" in dup.message
    assert "No near-duplicates" in near_duplicates(X[:3000], threshold=0.95).message


def test_outliers_are_far_from_everything():
    rng = np.random.default_rng(2)
    centres = unit(rng, 5, 32)
    X = centres[rng.integers(0, 5, 2000)] + 0.05 * rng.standard_normal((2000, 32)).astype(np.float32)
    far = unit(rng, 4, 32)
    X = np.concatenate([X, far])
    res = outliers(X, n=4)
    assert set(res.indices.tolist()) == {2000, 2001, 2002, 2003}
    s = outlier_scores(X)
    assert s.shape == (2004,) and np.all(s[2000:] > np.quantile(s[:2000], 0.999))


# ------------------------------------------------------------------------------ filters
def test_filters_are_masks():
    proba = np.array([[0.9, 0.1, 0.0], [0.4, 0.35, 0.25], [0.1, 0.2, 0.7], [1 / 3, 1 / 3, 1 / 3]], np.float32)
    assert mask_predicted(proba, 0).tolist() == [True, True, False, True]  # ties: the first class
    assert mask_predicted(proba, [1, 2]).tolist() == [False, False, True, False]
    u = search.uncertainty(proba, "margin")
    np.testing.assert_allclose(u, [0.2, 0.95, 0.5, 1.0], atol=1e-6)
    assert mask_uncertainty(proba, 0.5, 1.0).tolist() == [False, True, True, True]
    e = search.uncertainty(proba, "entropy")
    assert e[3] == pytest.approx(1.0) and e[0] < e[1]
    assert search.uncertainty(proba, "least_confidence")[3] == pytest.approx(1.0)
    labels = np.array([0, -1, 2, -1])
    assert mask_labelled(labels).tolist() == [True, False, True, False]
    assert mask_labelled(labels, False).tolist() == [False, True, False, True]
    assert mask_name(["cats/A.jpg", "dogs/b.jpg", None, "Cat2.png"], "cat").tolist() == [True, False, False, True]
    assert mask_name(["cats/A.jpg", "Cat2.png"], "Cat", case_sensitive=True).tolist() == [False, True]
    assert mask_rows(5, [1, 3]).tolist() == [False, True, False, True, False]
    with pytest.raises(ValueError, match="no predictions"):
        mask_predicted(None, 0)
    with pytest.raises(ValueError, match="low <= high"):
        mask_uncertainty(proba, 0.8, 0.2)
    with pytest.raises(ValueError, match="measure"):
        search.uncertainty(proba, "bald")


def test_filter_session(digits):
    X, y = digits
    with Session(X[:300], seed=0) as s:
        for c in range(3):
            s.label_many(np.flatnonzero(y[:300] == c)[:3], f"d{c}")
        s.wait()
        names = [f"img{i:03d}.png" for i in range(300)]
        mask, sentence = search.filter_session(s, predicted=["d1"], labelled=False, name="img1", names=names)
        pred = s.predict_proba().argmax(1)
        expect = (pred == 1) & (s.label_array() < 0) & np.array(["img1" in n for n in names])
        np.testing.assert_array_equal(mask, expect)
        assert sentence.startswith(f"{expect.sum():,} of 300 items shown") and "predicted d1" in sentence
        with pytest.raises(ValueError, match="unknown class"):
            search.filter_session(s, predicted="cat")
        mask, sentence = search.filter_session(s, uncertainty_range=(0.0, 1.0))
        assert mask.all() and "uncertainty" in sentence
