"""TrainingRows: the probe's kept training rows, their Gram matrix and its extended Cholesky factor."""
import numpy as np
import pytest
import torch

from alwidget._trainrows import TrainingRows

POOL = torch.randn(60, 24, generator=torch.Generator().manual_seed(0), dtype=torch.float32)


def make_counting(made):
    def make(keys):
        made.append(np.asarray(keys).tolist())
        return POOL[torch.from_numpy(np.asarray(keys))] * 1.0
    return make


def check(rows, keys):
    """The kept rows are exactly POOL[keys] (in some order), with their products and a valid factor."""
    assert sorted(rows.keys.tolist()) == sorted(keys)
    want = POOL[torch.from_numpy(rows.keys)]
    assert torch.equal(rows.x, want)
    torch.testing.assert_close(rows.gram(), (want @ want.T).double(), rtol=1e-6, atol=1e-5)
    L = rows.factor()
    assert torch.equal(L, torch.tril(L))
    torch.testing.assert_close(L @ L.T, rows.K, rtol=1e-7, atol=1e-6)


def test_new_rows_are_appended_and_only_they_are_made():
    made, rows = [], TrainingRows()
    make = make_counting(made)
    for keys in ([3, 7, 9], [1, 3, 7, 9, 20], [1, 3, 7, 9, 20, 21, 40]):
        rows.update(keys, make, tag=1)
        check(rows, keys)
    assert made == [[3, 7, 9], [1, 20], [21, 40]]
    assert rows.keys.tolist() == [3, 7, 9, 1, 20, 21, 40]  # arrival order: the new rows last


def test_an_extended_factor_equals_a_fresh_one():
    grown, fresh = TrainingRows(), TrainingRows()
    for keys in ([5, 6], [0, 5, 6, 11], list(range(0, 30, 2)) + [5, 11]):
        keys = sorted(set(keys))
        grown.update(keys, make_counting([]), tag=0)
        grown.factor()
    fresh.update(sorted(grown.keys.tolist()), make_counting([]), tag=0)
    # the same rows in another order: the factors differ, their products agree
    p = np.argsort(grown.keys)
    Kg = grown.K.numpy()[np.ix_(p, p)]
    np.testing.assert_allclose(Kg, fresh.gram().numpy(), rtol=1e-6, atol=1e-5)
    Lg = grown.factor()
    torch.testing.assert_close(Lg @ Lg.T, grown.K, rtol=1e-7, atol=1e-6)


def test_removed_rows_are_dropped_and_the_rest_kept_in_order():
    made, rows = [], TrainingRows()
    make = make_counting(made)
    rows.update([2, 4, 6, 8], make, tag=1)
    rows.factor()
    rows.update([2, 6, 8, 10], make, tag=1)  # 4 removed, 10 added
    assert rows.keys.tolist() == [2, 6, 8, 10] and made == [[2, 4, 6, 8], [10]]
    check(rows, [2, 6, 8, 10])
    rows.update([8], make, tag=1)
    check(rows, [8])


def test_another_tag_starts_afresh():
    made, rows = [], TrainingRows()
    make = make_counting(made)
    rows.update([1, 2], make, tag=4)
    rows.update([1, 2], make, tag=2)  # the keys now mean other rows: everything is made again
    assert made == [[1, 2], [1, 2]]
    check(rows, [1, 2])


def test_duplicate_rows_get_a_jitter_and_the_factor_still_extends():
    dup = TrainingRows()
    make = lambda keys: POOL[torch.from_numpy(np.asarray(keys) % 3)] * 1.0  # keys 0 and 3 are the same row
    dup.update([0, 1, 2, 3], make)
    L = dup.factor()
    assert L is not None and torch.isfinite(L).all()
    assert dup._eps > 0
    dup.update([0, 1, 2, 3, 4, 7], make)  # two more duplicates, appended: the factor grows or is redone
    L = dup.factor()
    assert L is not None and L.shape == (6, 6) and torch.isfinite(L).all()
    torch.testing.assert_close(L @ L.T, dup.K + dup._eps * torch.eye(6, dtype=torch.float64), rtol=1e-6, atol=1e-4)


def test_keys_must_ascend():
    with pytest.raises(ValueError, match="ascending"):
        TrainingRows().update([3, 1], make_counting([]))
