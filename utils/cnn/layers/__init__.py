"""Checks for the notebook "CNN layers from scratch" (assignment ``cnn``, notebook ``cnn_layers``).

The student writes every layer of a small CNN in NumPy, forward and backward, then answers questions
by hand. One module per layer; each holds its exercises' cases, torch reference, known mistakes and
``check_*`` functions (its docstring gives the signatures the notebook asks for):

* :mod:`~utils.cnn.layers.conv2d` — ``conv2d_forward``, ``conv2d_backward``;
* :mod:`~utils.cnn.layers.pooling` — ``maxpool2d_*``, ``avgpool2d_*``, ``global_avg_pool_*``;
* :mod:`~utils.cnn.layers.linear_relu` — ``relu_*``, ``linear_*``;
* :mod:`~utils.cnn.layers.batchnorm` — ``batchnorm_forward``, ``batchnorm_backward``;
* :mod:`~utils.cnn.layers.loss` — ``softmax_cross_entropy``;
* :mod:`~utils.cnn.layers.gradient_check` — ``numerical_gradient``;
* :mod:`~utils.cnn.layers.network` — ``network_backward`` and ``numpy_train_steps``: the layers composed into
  one network, its backward pass and a few SGD steps;
* :mod:`~utils.cnn.layers.by_hand` — the dicts ``size_answers``, ``param_answers``, ``rf_answers``,
  ``hand_answers``;
* :mod:`~utils.cnn.layers.shared` — what they share: torch on first use, outputs packed as one
  vector, case building;
* :mod:`~utils.cnn.layers.computations` — NumPy versions of the layers whose switches reproduce the
  known mistakes (with the switches off, complete answers).

These modules run in the student's kernel, where this notebook blocks torch and the course's NumPy
reference (:mod:`~utils.cnn.layers.computations`), and in the grader. Importing them never imports
either: only references and mistakes (computed in the grader, or when a student runs a check)
import them, on first use. Arrays are numpy, float64 unless said otherwise;
references are torch (autograd for the backward passes) in float64, and the known mistakes are the
same computation done wrongly.
"""
from utils.cnn.layers.batchnorm import BN_BACKWARD, BN_FORWARD, check_batchnorm_backward, check_batchnorm_forward
from utils.cnn.layers.by_hand import (
    HAND_ANSWERS,
    PARAM_ANSWERS,
    RF_ANSWERS,
    SIZE_ANSWERS,
    check_hand_answers,
    check_param_answers,
    check_rf_answers,
    check_size_answers,
)
from utils.cnn.layers.conv2d import CONV_BACKWARD, CONV_FORWARD, check_conv2d_backward, check_conv2d_forward
from utils.cnn.layers.gradient_check import NUMERICAL_GRADIENT, check_numerical_gradient
from utils.cnn.layers.linear_relu import (
    LINEAR_BACKWARD,
    LINEAR_FORWARD,
    RELU_BACKWARD,
    RELU_FORWARD,
    check_linear_backward,
    check_linear_forward,
    check_relu_backward,
    check_relu_forward,
)
from utils.cnn.layers.loss import SOFTMAX_CE, check_softmax_cross_entropy
from utils.cnn.layers.network import (
    NETWORK_BACKWARD,
    NUMPY_TRAIN_STEPS,
    check_network_backward,
    check_numpy_train_steps,
)
from utils.cnn.layers.pooling import (
    AVGPOOL_BACKWARD,
    AVGPOOL_FORWARD,
    GAP_BACKWARD,
    GAP_FORWARD,
    MAXPOOL_BACKWARD,
    MAXPOOL_FORWARD,
    check_avgpool2d_backward,
    check_avgpool2d_forward,
    check_global_avg_pool_backward,
    check_global_avg_pool_forward,
    check_maxpool2d_backward,
    check_maxpool2d_forward,
)

# In the registry's order (utils.checks.registry.CHECK_MODULES).
EXERCISES = {e.function: e for e in (
    CONV_FORWARD, CONV_BACKWARD, MAXPOOL_FORWARD, MAXPOOL_BACKWARD, AVGPOOL_FORWARD, AVGPOOL_BACKWARD,
    GAP_FORWARD, GAP_BACKWARD, RELU_FORWARD, RELU_BACKWARD, LINEAR_FORWARD, LINEAR_BACKWARD,
    BN_FORWARD, BN_BACKWARD, SOFTMAX_CE, NUMERICAL_GRADIENT,
    SIZE_ANSWERS, PARAM_ANSWERS, RF_ANSWERS, HAND_ANSWERS, NETWORK_BACKWARD, NUMPY_TRAIN_STEPS)}

__all__ = [
    "EXERCISES",
    "check_conv2d_forward", "check_conv2d_backward", "check_maxpool2d_forward", "check_maxpool2d_backward",
    "check_avgpool2d_forward", "check_avgpool2d_backward", "check_global_avg_pool_forward",
    "check_global_avg_pool_backward", "check_relu_forward", "check_relu_backward", "check_linear_forward",
    "check_linear_backward", "check_batchnorm_forward", "check_batchnorm_backward", "check_softmax_cross_entropy",
    "check_numerical_gradient", "check_size_answers", "check_param_answers", "check_rf_answers", "check_hand_answers",
    "check_network_backward", "check_numpy_train_steps",
]
