import numpy as np
import pytest
import torch

from alwidget._util import cache_dir, check_features, check_k, check_labels, fingerprint, limit_threads, resolve_device


def test_check_features_converts_to_contiguous_float32():
    x = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2]
    out = check_features(x)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == (3, 2)
    np.testing.assert_array_equal(out, x)


def test_check_features_accepts_torch_tensor():
    assert check_features(torch.ones(2, 3)).shape == (2, 3)


@pytest.mark.parametrize(
    "bad, exc, words",
    [
        (np.ones(5), ValueError, "shape (n_samples, n_features)"),
        (np.ones((0, 3)), ValueError, "empty"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), ValueError, "NaN"),
        (np.array([[1.0, np.inf]]), ValueError, "NaN or infinite"),
        (np.array([["a", "b"]]), TypeError, "numeric"),
    ],
)
def test_check_features_rejects_bad_input_with_clear_message(bad, exc, words):
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)")):
        check_features(bad)


def test_check_labels_and_k():
    assert check_labels([0, -1, 2.0], 3).dtype == np.int64
    with pytest.raises(ValueError, match="shape"):
        check_labels([0, 1], 3)
    with pytest.raises(ValueError, match=">= -1"):
        check_labels([0, -2, 1], 3)
    with pytest.raises(TypeError):
        check_labels([0.5, 1, 1], 3)
    assert check_k(np.int64(3)) == 3
    for bad in (0, -1):
        with pytest.raises(ValueError, match="positive"):
            check_k(bad)
    with pytest.raises(TypeError):
        check_k(2.5)


def test_fingerprint_depends_on_content_shape_and_dtype():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert fingerprint(a) == fingerprint(a.copy())
    assert fingerprint(a) != fingerprint(a.reshape(3, 2))
    assert fingerprint(a) != fingerprint(a.astype(np.float64))
    b = a.copy()
    b[1, 2] += 1e-6
    assert fingerprint(a) != fingerprint(b)


def test_resolve_device_and_cache_dir(tmp_path, monkeypatch):
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    monkeypatch.setenv("ALWIDGET_CACHE_DIR", str(tmp_path / "c"))
    d = cache_dir("emb")
    assert d == tmp_path / "c" / "emb" and d.is_dir()


def test_limit_threads_restores_torch_threads():
    before = torch.get_num_threads()
    with limit_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
