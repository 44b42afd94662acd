"""Sample submissions for the attention assignment, each with one typical mistake.

Every mistake edits one solution cell of ``source/attention/attention.ipynb`` and costs only that
exercise's points (multi_head_attention calls F.scaled_dot_product_attention in the instructor
solution, so a broken ``scaled_dot_product_attention`` does not spread to later exercises).
"""
from . import in_notebook

mistake = in_notebook("attention")

MISTAKES = [
    mistake("attention_no_sqrt_dk", "scaled_dot_product_attention",
            ("scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)", "scores = q @ k.transpose(-2, -1)"),
            diagnosis="no √d_k scaling"),
    mistake("attention_softmax_query_axis", "scaled_dot_product_attention",
            ("scores = scores - scores.amax(dim=-1, keepdim=True)",
             "scores = scores - scores.amax(dim=-2, keepdim=True)"),
            ("weights = e / e.sum(dim=-1, keepdim=True)", "weights = e / e.sum(dim=-2, keepdim=True)"),
            diagnosis="softmax over the query axis"),
    mistake("attention_pe_sin_cos_swapped", "positional_encoding",
            ("pe[:, 0::2] = torch.sin(angle)", "pe[:, 0::2] = torch.cos(angle)"),
            ("pe[:, 1::2] = torch.cos(angle)", "pe[:, 1::2] = torch.sin(angle)"),
            diagnosis="sin/cos interleaving swapped"),
    mistake("attention_always_post_ln", "transformer_encoder_block",
            ("    if norm_first:", "    if False:"),
            diagnosis="post-LN where pre-LN was asked"),
    mistake("attention_kv_cache_no_factor_2", "kv_cache_bytes",
            ("return 2 * num_layers * batch_size", "return num_layers * batch_size"),
            diagnosis="the factor 2 for K and V is missing"),
]
