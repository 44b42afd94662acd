"""Checks for ``cnn_segmentation.ipynb``: dense prediction with an encoder–decoder.

The notebook asks for, in this order:

* the class ``UNet(in_channels, num_classes, base_channels=16, depth=3)`` — :mod:`~utils.cnn.segmentation.unet`;
* ``unet_answers``, a dict of shapes and parameter counts scale by scale and the attention cost at the
  bottleneck — :mod:`~utils.cnn.segmentation.answers`;
* the class ``BottleneckAttentionUNet(in_channels, num_classes, base_channels=16, depth=3, num_heads=2)`` —
  :mod:`~utils.cnn.segmentation.bottleneck_attention`.

:mod:`~utils.cnn.segmentation.shared` holds what the two networks share: the float64 references built from torch
layers (``nn.MultiheadAttention`` for the hybrid), loaded with the check's weights, and the trace that compares
every block's output in forward order so that a failure names the scale where the network first differs. No
check touches the global numpy or torch random generators; ``Exercise.call`` only runs the student's code, and
references and mistakes are computed from the case inputs alone.
"""
from utils.cnn.segmentation.answers import ANSWERS, check_unet_answers
from utils.cnn.segmentation.bottleneck_attention import ATTENTION_UNET, check_BottleneckAttentionUNet
from utils.cnn.segmentation.unet import UNET, check_UNet

EXERCISES = {e.function: e for e in (UNET, ANSWERS, ATTENTION_UNET)}

__all__ = ["EXERCISES", "check_BottleneckAttentionUNet", "check_UNet", "check_unet_answers"]
