"""Effective rank (Roy & Vetterli 2007) and proportional effective rank, as the activation-convergence paper.

``ER = exp(−Σ p log p)`` with ``p = s / ‖s‖₁`` over the top-``k`` singular values ``s``; ``PER = ER / k``.
The paper's ``k`` is ``d_head`` for attention OV matrices (per head and per layer) and ``d_model`` for the
MLP output projection.
"""

from __future__ import annotations

import numpy as np
import torch

from ..training import neox


def effective_rank(singular_values, k: int | None = None) -> float:
    s = np.sort(np.abs(np.asarray(singular_values, dtype=np.float64)))[::-1]
    if k is not None:
        s = s[:k]
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def proportional_effective_rank(singular_values, k: int) -> float:
    return effective_rank(singular_values, k) / k


def _sv(w: torch.Tensor) -> np.ndarray:
    return torch.linalg.svdvals(w.detach().float()).double().numpy()


def low_rank_singular_values(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Singular values of ``a @ b`` (``a``: d × r, ``b``: r × d, r ≪ d) from an r × r problem:
    with ``a = Q_a R_a`` and ``bᵀ = Q_b R_b``, ``a b = Q_a (R_a R_bᵀ) Q_bᵀ`` has the singular values of ``R_a R_bᵀ``."""
    ra = torch.linalg.qr(a.detach().float(), mode="r").R
    rb = torch.linalg.qr(b.detach().float().T, mode="r").R
    return torch.linalg.svdvals(ra @ rb.T).double().numpy()


def per_rows(model, grads: bool = False, faithful_v: bool = False) -> list[dict]:
    """PER of every OV circuit (per layer and per head) and MLP output matrix of ``model``.

    With ``grads``, uses the parameters' ``.grad``: the OV gradient by the product rule
    ``dW_O·W_V + W_O·dW_V`` (per head and per layer), the MLP one directly.
    """
    heads = model.config.num_attention_heads
    d = model.config.hidden_size
    hd = d // heads
    rows = []
    for i, layer in enumerate(neox.layers(model)):
        w_qkv, w_o = layer.attention.query_key_value.weight, layer.attention.dense.weight
        w_v = neox.last_third(w_qkv) if faithful_v else neox.split_qkv(w_qkv, heads)[2]
        g_v = g_o = None
        if grads:
            g_v = neox.last_third(w_qkv.grad) if faithful_v else neox.split_qkv(w_qkv.grad, heads)[2]
            g_o = w_o.grad

        def factors(sl: slice) -> tuple[torch.Tensor, torch.Tensor]:
            """OV (or its product-rule gradient dW_O·W_V + W_O·dW_V) of the heads in ``sl`` as A @ B."""
            if not grads:
                return w_o[:, sl], w_v[sl]  # noqa: B023
            return torch.cat([g_o[:, sl], w_o[:, sl]], 1), torch.cat([w_v[sl], g_v[sl]], 0)  # noqa: B023

        kind = "grad" if grads else "weight"
        a, b = factors(slice(0, d))
        rows.append(
            {
                "layer": i,
                "circuit": "ov_layer",
                "head": -1,
                "kind": kind,
                "per": proportional_effective_rank(_sv(a @ b), hd),
            }
        )
        for h in range(heads):
            a, b = factors(slice(h * hd, (h + 1) * hd))
            rows.append(
                {
                    "layer": i,
                    "circuit": "ov_head",
                    "head": h,
                    "kind": kind,
                    "per": proportional_effective_rank(low_rank_singular_values(a, b), hd),
                }
            )
        w = layer.mlp.dense_4h_to_h.weight
        rows.append(
            {
                "layer": i,
                "circuit": "mlp_out",
                "head": -1,
                "kind": kind,
                "per": proportional_effective_rank(_sv(w.grad if grads else w), d),
            }
        )
    return rows
