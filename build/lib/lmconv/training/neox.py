"""GPT-NeoX weight anatomy: the fused QKV split as the model itself splits it, OV circuits, and the list of
2-D matrices every spectral and rank analysis walks.

HF GPT-NeoX views the fused ``query_key_value`` output per head as ``[q_h | k_h | v_h]``
(``view(..., heads, 3 * head_dim)``), so the value rows of head ``h`` are ``h*3*hd + 2*hd … (h+1)*3*hd``,
not the last third of the tensor (the slice the activation-convergence paper's code took).
"""

from __future__ import annotations

import torch

MATRIX_KINDS = ("q", "k", "v", "o", "mlp_in", "mlp_out")
ATTENTION_KINDS = ("q", "k", "v", "o")
MLP_KINDS = ("mlp_in", "mlp_out")
EMBED_KINDS = ("embed_in", "embed_out")


def split_qkv(fused: torch.Tensor, heads: int, dim: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split a fused QKV tensor along ``dim`` (a ``(3d, ...)`` weight or bias, or the ``(..., 3d)`` output of
    the fused projection with ``dim=-1``) into contiguous Q, K, V, each of size d there, heads in order."""
    x = fused.movedim(dim, 0)
    hd = x.shape[0] // (3 * heads)
    w = x.reshape(heads, 3, hd, *x.shape[1:])
    q, k, v = (w[:, i].reshape(heads * hd, *x.shape[1:]).movedim(0, dim).contiguous() for i in range(3))
    return q, k, v


def last_third(fused: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """The original paper's "V": the last third of the fused rows (mixes q/k/v of the last heads)."""
    n = fused.shape[dim]
    return fused.narrow(dim, n - n // 3, n // 3)


def matrix_name(layer: int, kind: str) -> str:
    """The one naming of an analysed matrix: ``layers.{layer}.{kind}``; embeddings keep their kind as name."""
    return kind if layer < 0 else f"layers.{layer}.{kind}"


def parse_matrix_name(name: str) -> tuple[int, str]:
    """``(layer, kind)`` of a :func:`matrix_name` (layer −1 for the embeddings)."""
    if name.startswith("layers."):
        _, layer, kind = name.split(".")
        return int(layer), kind
    return -1, name


def layers(model) -> list:
    return list(model.gpt_neox.layers)


def layer_matrices(layer, heads: int) -> dict[str, torch.Tensor]:
    """The six 2-D weight matrices of one layer, in ``MATRIX_KINDS`` order (``(out, in)`` as nn.Linear)."""
    q, k, v = split_qkv(layer.attention.query_key_value.weight, heads)
    return {
        "q": q,
        "k": k,
        "v": v,
        "o": layer.attention.dense.weight,
        "mlp_in": layer.mlp.dense_h_to_4h.weight,
        "mlp_out": layer.mlp.dense_4h_to_h.weight,
    }


def matrices(model, embeddings: bool = False) -> dict[str, torch.Tensor]:
    """Every analysed 2-D weight matrix, keyed ``layers.{i}.{kind}`` (plus ``embed_in``/``embed_out``)."""
    heads = model.config.num_attention_heads
    out = {}
    for i, layer in enumerate(layers(model)):
        for kind, w in layer_matrices(layer, heads).items():
            out[matrix_name(i, kind)] = w
    if embeddings:
        out["embed_in"] = model.gpt_neox.embed_in.weight
        out["embed_out"] = model.get_output_embeddings().weight
    return out


def ov_circuits(layer, heads: int, faithful_v: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The layer's OV matrix ``W_O W_V`` (d × d) and one per head ``W_O[:, h] W_V[h]``.

    ``faithful_v`` takes V as the original code did (:func:`last_third`) instead of the model's own split.
    """
    w_qkv = layer.attention.query_key_value.weight
    w_v = last_third(w_qkv) if faithful_v else split_qkv(w_qkv, heads)[2]
    w_o = layer.attention.dense.weight
    hd = w_v.shape[0] // heads
    per_head = [w_o[:, h * hd : (h + 1) * hd] @ w_v[h * hd : (h + 1) * hd] for h in range(heads)]
    return w_o @ w_v, per_head
