"""(Multi-head) attention in float64 torch, with a switch for each known mistake.

The one implementation behind the mistakes the attention checks name (scaled dot-product attention,
multi-head attention, the encoder block) and those the ViT checks name (the encoder's attention,
the attention weights). With the default switches it computes attention correctly; each switch
reproduces one mistake, so that a student's wrong output can be recognised.

Shapes: B batch, h heads, T_q queries, T_k keys, d_model = h · d_k. A mask is a boolean keep-mask
(True = this query may look at this key) broadcastable to the scores (..., T_q, T_k), the convention
of ``torch.nn.functional.scaled_dot_product_attention``.
"""
from __future__ import annotations

import math

import torch


def stable_softmax(scores: torch.Tensor, dim: int) -> torch.Tensor:
    """softmax along ``dim``, the maximum subtracted first (a fully masked row gives NaN, as torch's)."""
    shifted = scores - scores.amax(dim=dim, keepdim=True)
    e = torch.exp(shifted)
    return e / e.sum(dim=dim, keepdim=True)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, *,
           divisor: float | None = None, dim: int = -1,
           mask_mode: str = "keep") -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention: ``(output, weights)``.

    q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v) -> output (..., T_q, d_v), weights (..., T_q, T_k).

    The switches: ``divisor`` divides the scores (None: √d_k); ``dim`` is the softmax axis (-2: over
    the queries); ``mask_mode`` is "keep" (-inf where the mask is False), "inverted" (``scores + mask * -1e9``
    with True = keep: the kept positions are suppressed), "after_softmax" (the weights multiplied by the
    mask, not renormalised) or "ignored".
    """
    scores = q @ k.transpose(-2, -1)
    scores = scores / (math.sqrt(q.shape[-1]) if divisor is None else divisor)
    if mask is not None and mask_mode == "keep":
        scores = scores.masked_fill(~mask, float("-inf"))
    elif mask is not None and mask_mode == "inverted":
        scores = scores + mask.to(scores.dtype) * -1e9
    elif mask_mode not in ("keep", "inverted", "after_softmax", "ignored"):
        raise ValueError(f"unknown mask_mode {mask_mode!r}")
    weights = stable_softmax(scores, dim)
    if mask is not None and mask_mode == "after_softmax":
        weights = weights * mask
    return weights @ v, weights


def split_heads(x: torch.Tensor, num_heads: int, *, transpose: bool = True) -> torch.Tensor:
    """(B, T, d_model) -> (B, h, T, d_k): each head keeps its own d_k channels of every token.

    ``transpose=False`` reshapes straight to (B, h, T, d_k), mixing tokens and channels (a mistake).
    """
    B, T, d_model = x.shape
    d_k = d_model // num_heads
    if not transpose:
        return x.reshape(B, num_heads, T, d_k)
    return x.reshape(B, T, num_heads, d_k).transpose(1, 2)


def merge_heads(o: torch.Tensor, *, transpose: bool = True) -> torch.Tensor:
    """(B, h, T, d_k) -> (B, T, h·d_k): the heads of one token side by side.

    ``transpose=False`` reshapes without moving the head axis back first (a mistake).
    """
    B, h, T, d_k = o.shape
    if not transpose:
        return o.reshape(B, T, h * d_k)
    return o.transpose(1, 2).reshape(B, T, h * d_k)


def score_divisor(divisor: str, d_k: int, d_model: int) -> float:
    """What the scores of one head are divided by: "sqrt_dk" (correct), "none", "dk" or "sqrt_d_model"."""
    return {"sqrt_dk": math.sqrt(d_k), "none": 1.0, "dk": d_k, "sqrt_d_model": math.sqrt(d_model)}[divisor]


def projections_from_packed(in_proj_weight: torch.Tensor, in_proj_bias: torch.Tensor,
                            out_proj_weight: torch.Tensor | None = None,
                            out_proj_bias: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """``nn.MultiheadAttention``'s packed ``in_proj`` (3·d_model, d_model), stacking W_q, W_k, W_v, as
    the parameters of :func:`multi_head_attention` (with W_o, b_o when ``out_proj_*`` are given)."""
    W_q, W_k, W_v = in_proj_weight.chunk(3)
    b_q, b_k, b_v = in_proj_bias.chunk(3)
    params = {"W_q": W_q, "b_q": b_q, "W_k": W_k, "b_k": b_k, "W_v": W_v, "b_v": b_v}
    if out_proj_weight is not None:
        params.update(W_o=out_proj_weight, b_o=out_proj_bias)
    return params


def multi_head_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         params: dict[str, torch.Tensor], num_heads: int, mask: torch.Tensor | None = None, *,
                         split_transpose: bool = True, merge_transpose: bool = True, divisor: str = "sqrt_dk",
                         dim: int = -1, mask_mode: str = "keep", transpose_w: bool = True, in_bias: bool = True,
                         swap_qk: bool = False, out_proj: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-head attention: ``(output, weights)``, output (B, T_q, d_model), weights (B, h, T_q, T_k).

    query (B, T_q, d_model), key and value (B, T_k, d_model); ``params`` holds W_q, b_q, W_k, b_k, W_v,
    b_v and (for the output projection) W_o, b_o in ``nn.Linear``'s convention: y = x Wᵀ + b, W of shape
    (d_model, d_model); ``mask`` broadcasts to (B, h, T_q, T_k).

    The switches, besides those of :func:`attend`: ``split_transpose``/``merge_transpose`` (see
    :func:`split_heads`, :func:`merge_heads`); ``divisor`` (see :func:`score_divisor`); ``transpose_w=False``
    projects with x @ W; ``in_bias=False`` leaves out b_q, b_k, b_v; ``swap_qk`` exchanges the projected
    queries and keys; ``out_proj=False`` returns the merged heads without W_o.
    """
    def project(x, role, bias=True):
        W = params[f"W_{role}"]
        return x @ (W.T if transpose_w else W) + (params[f"b_{role}"] if bias else 0)

    Q, K, V = (project(x, role, in_bias) for x, role in ((query, "q"), (key, "k"), (value, "v")))
    if swap_qk:
        Q, K = K, Q
    d_model = Q.shape[-1]
    d_k = d_model // num_heads
    heads = [split_heads(X, num_heads, transpose=split_transpose) for X in (Q, K, V)]
    attended, weights = attend(*heads, mask, divisor=score_divisor(divisor, d_k, d_model), dim=dim,
                               mask_mode=mask_mode)
    merged = merge_heads(attended, transpose=merge_transpose)
    return (project(merged, "o") if out_proj else merged), weights
