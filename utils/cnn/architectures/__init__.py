"""Checks for ``cnn_architectures.ipynb``: LeNet, VGG, ResNet, SE blocks and gradient flow.

The notebook asks for, in this order (every module is checked in float64, in eval mode and, on a batch, after
one train-mode forward):

* ``LeNet5``, ``AlexNet`` and the repaired ``CNNClassifier`` — :mod:`~utils.cnn.architectures.classifiers`;
* ``VGGBlock`` — :mod:`~utils.cnn.architectures.vgg_block`;
* ``BasicBlock`` — :mod:`~utils.cnn.architectures.basic_block`;
* ``SEBlock`` and ``SEResNet18`` — :mod:`~utils.cnn.architectures.squeeze_excitation`;
* ``block_gradient_norms(blocks, x, grad_output)`` — :mod:`~utils.cnn.architectures.gradient_flow`.

:mod:`~utils.cnn.architectures.shared` holds what they share: a module exercise (parameter counts, then
outputs after the student's module has loaded a state_dict built in the check), and float64 modules loaded
with the check's weights. No check touches the global numpy or torch random generators. ``Exercise.call``
only runs the student's code and returns numpy arrays; references and the mistake variants are computed
from the case inputs alone, so the trusted grader can run them outside the student's kernel. A student
module whose forward calls torchvision's own BasicBlock, AlexNet or SqueezeExcitation fails as "must be
written from scratch" (``Exercise.forbidden``).
"""
from utils.cnn.architectures.basic_block import BASIC_BLOCK, check_BasicBlock
from utils.cnn.architectures.classifiers import (
    ALEXNET,
    CLASSIFIER,
    LENET,
    check_AlexNet,
    check_CNNClassifier,
    check_LeNet5,
)
from utils.cnn.architectures.gradient_flow import GRADIENT, check_block_gradient_norms
from utils.cnn.architectures.squeeze_excitation import SE_BLOCK, SE_RESNET, check_SEBlock, check_SEResNet18
from utils.cnn.architectures.vgg_block import VGG, check_VGGBlock

EXERCISES = {e.function: e for e in (LENET, VGG, BASIC_BLOCK, ALEXNET, SE_BLOCK, SE_RESNET, CLASSIFIER, GRADIENT)}

__all__ = ["EXERCISES", "check_LeNet5", "check_VGGBlock", "check_BasicBlock", "check_AlexNet", "check_SEBlock",
           "check_SEResNet18", "check_CNNClassifier", "check_block_gradient_norms"]
