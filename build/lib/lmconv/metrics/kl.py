"""KL divergences between next-token distributions, for all seed pairs at once.

For S seeds and a block of n tokens with log-probabilities ``logp`` of shape ``(S, n, V)``,
``KL(p_i‖p_j) = Σ_v p_i (log p_i − log p_j)`` for every ordered pair comes from one batched product:
``A[t, i, j] = Σ_v p_i[t, v] · D_j[t, v]``, then ``KL(p_i‖p_j) = A[t, i, i] − A[t, i, j]``. In float64
``D = log p`` and the diagonal is minus each seed's entropy, so one product gives both; in float32 ``D`` is
``log p − mean_s log p`` (centring each token's log-probs across seeds keeps both terms small, so float32
loses no accuracy to cancellation). Nothing of size V is kept beyond the block.
"""

from __future__ import annotations

import math

import torch


def all_pairs_kl(logp: torch.Tensor, p: torch.Tensor | None = None) -> torch.Tensor:
    """``(S, n, V)`` log-probs → ``(S, S, n)`` with ``[i, j, t] = KL(p_i(·|t) ‖ p_j(·|t))`` in nats.

    ``p`` (the probabilities) may be passed when the caller has them already."""
    return _pairs(_cross(logp, logp.exp() if p is None else p))


def _cross(logp: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``(n, S, S)``: ``Σ_v p_i D_j`` (``D`` as in the module docstring)."""
    d = logp if logp.dtype == torch.float64 else logp - logp.mean(dim=0, keepdim=True)
    return torch.bmm(p.transpose(0, 1), d.permute(1, 2, 0))


def _pairs(a: torch.Tensor) -> torch.Tensor:
    diag = torch.diagonal(a, dim1=1, dim2=2)  # (n, S)
    return (diag.unsqueeze(2) - a).permute(1, 2, 0).clamp_min_(0.0)


def block_statistics(logp: torch.Tensor, target: torch.Tensor, ref_logp: torch.Tensor) -> dict[str, torch.Tensor]:
    """Everything the engine takes from one block of ``(S, n, V)`` log-probs, with one ``exp`` and (in float64)
    one batched product: surprisal of ``target`` (n,), entropy, KL to uniform, KL to ``ref_logp`` (S, n), and
    all-pairs KL (S, S, n)."""
    p = logp.exp()
    a = _cross(logp, p)
    # in float64 the product's diagonal is Σ_v p_i log p_i
    ent = -torch.diagonal(a, dim1=1, dim2=2).T if logp.dtype == torch.float64 else -(p * logp).sum(-1)
    return {
        "surprisal": -logp.gather(2, target.expand(logp.shape[0], -1).unsqueeze(-1)).squeeze(-1),
        "entropy": ent,
        "kl_uniform": math.log(logp.shape[-1]) - ent,
        "kl_unigram": -ent - p @ ref_logp.to(p.dtype),
        "pairs": _pairs(a),
    }


def pairwise_kl_loop(logp: torch.Tensor) -> torch.Tensor:
    """The anchor's method: a loop over ordered pairs, ``Σ exp(lp_i)·(lp_i − lp_j)`` each time."""
    s = logp.shape[0]
    out = torch.zeros(s, s, logp.shape[1], dtype=logp.dtype)
    for i in range(s):
        for j in range(s):
            if i != j:
                out[i, j] = (logp[i].exp() * (logp[i] - logp[j])).sum(-1)
    return out


def kl_to(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """``KL(p ‖ r)`` per token for log-probs ``(..., V)`` and a reference ``(V,)``."""
    return (logp.exp() * (logp - ref_logp)).sum(-1)


def entropy(logp: torch.Tensor) -> torch.Tensor:
    return -(logp.exp() * logp).sum(-1)


def kl_to_uniform(logp: torch.Tensor) -> torch.Tensor:
    """``KL(p ‖ uniform) = log V − H(p)``."""
    return math.log(logp.shape[-1]) - entropy(logp)


def unigram_logprobs(counts, smoothing: float = 0.5) -> torch.Tensor:
    """Log of the add-``smoothing`` unigram distribution of token counts (every id gets mass)."""
    c = torch.as_tensor(counts, dtype=torch.float64) + smoothing
    return (c / c.sum()).log().float()
