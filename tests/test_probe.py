import numpy as np
import pytest
import torch

from alwidget import _lowp
from alwidget import probe as probe_mod
from alwidget.probe import LinearProbe

# The GPU path runs the same tests wherever CUDA is present.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _partial(y, n, seed=0):
    """Labels with n random rows revealed, -1 elsewhere."""
    labels = np.full(len(y), -1, dtype=np.int64)
    idx = np.random.default_rng(seed).choice(len(y), n, replace=False)
    labels[idx] = y[idx]
    return labels


@pytest.mark.parametrize("device", DEVICES)
def test_learns_digits_well_above_chance(digits, device):
    X, y = digits
    labels = _partial(y, 100)
    probe = LinearProbe(device=device).fit(X, labels)
    rest = labels < 0
    acc = (probe.predict()[rest] == y[rest]).mean()
    assert acc > 0.8  # chance is 0.1
    proba = probe.predict_proba()
    assert proba.shape == (len(y), 10) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    assert probe.n_classes == 10 and probe.device.type == device


def test_pool_is_standardised_over_the_whole_pool_and_cached(digits):
    X, y = digits
    a = LinearProbe(device="cpu").fit(X, _partial(y, 20))
    xs = a.transform()
    assert xs.shape == X.shape and xs.dtype == torch.float32
    np.testing.assert_allclose(xs.mean(0).numpy(), 0.0, atol=1e-4)
    std = xs.std(0, unbiased=False).numpy()
    varying = X.std(0) > 0
    np.testing.assert_allclose(std[varying], 1.0, atol=1e-3)
    assert np.all(std[~varying] == 0)  # constant pixels become 0, not NaN
    # A second probe on the same array (and on an equal copy) reuses the standardised tensor.
    b = LinearProbe(device="cpu").fit(X, _partial(y, 30))
    c = LinearProbe(device="cpu").fit(X.copy(), _partial(y, 30))
    assert b.transform() is xs and c.transform() is xs


@pytest.mark.parametrize("device", DEVICES)
def test_warm_start_reuses_weights(digits, device):
    X, y = digits
    labels = _partial(y, 60)
    probe = LinearProbe(device=device, input_dropout=0.0)
    probe.fit(X, labels)
    cold_iters = probe.n_iter_
    before = probe.predict_proba()
    probe.fit(X, labels)  # same problem, warm: already at the optimum
    assert probe.n_iter_ < cold_iters
    np.testing.assert_allclose(probe.predict_proba(), before, atol=1e-3)
    # One more label: the warm refit agrees with a cold fit on the same labels.
    labels[np.flatnonzero(labels < 0)[0]] = 3
    probe.fit(X, labels)
    cold = LinearProbe(device=device, input_dropout=0.0, max_iter=500).fit(X, labels)
    agree = (probe.predict() == cold.predict()).mean()
    assert agree > 0.97


@pytest.mark.parametrize("device", DEVICES)
def test_new_classes_grow_the_weight_matrix(digits, device):
    X, y = digits
    labels = np.full(len(y), -1)
    first = np.flatnonzero(y < 2)[:20]
    labels[first] = y[first]
    probe = LinearProbe(device=device).fit(X, labels)
    assert probe.n_classes == 2
    assert set(np.unique(probe.predict())) <= {0, 1}
    new = np.flatnonzero(y == 2)[:10]
    labels[new] = 2
    probe.fit(X, labels)
    assert probe.n_classes == 3
    assert probe.predict_proba().shape == (len(y), 3)
    assert (probe.predict()[y == 2] == 2).mean() > 0.8
    # Declared classes without labels get probability exactly 0 and are never predicted.
    probe.fit(X, labels, n_classes=6)
    proba = probe.predict_proba()
    assert proba.shape == (len(y), 6) and np.all(proba[:, 3:] == 0)
    assert probe.seen_classes.tolist() == [True, True, True, False, False, False]
    assert probe.predict_dropout().max() <= 2


def test_single_class_predicts_that_class(digits):
    X, y = digits
    labels = np.full(len(y), -1)
    labels[:3] = 4
    probe = LinearProbe(device="cpu").fit(X, labels)
    proba = probe.predict_proba()
    assert proba.shape == (len(y), 5)
    assert np.all(proba[:, 4] == 1) and np.all(probe.predict_dropout() == 4)


@pytest.mark.parametrize("device", DEVICES)
def test_no_nan_on_extreme_inputs(device):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 16)).astype(np.float32)
    X[0] = 1e30
    X[1] = -3e38
    X[2, :4] = 1e-42  # denormals
    X[:, 5] = 7.0  # a constant column
    X[3:6, 6] = 1e20
    labels = np.full(400, -1)
    labels[:60] = rng.integers(0, 4, 60)
    probe = LinearProbe(device=device, l2=1e-6).fit(X, labels)
    proba = probe.predict_proba()
    assert np.isfinite(proba).all() and np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    assert torch.isfinite(probe.transform()).all()
    # New inputs far outside the pool: logits are clipped, never inf - inf.
    huge = np.array([[3e38] * 16, [-3e38] * 16, [0.0] * 16], dtype=np.float32)
    assert np.isfinite(probe.predict_proba(huge)).all()
    assert probe.predict_dropout(huge).shape == (3, 3)


@pytest.mark.parametrize("device", DEVICES)
def test_no_nan_with_float16_features(device):
    rng = np.random.default_rng(1)
    X = (rng.standard_normal((300, 8)) * 1e4).astype(np.float16)
    X[0] = 65000  # near float16's maximum
    X[1] = np.float16(6e-8)  # float16 subnormal
    labels = np.full(300, -1)
    labels[:30] = rng.integers(0, 3, 30)
    probe = LinearProbe(device=device).fit(X, labels)
    assert np.isfinite(probe.predict_proba()).all()
    assert np.isfinite(probe.predict_proba(X[:5])).all()


@pytest.mark.parametrize("device", DEVICES)
def test_predict_dropout_shape_and_determinism(digits, device):
    X, y = digits
    probe = LinearProbe(device=device).fit(X, _partial(y, 80))
    a = probe.predict_dropout(n_passes=3, p=0.75, seed=5)
    assert a.shape == (3, len(y)) and a.dtype == np.int64
    assert a.min() >= 0 and a.max() < 10
    assert np.array_equal(a, probe.predict_dropout(n_passes=3, p=0.75, seed=5))
    assert not np.array_equal(a, probe.predict_dropout(n_passes=3, p=0.75, seed=6))
    # p = 0 keeps every feature: every pass equals the plain prediction.
    plain = probe.predict()
    assert np.all(probe.predict_dropout(n_passes=2, p=0.0) == plain)
    # Heavy dropout flips some predictions, but most confident ones survive.
    flips = (a != plain).mean()
    assert 0.01 < flips < 0.7
    assert probe.predict_dropout(X[:7], n_passes=4).shape == (4, 7)


def test_iid_mask_path_used_on_cuda_works_on_cpu(digits):
    # CUDA draws every mask on the device; the same function runs here on CPU tensors.
    X, y = digits
    probe = LinearProbe(device="cpu").fit(X, _partial(y, 80))
    cols = torch.from_numpy(np.flatnonzero(probe.seen_classes))
    w, b = probe._W[:, cols].T.contiguous(), probe._b[cols]
    xs = probe.transform()
    a = LinearProbe._dropout_iid(xs, w, b, 3, 0.75, 7).numpy()
    assert a.shape == (3, len(y))
    assert np.array_equal(a, LinearProbe._dropout_iid(xs, w, b, 3, 0.75, 7).numpy())
    assert np.array_equal(LinearProbe._dropout_iid(xs, w, b, 2, 0.0, 7).numpy()[0], probe.predict())
    flips = (cols.numpy()[a] != probe.predict()).mean()
    banked = (probe.predict_dropout(n_passes=3, p=0.75, seed=7) != probe.predict()).mean()
    assert abs(flips - banked) < 0.05  # both are Bernoulli masks at the same rate


def test_dropout_rate_controls_disagreement(digits):
    X, y = digits
    probe = LinearProbe(device="cpu").fit(X, _partial(y, 100))
    plain = probe.predict()
    flips = [(probe.predict_dropout(n_passes=4, p=p, seed=1) != plain).mean() for p in (0.1, 0.5, 0.9)]
    assert flips[0] < flips[1] < flips[2]
    # The masks keep a (1 - p) share of the inputs and scale them by 1 / (1 - p).
    bank = probe._dropout_bank(X.shape[1], 0.75).numpy()
    assert abs((bank > 0).mean() - 0.25) < 0.01
    assert np.allclose(bank[bank > 0], 4.0)
    # One bank per (D, p), whatever the round's seed: a new seed moves where the blocks read it
    # (other masks per point) without drawing 4096 x D numbers again.
    a = probe.predict_dropout(n_passes=3, p=0.75, seed=5)
    drawn = probe._dropout_bank(X.shape[1], 0.75)
    b = probe.predict_dropout(n_passes=3, p=0.75, seed=6)
    assert probe._dropout_bank(X.shape[1], 0.75) is drawn
    assert not np.array_equal(a, b) and np.array_equal(a, probe.predict_dropout(n_passes=3, p=0.75, seed=5))


def test_bad_input_raises_clear_errors(digits):
    X, y = digits
    probe = LinearProbe(device="cpu")
    with pytest.raises(RuntimeError, match="not fitted"):
        probe.predict_proba()
    with pytest.raises(ValueError, match="at least one labelled"):
        probe.fit(X, np.full(len(y), -1))
    with pytest.raises(ValueError, match="shape"):
        probe.fit(X, y[:10])
    with pytest.raises(ValueError, match="n_classes"):
        probe.fit(X, y, n_classes=3)
    bad = X.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        probe.fit(bad, y)
    probe.fit(X, _partial(y, 30))
    with pytest.raises(ValueError, match="features"):
        probe.predict_proba(X[:, :10])
    with pytest.raises(ValueError, match="p must be"):
        probe.predict_dropout(p=1.0)
    with pytest.raises(ValueError, match="input_dropout"):
        LinearProbe(input_dropout=1.5)
    with pytest.raises(ValueError, match="l2"):
        LinearProbe(l2=-1)


def test_shared_block_masks_are_masked_weight_products(digits, monkeypatch):
    """Large CPU pools: the rows of a block share a bank row per pass; each pass is x (m W)."""
    from alwidget import probe as P

    X, y = digits
    probe = LinearProbe(device="cpu").fit(X, _partial(y, 80))
    small = probe.predict_dropout(n_passes=3, p=0.75, seed=4)  # per-point path (below the size)
    monkeypatch.setattr(P, "SHARED_MASKS_MIN", 100)
    monkeypatch.setattr(P, "DROPOUT_BLOCK", 64)
    got = probe.predict_dropout(n_passes=3, p=0.75, seed=4)
    assert got.shape == (3, len(y))
    assert np.array_equal(got, probe.predict_dropout(n_passes=3, p=0.75, seed=4))
    xs = probe.transform().numpy().astype(np.float64)
    cols = np.flatnonzero(probe.seen_classes)
    W, b = probe._W.numpy()[:, cols].astype(np.float64), probe._b.numpy()[cols]
    bank = probe._dropout_bank(X.shape[1], 0.75).numpy()[:4096]
    pick = np.random.default_rng([4, len(y), 1]).integers(0, 4096, (-(-len(y) // 64), 3))
    for blk in (0, 7, len(pick) - 1):
        rows = slice(blk * 64, (blk + 1) * 64)
        for t in range(3):
            want = cols[((xs[rows] * bank[pick[blk, t]]) @ W + b).argmax(1)]
            assert (got[t, rows] == want).mean() > 0.98  # float32 vs float64 near ties
    plain = probe.predict()
    assert abs((got != plain).mean() - (small != plain).mean()) < 0.1  # same dropout, same rate
    sub = probe.predict_dropout(n_passes=2, seed=4, rows=np.arange(10, 300))
    assert sub.shape == (2, 290)
    with pytest.raises(ValueError, match="rows="):
        probe.predict_dropout(X[:5], rows=[0, 1])


def test_predict_proba_is_a_softmax_of_the_logits(digits):
    X, y = digits
    probe = LinearProbe(device="cpu").fit(X, _partial(y, 40))
    xs = probe.transform().numpy().astype(np.float64)
    cols = np.flatnonzero(probe.seen_classes)
    z = xs @ probe._W.numpy()[:, cols].astype(np.float64) + probe._b.numpy()[cols]
    want = np.exp(z - z.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    np.testing.assert_allclose(probe.predict_proba()[:, cols], want, atol=2e-6)


def test_dropout_on_sampled_blocks_equals_those_rows_of_the_whole_pool(digits, monkeypatch):
    from alwidget import probe as P

    X, y = digits
    monkeypatch.setattr(P, "SHARED_MASKS_MIN", 100)
    monkeypatch.setattr(P, "DROPOUT_BLOCK", 50)
    probe = LinearProbe(device="cpu").fit(X, _partial(y, 80))
    whole = probe.predict_dropout(n_passes=3, seed=9)
    blocks = np.array([0, 3, 35])  # the last block is short (1797 = 35 * 50 + 47)
    rows = np.concatenate([np.arange(b * 50, min(len(y), (b + 1) * 50)) for b in blocks])
    part = probe.predict_dropout(n_passes=3, seed=9, blocks=blocks)
    assert part.shape == (3, rows.size)
    np.testing.assert_array_equal(part, whole[:, rows])
    with pytest.raises(ValueError, match="blocks="):
        probe.predict_dropout(X[:5], blocks=[0])


# --------------------------------------------------------------------------- reduced precision (issue 12)

def test_low_precision_pool_pass_is_close_to_float32_and_exact_rows_match(digits):
    X, y = digits
    labels = np.full(len(y), -1)
    labels[::9] = y[::9]
    fp = LinearProbe(seed=0, device="cpu", low_precision=False).fit(X, labels)
    lp = LinearProbe(seed=0, device="cpu", low_precision=True).fit(X, labels)
    assert torch.equal(fp._W, lp._W)  # training is float32 either way
    p32, p16 = fp.predict_proba(), lp.predict_proba()
    assert fp.proba_exact and not lp.proba_exact
    assert np.abs(p16 - p32).max() < 0.02  # bf16 logits: about 3 significant digits
    assert np.allclose(p16.sum(1), 1, atol=1e-5)
    assert np.array_equal(p16.argmax(1), p32.argmax(1))  # near ties re-scored in float32 (ARGMAX_GUARD)
    rows = np.array([5, 0, 1700, 33])
    np.testing.assert_allclose(lp.exact_proba(rows), p32[rows], atol=1e-6)
    with pytest.raises(ValueError):  # the cached pool probabilities are never modified by a caller
        lp.pool_proba()[0, 0] = 1.0
    lp.predict_proba()[0, 0] = 1.0  # predict_proba hands out a copy
    assert lp.pool_proba()[0, 0] != 1.0


def _bf16_and_fp32_logits(probe):
    cols = torch.from_numpy(np.flatnonzero(probe._seen))
    w, b = probe._W[:, cols].T.contiguous(), probe._b[cols]
    pool = probe._pool
    z16 = torch.nn.functional.linear(pool.lowp(), w.to(torch.bfloat16)).float() + b
    z32 = torch.nn.functional.linear(pool.X, w, b)
    return w, b, z16, z32


@pytest.mark.parametrize("n_labels", [10, 60, 400])
def test_bf16_logit_error_bound_holds_on_every_row_and_class(digits, n_labels):
    X, y = digits
    probe = LinearProbe(seed=0, device="cpu", low_precision=True).fit(X, _partial(y, n_labels))
    w, b, z16, z32 = _bf16_and_fp32_logits(probe)
    a, c = _lowp.product_error_coefficients(w, w.to(torch.bfloat16), X.shape[1])
    norms = probe._pool.row_norms
    assert torch.all(norms[1] <= norms[0] * 2.0 ** -8)  # a row's bf16 rounding error is at most u = 2^-8 of it
    per_class = a * norms[0] + c * norms[1] + _lowp._K_OUT * (z16.abs().amax(1) + b.abs().max())
    assert torch.all((z16 - z32).abs() <= per_class[:, None])


def test_bf16_pass_rescores_only_rows_the_bound_cannot_settle(digits, monkeypatch):
    X, y = digits
    labels = _partial(y, 30)
    fp = LinearProbe(seed=0, device="cpu", low_precision=False).fit(X, labels)
    p32 = fp.predict_proba()
    monkeypatch.setattr(probe_mod, "ARGMAX_GUARD", 1.0)  # every row is a near tie by probability
    lp = LinearProbe(seed=0, device="cpu", low_precision=True).fit(X, labels)
    p16 = lp.predict_proba()
    assert np.array_equal(p16.argmax(1), p32.argmax(1))  # float32's argmax on every row
    assert 0 < lp.n_rescored_ < len(y) // 2  # the logit bound settles most rows by itself
    _, _, z16, _ = _bf16_and_fp32_logits(lp)
    top = z16.topk(2, 1).values
    rescored = np.flatnonzero(np.abs(p16 - p32).max(1) < 1e-6)
    wide = np.flatnonzero((top[:, 0] - top[:, 1]).numpy() > 1.0)  # far above the bound: not re-scored
    assert wide.size and not np.isin(wide, rescored).any() and np.abs(p16[wide] - p32[wide]).max() > 0
    monkeypatch.setattr(probe_mod, "ARGMAX_GUARD", -1.0)  # no probability near ties: nothing re-scored
    none = LinearProbe(seed=0, device="cpu", low_precision=True).fit(X, labels)
    none.pool_proba()
    assert none.n_rescored_ == 0


def test_bf16_near_ties_without_the_bound_follow_the_probability_guard():
    z = torch.tensor([[2.0, 1.97, 0.0], [3.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    norms = torch.ones((2, 3))
    p, rows = _lowp.softmax_near_ties(z.T.contiguous(), norms, (0.0, 0.0), 0.0, 0.05, bounded=False)
    assert rows.tolist() == [0, 2]  # p-gaps 0.015 and 0 are within ARGMAX_GUARD, row 1's is not
    torch.testing.assert_close(p.T, torch.softmax(z, 1))  # the softmax comes with the test, in place
    _, rows = _lowp.softmax_near_ties(z.T.contiguous(), norms, (0.0, 0.0), 0.0, 0.05, bounded=True)
    assert rows.tolist() == [2]  # gap 0.03 > 2 K_OUT 2
    p, rows = _lowp.softmax_near_ties(z[:, :1].T.contiguous(), norms, (0.0, 0.0), 0.0, 0.05)
    assert rows.numel() == 0 and torch.equal(p, torch.ones((1, 3)))


def test_bf16_pass_with_classes_not_yet_labelled(digits):
    X, y = digits
    labels = _partial(y, 40)
    labels[np.isin(labels, [8, 9])] = -1
    lp = LinearProbe(seed=0, device="cpu", low_precision=True).fit(X, labels, n_classes=12)
    fp = LinearProbe(seed=0, device="cpu", low_precision=False).fit(X, labels, n_classes=12)
    p16, p32 = lp.predict_proba(), fp.predict_proba()
    assert p16.shape == (len(y), 12) and not p16[:, 8:].any()
    assert np.array_equal(p16.argmax(1), p32.argmax(1)) and np.abs(p16 - p32).max() < 0.02


def test_small_pools_stay_exact_under_auto(digits):
    X, y = digits
    labels = np.full(len(y), -1)
    labels[::7] = y[::7]
    auto = LinearProbe(seed=0, device="cpu").fit(X, labels)
    exact = LinearProbe(seed=0, device="cpu", low_precision=False).fit(X, labels)
    assert len(X) < probe_mod.LOWP_MIN
    assert np.array_equal(auto.predict_proba(), exact.predict_proba()) and auto.proba_exact


def test_lowp_calibration_runs_once_per_setting(digits, monkeypatch):
    X, _ = digits
    monkeypatch.setattr(_lowp, "_LOWP_FASTER", {})
    x = torch.from_numpy(np.tile(X, (3, 1)))
    first = probe_mod.lowp_faster(x, 16)
    assert isinstance(first, bool) and len(_lowp._LOWP_FASTER) == 1
    assert probe_mod.lowp_faster(x, 16) is first and len(_lowp._LOWP_FASTER) == 1
    with pytest.raises(ValueError, match="low_precision"):
        LinearProbe(low_precision="bf16")


@pytest.mark.parametrize("lowp", [False, True])
def test_a_pool_pass_stops_between_blocks_and_caches_nothing(digits, monkeypatch, lowp):
    X, y = digits
    monkeypatch.setattr(probe_mod, "BLOCK_BYTES", 64 * 4 * 100)  # 100-row blocks: 18 on digits
    p = LinearProbe(seed=0, device="cpu", low_precision=lowp).fit(X, _partial(y, 30))
    asked = []

    def stop_at_fifth():
        asked.append(1)
        return len(asked) >= 5

    assert p.pool_proba(should_stop=stop_at_fifth) is None and len(asked) == 5  # stopped mid-pool
    assert p._proba is None  # nothing half-done is kept
    full = p.pool_proba(should_stop=lambda: False)
    np.testing.assert_array_equal(full, LinearProbe(seed=0, device="cpu", low_precision=lowp)
                                  .fit(X, _partial(y, 30)).pool_proba())
    assert p.pool_proba(should_stop=lambda: True) is full  # a cached result is not recomputed


def test_two_threads_asking_for_a_new_pool_build_it_once(monkeypatch):
    import threading
    import time

    from alwidget import _pool

    X = np.random.default_rng(8).standard_normal((500, 6)).astype(np.float32)
    built, real = [], _pool._Pool.__init__

    def slow_init(self, *a, **kw):  # a build that takes a while, as at 1M rows
        built.append(threading.current_thread().name)
        time.sleep(0.3)
        real(self, *a, **kw)

    monkeypatch.setattr(_pool._Pool, "__init__", slow_init)
    got = [None, None]

    def ask(i):
        got[i] = _pool._get_pool(X, "cpu")

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1 and got[0] is got[1]
    np.testing.assert_allclose(got[0].X.numpy().mean(0), 0.0, atol=1e-5)
    _pool.clear_pool_cache()


@pytest.mark.parametrize("low_precision,use_numpy", [(False, False), (False, True), (True, False)])
def test_pool_pass_shared_by_two_threads_equals_the_serial_pass(digits, monkeypatch, low_precision, use_numpy):
    X, y = digits
    X = np.tile(X, (8, 1))  # 14k rows: several blocks of either size
    labels = _partial(np.tile(y, 8), 60)
    # One BLAS for both (the calibration may choose differently for the two block sizes: rounding).
    monkeypatch.setattr(probe_mod, "numpy_faster", lambda *a: use_numpy)
    got = {}
    for workers in (1, 2):
        monkeypatch.setattr(probe_mod, "pass_workers", lambda w=workers: w)
        monkeypatch.setattr(probe_mod, "BLOCK_BYTES", 1 << 16)  # blocks of 64-512 rows: dozens of them
        lp = LinearProbe(seed=0, device="cpu", low_precision=low_precision).fit(X, labels)
        got[workers] = (lp.pool_proba().copy(), lp.n_rescored_)
        stops = iter(range(1000))
        lp._proba = None
        assert lp.pool_proba(should_stop=lambda: next(stops) >= 3) is None  # abandoned between blocks
    # OpenBLAS may round a 64-row block differently from a 256-row one (the pass's two block sizes).
    np.testing.assert_allclose(got[1][0], got[2][0], rtol=1e-5 if use_numpy else 1e-6, atol=1e-7)
    np.testing.assert_array_equal(got[1][0].argmax(1), got[2][0].argmax(1))
    assert got[1][1] == got[2][1]  # the same near ties re-scored, counted once


def test_refits_in_the_rows_span_keep_the_right_rows_and_products():
    """Few labels on wide features: each refit keeps the training rows, their products and the
    Cholesky factor it already has and appends the new ones. After labels are added, relabelled and
    removed, the kept rows are exactly the current images under their masks, the products and the
    factor are theirs, and the fit reaches the optimum of one made from scratch (both run to
    convergence; the rows' order sets the span's basis, which the first L-BFGS step's scaling sees,
    so the weights of fits from different orders differ by more than rounding)."""
    from alwidget._lbfgs import _loss_grad
    from alwidget._trainrows import TrainingRows

    g = np.random.default_rng(0)
    X = (g.normal(size=(400, 4)) @ g.normal(size=(4, 256)) + g.normal(size=(400, 256))).astype(np.float32)
    y = g.integers(0, 4, 400)
    cached, fresh = (LinearProbe(seed=3, device="cpu", max_iter=500, warm_iter=500) for _ in range(2))
    labels = np.full(400, -1, np.int64)
    steps = [(np.arange(8), None), (np.arange(8, 14), None), (np.array([2, 3]), "relabel"), (np.array([0, 9]), "remove"),
             (np.array([30, 1, 0]), None)]
    for rows, what in steps:
        labels[rows] = -1 if what == "remove" else ((y[rows] + 1) % 4 if what == "relabel" else y[rows])
        cached.fit(X, labels, n_classes=4)
        fresh._rows = TrainingRows()  # every row, product and factor made again
        fresh.fit(X, labels, n_classes=4)
        idx = np.flatnonzero(labels >= 0)
        kept = cached._rows
        assert np.array_equal(np.sort(kept.keys), (idx[:, None] * 4 + np.arange(4)).reshape(-1))
        xs, bank = cached.transform(None), cached._train_masks
        want = xs[torch.from_numpy(kept.keys // 4)] * bank[torch.from_numpy(kept.keys % bank.shape[0])]
        assert torch.equal(kept.x, want) and kept.x.shape[0] <= 0.25 * 256
        torch.testing.assert_close(kept.K, (want @ want.T).double(), rtol=1e-5, atol=1e-3)
        torch.testing.assert_close(kept.L @ kept.L.T, kept.K, rtol=1e-6, atol=1e-6)
        # the same optimum: the objective on the true rows is as low at either fit's weights
        yl = torch.from_numpy(labels[kept.keys // 4])
        onehot = torch.nn.functional.one_hot(yl, 4).float().T.contiguous()
        loss = [float(_loss_grad(want, want.T.contiguous(), onehot, p._W.T.contiguous(), p._b, 0.5 / idx.size)[0])
                for p in (cached, fresh)]
        assert loss[0] == pytest.approx(loss[1], rel=1e-4, abs=1e-5)


def test_a_new_pool_starts_its_training_rows_afresh():
    """The same labelled indices on another feature set: the kept rows are the new pool's, not the
    old one's (their keys coincide), and the fit matches a fresh probe's."""
    g = np.random.default_rng(1)
    X1, X2 = (g.normal(size=(300, 256)).astype(np.float32) for _ in range(2))  # 48 rows <= D / 2: the span fit
    labels = np.full(300, -1, np.int64)
    labels[:12] = np.arange(12) % 3
    probe = LinearProbe(seed=0, device="cpu")
    probe.fit(X1, labels, n_classes=3)
    probe.fit(X2, labels, n_classes=3)
    kept = probe._rows
    xs, bank = probe.transform(None), probe._train_masks
    want = xs[torch.from_numpy(kept.keys // 4)] * bank[torch.from_numpy(kept.keys % bank.shape[0])]
    assert torch.equal(kept.x, want)
    torch.testing.assert_close(kept.K, (want @ want.T).double(), rtol=1e-5, atol=1e-4)
