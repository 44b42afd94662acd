"""Sample submissions for the attention assignment, each with one typical mistake.

Every mistake edits one solution cell of ``source/attention/attention.ipynb`` and costs only that
exercise's points (multi_head_attention calls F.scaled_dot_product_attention in the instructor
solution, so a broken ``scaled_dot_product_attention`` does not spread to later exercises).
"""
from . import SampleMistake

MISTAKES = [
    SampleMistake(
        student="attention_no_sqrt_dk",
        notebook="attention",
        cell="scaled_dot_product_attention",
        replace=(("scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)", "scores = q @ k.transpose(-2, -1)"),),
        diagnosis="no √d_k scaling",
    ),
    SampleMistake(
        student="attention_softmax_query_axis",
        notebook="attention",
        cell="scaled_dot_product_attention",
        replace=(("scores = scores - scores.amax(dim=-1, keepdim=True)",
                  "scores = scores - scores.amax(dim=-2, keepdim=True)"),
                 ("weights = e / e.sum(dim=-1, keepdim=True)", "weights = e / e.sum(dim=-2, keepdim=True)")),
        diagnosis="softmax over the query axis",
    ),
    SampleMistake(
        student="attention_pe_sin_cos_swapped",
        notebook="attention",
        cell="positional_encoding",
        replace=(("pe[:, 0::2] = torch.sin(angle)", "pe[:, 0::2] = torch.cos(angle)"),
                 ("pe[:, 1::2] = torch.cos(angle)", "pe[:, 1::2] = torch.sin(angle)")),
        diagnosis="sin/cos interleaving swapped",
    ),
    SampleMistake(
        student="attention_always_post_ln",
        notebook="attention",
        cell="transformer_encoder_block",
        replace=(("    if norm_first:", "    if False:"),),
        diagnosis="post-LN where pre-LN was asked",
    ),
    SampleMistake(
        student="attention_kv_cache_no_factor_2",
        notebook="attention",
        cell="kv_cache_bytes",
        replace=(("return 2 * num_layers * batch_size", "return num_layers * batch_size"),),
        diagnosis="the factor 2 for K and V is missing",
    ),
]
