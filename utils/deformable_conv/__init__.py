"""Checks for the deformable-convolution assignment (modulated deformable convolution, DCNv2).

The notebook asks for four NumPy functions, each built on the one before:

* ``conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1) -> int``
  (:mod:`~utils.deformable_conv.conv_output_size`);
* ``bilinear_interpolate(a_l, q_y, q_x) -> float`` with ``a_l`` of shape (H, W), zero outside
  (:mod:`~utils.deformable_conv.bilinear_interpolate`);
* ``sampling_positions(delta, kernel_size, stride=1, padding=0, dilation=1) -> (p_y, p_x)`` and
  ``deform_conv2d(a_l, delta, mask, weight, stride=1, padding=0, dilation=1)``, as
  ``torchvision.ops.deform_conv2d(..., bias=None)`` (:mod:`~utils.deformable_conv.deform_conv2d`).

These modules run in the student's kernel (to call the student's functions) and in the grader (to
compute references and name mistakes). The notebook is graded from scratch in a kernel that cannot
import torch, torchvision or the course's own reference, :mod:`~utils.deformable_conv.computations`
(torchvision's references, and NumPy re-implementations that are complete answers with their mistake
switches off): the exercise modules import it only inside the functions that compute references,
mistakes and case sizes, never at module level or in ``Exercise.call``.
"""
from utils.deformable_conv.bilinear_interpolate import BILINEAR, check_bilinear_interpolate
from utils.deformable_conv.conv_output_size import OUTPUT_SIZE, check_conv_output_size
from utils.deformable_conv.deform_conv2d import DEFORM, POSITIONS, check_deform_conv2d, check_sampling_positions

EXERCISES = {e.function: e for e in (OUTPUT_SIZE, BILINEAR, POSITIONS, DEFORM)}

__all__ = ["EXERCISES", "check_bilinear_interpolate", "check_conv_output_size", "check_deform_conv2d",
           "check_sampling_positions"]
