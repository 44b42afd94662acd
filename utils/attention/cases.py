"""What the attention exercises share in their cases: keep-masks, random projection weights, the
tensors a student is called with and what they return, and the library attention a from-scratch
answer must not call.

A case holds numpy arrays (trusted grading pickles them); the student gets float64 tensors.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from utils.checks.adapters import float64_tensor

# Library attention a from-scratch answer must not call (see Exercise.forbidden). Multi-head
# attention may build on F.scaled_dot_product_attention, the building block of exercise 1.
LIBRARY_MHA = ("torch.nn.MultiheadAttention", "torch.nn.functional.multi_head_attention_forward")


def key_keep(lengths, T_k: int) -> np.ndarray:
    """(B, T_k) booleans: key j of sequence b is real (not padding) when j < lengths[b]."""
    return np.arange(T_k)[None, :] < np.asarray(lengths)[:, None]


def student_mask(causal: bool, keep_keys: np.ndarray | None, T_q: int, T_k: int) -> np.ndarray | None:
    """The boolean keep-mask a student receives: (T_q, T_k), (B, 1, 1, T_k) or (B, 1, T_q, T_k)."""
    mask = None
    if causal:
        mask = np.tril(np.ones((T_q, T_k), dtype=bool))
    if keep_keys is not None:
        padding = np.asarray(keep_keys, dtype=bool)[:, None, None, :]
        mask = padding if mask is None else (mask[None, None] & padding)
    return mask


def attention_params(rng: np.random.Generator, d_model: int) -> dict[str, np.ndarray]:
    """Random W_q, b_q, W_k, b_k, W_v, b_v, W_o, b_o (W: (d_model, d_model), scaled by 1/√d_model)."""
    s = 1 / math.sqrt(d_model)
    return {name: rng.normal(scale=s if name.startswith("W") else 0.1,
                             size=(d_model, d_model) if name.startswith("W") else (d_model,))
            for name in ("W_q", "b_q", "W_k", "b_k", "W_v", "b_v", "W_o", "b_o")}


def mask_tensor(mask: np.ndarray | None) -> torch.Tensor | None:
    return None if mask is None else torch.from_numpy(np.array(mask, dtype=bool))


def params_tensors(params: dict) -> dict[str, torch.Tensor]:
    return {name: float64_tensor(value) for name, value in params.items()}
