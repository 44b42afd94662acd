"""Sample submissions for the Vision Transformer assignment (source/vit/vit.ipynb)."""
from . import SampleMistake

MISTAKES = [
    SampleMistake(
        student="vit_column_major",
        notebook="vit",
        cell="patchify",
        replace=(("blocks.permute(0, 2, 4, 1, 3, 5)", "blocks.permute(0, 4, 2, 1, 3, 5)"),),
        diagnosis="patches flattened in the wrong order (column-major)",
    ),
    SampleMistake(
        student="vit_channels_last",
        notebook="vit",
        cell="patch_embed_linear",
        replace=((".permute(0, 2, 4, 1, 3, 5)", ".permute(0, 2, 4, 3, 5, 1)"),),
        diagnosis="patches flattened in the wrong order (channels-last)",
    ),
    SampleMistake(
        student="vit_conv_stride",
        notebook="vit",
        cell="patch_embed_conv",
        replace=(("stride=patch_size)", "stride=1)"),),
        diagnosis="conv_proj stride ≠ patch size",
    ),
    SampleMistake(
        student="vit_cls_appended",
        notebook="vit",
        cell="embed_tokens",
        replace=(("torch.cat([cls, patch_embeddings], dim=1)", "torch.cat([patch_embeddings, cls], dim=1)"),),
        diagnosis="class token appended instead of prepended",
    ),
    SampleMistake(
        student="vit_mean_pool",
        notebook="vit",
        cell="ViT",
        replace=(("return self.heads(x[:, 0])", "return self.heads(x.mean(dim=1))"),),
        diagnosis="classification from the mean of tokens instead of the class token",
    ),
    SampleMistake(
        student="vit_no_final_ln",
        notebook="vit",
        cell="ViT",
        replace=(("x = self.encoder.ln(self.encoder.layers(x))", "x = self.encoder.layers(x)"),),
        diagnosis="missing final LayerNorm",
    ),
    SampleMistake(
        student="vit_post_ln",
        notebook="vit",
        cell="ViT",
        replace=(("h = self.ln_1(x)\n", "h = x\n"),
                 ("x = x + h\n", "x = self.ln_1(x + h)\n"),
                 ("return x + self.mlp(self.ln_2(x))", "return self.ln_2(x + self.mlp(x))")),
        diagnosis="post-LN where pre-LN was asked",
    ),
    SampleMistake(
        student="vit_no_scaling",
        notebook="vit",
        cell="attention_weights",
        replace=(("scores = q @ k.transpose(-2, -1) / d_k ** 0.5", "scores = q @ k.transpose(-2, -1)"),),
        diagnosis="no √d_k scaling",
    ),
    SampleMistake(
        student="vit_count_no_class_token",
        notebook="vit",
        cell="vit_param_count",
        replace=(("tokens = D + (L + 1) * D", "tokens = (L + 1) * D"),),
        diagnosis="the class token is not counted",
    ),
]
