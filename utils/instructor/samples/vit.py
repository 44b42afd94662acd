"""Sample submissions for the Vision Transformer assignment (source/vit/vit.ipynb)."""
from . import in_notebook

mistake = in_notebook("vit")

MISTAKES = [
    mistake("vit_column_major", "patchify",
            ("blocks.permute(0, 2, 4, 1, 3, 5)", "blocks.permute(0, 4, 2, 1, 3, 5)"),
            diagnosis="patches flattened in the wrong order (column-major)"),
    mistake("vit_channels_last", "patch_embed_linear",
            (".permute(0, 2, 4, 1, 3, 5)", ".permute(0, 2, 4, 3, 5, 1)"),
            diagnosis="patches flattened in the wrong order (channels-last)"),
    mistake("vit_conv_stride", "patch_embed_conv",
            ("stride=patch_size)", "stride=1)"),
            diagnosis="conv_proj stride ≠ patch size"),
    mistake("vit_cls_appended", "embed_tokens",
            ("torch.cat([cls, patch_embeddings], dim=1)", "torch.cat([patch_embeddings, cls], dim=1)"),
            diagnosis="class token appended instead of prepended"),
    mistake("vit_mean_pool", "ViT",
            ("return self.heads(x[:, 0])", "return self.heads(x.mean(dim=1))"),
            diagnosis="classification from the mean of tokens instead of the class token"),
    mistake("vit_no_final_ln", "ViT",
            ("x = self.encoder.ln(self.encoder.layers(x))", "x = self.encoder.layers(x)"),
            diagnosis="missing final LayerNorm"),
    mistake("vit_post_ln", "ViT",
            ("h = self.ln_1(x)\n", "h = x\n"),
            ("x = x + h\n", "x = self.ln_1(x + h)\n"),
            ("return x + self.mlp(self.ln_2(x))", "return self.ln_2(x + self.mlp(x))"),
            diagnosis="post-LN where pre-LN was asked"),
    mistake("vit_no_scaling", "attention_weights",
            ("scores = q @ k.transpose(-2, -1) / d_k ** 0.5", "scores = q @ k.transpose(-2, -1)"),
            diagnosis="no √d_k scaling"),
    mistake("vit_count_no_class_token", "vit_param_count",
            ("tokens = D + (L + 1) * D", "tokens = (L + 1) * D"),
            diagnosis="the class token is not counted"),
]
