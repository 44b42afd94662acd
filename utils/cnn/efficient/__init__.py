"""Checks for ``cnn_efficient.ipynb``: efficient CNN blocks and what a network costs.

The notebook asks for, in this order:

* ``DepthwiseSeparableConv(in_channels, out_channels, kernel_size=3, stride=1, dilation=1, padding=None)`` —
  :mod:`~utils.cnn.efficient.depthwise_separable`;
* ``InvertedResidual(in_channels, out_channels, stride=1, expand_ratio=4)``, the MBConv block with SE —
  :mod:`~utils.cnn.efficient.inverted_residual`;
* ``count_macs(model, input_shape) -> {layer name: MACs}`` — :mod:`~utils.cnn.efficient.macs`;
* ``efficiency_answers``, a dict of costs worked out by hand — :mod:`~utils.cnn.efficient.answers`.

The two blocks are module exercises (:func:`~utils.cnn.architectures.shared.module_exercise`: parameter counts,
then outputs in float64 after loading the check's weights by name, in eval mode and after one train-mode forward
on a batch). The MAC counts are compared with ``torch.utils.flop_counter.FlopCounterMode`` run on the same
networks when the check runs; the dict's answers with torch modules, FlopCounterMode and autograd. No check
touches the global numpy or torch random generators; references and mistakes are computed from the case inputs
alone, so the trusted grader can run them outside the student's kernel.
"""
from utils.cnn.efficient.answers import EFFICIENCY_ANSWERS, check_efficiency_answers
from utils.cnn.efficient.depthwise_separable import SEPARABLE, check_DepthwiseSeparableConv
from utils.cnn.efficient.inverted_residual import INVERTED_RESIDUAL, check_InvertedResidual
from utils.cnn.efficient.macs import MACS, check_count_macs

EXERCISES = {e.function: e for e in (SEPARABLE, INVERTED_RESIDUAL, MACS, EFFICIENCY_ANSWERS)}

__all__ = ["EXERCISES", "check_DepthwiseSeparableConv", "check_InvertedResidual", "check_count_macs",
           "check_efficiency_answers"]
