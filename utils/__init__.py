"""Checks for the deep-learning architectures course.

Each ``check_<exercise>(your_function)`` runs your implementation on several
cases, compares it with a torch/torchvision reference computed in float64, and
either shows a ✓ line or raises :class:`CheckFailure` whose message says which
case failed, where, and the likely mistake.
"""
from .deformable import (check_bilinear_interpolate, check_conv_output_size, check_deform_conv2d,
                         check_sampling_positions)
from .feedback import CheckFailure, CheckResult, NotImplementedYet

__all__ = ["CheckFailure", "CheckResult", "NotImplementedYet", "check_bilinear_interpolate",
           "check_conv_output_size", "check_deform_conv2d", "check_sampling_positions"]
