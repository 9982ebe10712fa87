"""The singular distribution of weight matrices (SoSD, Zhang et al. 2026) and its movement.

``Σ̂ = σ / Σσ`` (trace-normalised singular values, sorted descending). ``ΔΣ = ‖Σ̂_{t'} − Σ̂_t‖₂`` between
consecutive records; with unevenly spaced records the rate ``ΔΣ / (t' − t)`` is reported beside it. By
Mirsky's inequality ``‖σ(W') − σ(W)‖₁ ≤ ‖W' − W‖_*``, hence ``ΔΣ ≤ 2‖ΔW‖_* / ‖W'‖_*`` (the bound).
"""

from __future__ import annotations

import numpy as np
import torch


def singular_values(w: torch.Tensor | np.ndarray, dtype: torch.dtype = torch.float64) -> np.ndarray:
    """Singular values (descending), computed in ``dtype`` and returned as float64."""
    t = torch.as_tensor(np.asarray(w) if not isinstance(w, torch.Tensor) else w.detach())
    return torch.linalg.svdvals(t.to(dtype)).double().numpy()


def distribution(sv: np.ndarray) -> np.ndarray:
    """Σ̂: singular values sorted descending, divided by their sum (the nuclear norm)."""
    s = np.sort(np.asarray(sv, dtype=np.float64), axis=-1)[..., ::-1]
    return s / s.sum(axis=-1, keepdims=True)


def delta_sigma(sv_a: np.ndarray, sv_b: np.ndarray) -> float:
    """‖Σ̂_b − Σ̂_a‖₂."""
    return float(np.linalg.norm(distribution(sv_b) - distribution(sv_a)))


def cosine(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Cosine of two arrays taken as flat vectors (in float64)."""
    a, b = _flat_double(a), _flat_double(b)
    den = float(torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b))
    return float(a @ b) / den if den > 0 else float("nan")


def _flat_double(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    # torch.tensor copies a NumPy array (torch.as_tensor warns on read-only ones, e.g. from np.load)
    t = torch.tensor(x, dtype=torch.float64) if isinstance(x, np.ndarray) else torch.as_tensor(x).double()
    return t.reshape(-1)


def norms(sv: np.ndarray) -> dict[str, float]:
    s = np.asarray(sv, dtype=np.float64)
    return {"fro": float(np.sqrt((s**2).sum())), "spectral": float(s.max()), "nuclear": float(s.sum())}


def bound(delta_w_sv: np.ndarray, sv_new: np.ndarray) -> float:
    """``2‖ΔW‖_* / ‖W'‖_*`` from the singular values of ΔW and of W'."""
    return float(2 * np.sum(delta_w_sv) / np.sum(sv_new))


def spectra_deltas(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ΔΣ between consecutive records ``values[k]``, ``values[k+1]`` (any leading matrix axes), and the rate.

    Returns ``(delta, rate)`` of shape ``(records − 1, …)``, indexed by the *later* record's step.
    """
    p = distribution(values)
    d = np.linalg.norm(np.diff(p, axis=0), axis=-1)
    gaps = np.diff(np.asarray(steps, dtype=np.float64)).reshape(-1, *([1] * (d.ndim - 1)))
    return d, d / gaps
