"""Checks for the attention assignment: scaled dot-product attention, multi-head attention,
sinusoidal positional encoding, the Transformer encoder block, and what attention costs.

The notebook asks for (tensors are float64 ``torch.Tensor``; a mask is a boolean tensor, **True = keep**,
broadcastable to the scores, the convention of ``torch.nn.functional.scaled_dot_product_attention``):

* ``scaled_dot_product_attention(q, k, v, mask=None) -> (output, weights)`` — :mod:`.scaled_dot_product`;
* ``multi_head_attention(query, key, value, params, num_heads, mask=None)`` — :mod:`.multi_head`;
* ``positional_encoding(max_len, d_model)`` — :mod:`.positional_encoding`;
* ``transformer_encoder_block(x, params, num_heads, norm_first=False, activation="relu", mask=None)``
  — :mod:`.encoder_block`;
* ``mha_param_count``, ``attention_matrix_bytes``, ``kv_cache_bytes`` — :mod:`.costs`.

Each module holds its exercise's settings, cases, reference, known mistakes and ``check_*``. The
references run when a check runs (in the student's kernel, or in the trusted grader), in float64,
from torch: ``F.scaled_dot_product_attention``, ``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer``
loaded with the case's weights, and for the costs the parameters and tensors of real modules on the
``meta`` device. The known attention mistakes all come from one implementation, :mod:`.mha`, which the
ViT checks use too; :mod:`.cases` holds the masks and weights the exercises share.
"""
from utils.attention.costs import (
    KV,
    MATRIX,
    PARAMS,
    check_attention_matrix_bytes,
    check_kv_cache_bytes,
    check_mha_param_count,
)
from utils.attention.encoder_block import BLOCK, check_transformer_encoder_block
from utils.attention.multi_head import MHA, check_multi_head_attention
from utils.attention.positional_encoding import PE, check_positional_encoding
from utils.attention.scaled_dot_product import SDPA, check_scaled_dot_product_attention

EXERCISES = {e.function: e for e in (SDPA, MHA, PE, BLOCK, PARAMS, MATRIX, KV)}

__all__ = ["EXERCISES", "check_scaled_dot_product_attention", "check_multi_head_attention",
           "check_positional_encoding", "check_transformer_encoder_block", "check_mha_param_count",
           "check_attention_matrix_bytes", "check_kv_cache_bytes"]
