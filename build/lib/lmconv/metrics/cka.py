"""Linear centred kernel alignment (CKA) between two activation matrices of the same n samples.

``X`` is ``(n, d1)``, ``Y`` is ``(n, d2)``. The biased estimator (as the activation-convergence paper's code,
Kornblith et al. 2019) is ``‖X̃ᵀỸ‖²_F / (‖X̃ᵀX̃‖_F ‖ỸᵀỸ‖_F)`` with columns centred. The debiased estimator uses
the unbiased HSIC of Song et al. (2012). Both are computed in feature space (``d × d`` products), which is
cheap when ``n ≫ d``; :func:`cka_gram` is the direct ``n × n`` HSIC computation the tests compare against.
"""

from __future__ import annotations

import numpy as np


def _center(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x - x.mean(axis=0, keepdims=True)


def cka(x: np.ndarray, y: np.ndarray, debiased: bool = False) -> float:
    """Linear CKA of ``x`` and ``y`` (rows are the same samples)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same samples: {x.shape[0]} vs {y.shape[0]} rows")
    if not debiased:
        xc, yc = _center(x), _center(y)
        xy = np.linalg.norm(xc.T @ yc) ** 2
        xx = np.linalg.norm(xc.T @ xc)
        yy = np.linalg.norm(yc.T @ yc)
        return float(xy / (xx * yy)) if xx > 0 and yy > 0 else float("nan")
    hxy = _hsic_unbiased_features(x, y)
    hxx = _hsic_unbiased_features(x, x)
    hyy = _hsic_unbiased_features(y, y)
    return float(hxy / np.sqrt(hxx * hyy)) if hxx > 0 and hyy > 0 else float("nan")


def _hsic_unbiased_features(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased HSIC (Song et al. 2012) of linear kernels, without forming the n × n Gram matrices."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = x.shape[0]
    kd = np.einsum("ij,ij->i", x, x)  # diagonal of K = X Xᵀ
    ld = np.einsum("ij,ij->i", y, y)
    sx, sy = x.sum(0), y.sum(0)
    tr_kl = np.linalg.norm(x.T @ y) ** 2 - kd @ ld  # tr(K̃ L̃), diagonals zeroed
    k1 = x @ sx - kd  # K̃ 1
    l1 = y @ sy - ld  # L̃ 1
    one_k_one = k1.sum()
    one_l_one = l1.sum()
    return float((tr_kl + one_k_one * one_l_one / ((n - 1) * (n - 2)) - 2 * (k1 @ l1) / (n - 2)) / (n * (n - 3)))


class Reference:
    """Statistics of one fixed activation matrix ``y`` (e.g. the final checkpoint's), reused by every
    :func:`cka_both` call against it, computed once in float64 with torch (multi-threaded BLAS)."""

    def __init__(self, y: np.ndarray) -> None:
        import torch

        self.y = torch.as_tensor(np.asarray(y), dtype=torch.float64)
        n = self.y.shape[0]
        self.n = n
        self.yc = self.y - self.y.mean(0, keepdim=True)
        self.yy_biased = float(torch.linalg.norm(self.yc.T @ self.yc))
        self.ld = (self.y * self.y).sum(1)
        self.l1 = self.y @ self.y.sum(0) - self.ld
        self.hyy = _hsic_terms(self.y, self.y, self.ld, self.ld, self.l1, self.l1)


def _hsic_terms(x, y, kd, ld, k1, l1) -> float:
    n = x.shape[0]
    tr_kl = float((x.T @ y).square().sum() - kd @ ld)
    return (tr_kl + float(k1.sum()) * float(l1.sum()) / ((n - 1) * (n - 2)) - 2 * float(k1 @ l1) / (n - 2)) / (
        n * (n - 3)
    )


def cka_both(x: np.ndarray, ref: Reference) -> tuple[float, float]:
    """(biased, debiased) linear CKA of ``x`` against a :class:`Reference`; equal to :func:`cka` for each."""
    import torch

    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    if x.shape[0] != ref.n:
        raise ValueError(f"CKA needs the same samples: {x.shape[0]} vs {ref.n} rows")
    xc = x - x.mean(0, keepdim=True)
    xy = float((xc.T @ ref.yc).square().sum())
    xx = float(torch.linalg.norm(xc.T @ xc))
    biased = xy / (xx * ref.yy_biased) if xx > 0 and ref.yy_biased > 0 else float("nan")
    kd = (x * x).sum(1)
    k1 = x @ x.sum(0) - kd
    hxy = _hsic_terms(x, ref.y, kd, ref.ld, k1, ref.l1)
    hxx = _hsic_terms(x, x, kd, kd, k1, k1)
    debiased = hxy / np.sqrt(hxx * ref.hyy) if hxx > 0 and ref.hyy > 0 else float("nan")
    return biased, debiased


def cka_gram(x: np.ndarray, y: np.ndarray, debiased: bool = False) -> float:
    """Reference: CKA from the n × n Gram matrices (slow; for tests)."""
    k = np.asarray(x, np.float64) @ np.asarray(x, np.float64).T
    m = np.asarray(y, np.float64) @ np.asarray(y, np.float64).T

    def hsic(a: np.ndarray, b: np.ndarray) -> float:
        n = a.shape[0]
        if not debiased:
            h = np.eye(n) - 1.0 / n
            return float(np.trace(a @ h @ b @ h))
        a, b = a.copy(), b.copy()
        np.fill_diagonal(a, 0)
        np.fill_diagonal(b, 0)
        one = np.ones(n)
        return float(
            (
                np.trace(a @ b)
                + (one @ a @ one) * (one @ b @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * one @ a @ b @ one
            )
            / (n * (n - 3))
        )

    return hsic(k, m) / np.sqrt(hsic(k, k) * hsic(m, m))
