"""Sample submissions for the ``cnn_segmentation`` notebook of the ``cnn`` assignment.

Each one edits a single solution cell (``BottleneckAttentionUNet`` builds on ``UNet``: the ``UNet`` sample also
costs the hybrid its points, as it would a student).
"""
from . import in_notebook

mistake = in_notebook("cnn_segmentation")

MISTAKES = [
    mistake("cnn_unet_up_first", "UNet",
            ("torch.cat([skips[k], x], dim=1)", "torch.cat([x, skips[k]], dim=1)"),
            diagnosis="skip and up-sampled map concatenated in the other order"),
    mistake("cnn_unet_attention_no_residual", "BottleneckAttentionUNet",
            ("t = t + self.attn(u, u, u, need_weights=False)[0]", "t = self.attn(u, u, u, need_weights=False)[0]"),
            diagnosis="no residual connection around the attention"),
    mistake("cnn_unet_score_ratio_linear", "unet_answers",
            ('unet_answers["score_ratio"] = (128 * 192) ** 2 // (8 * 12) ** 2',
             'unet_answers["score_ratio"] = (128 * 192) // (8 * 12)'),
            diagnosis="the ratio of token counts"),
]
