"""Whole classification networks: ``LeNet5``, ``AlexNet`` and the repaired ``CNNClassifier``.

* ``LeNet5(in_channels=1, num_classes=10)``: conv1 (5×5, 6) → ReLU → max pool 2 → conv2 (5×5, 16) → ReLU →
  max pool 2 → flatten (16·4·4 = 256 on a 28×28 input) → fc1 (120) → ReLU → fc2 (84) → ReLU → fc3.
* ``AlexNet(num_classes=1000)``: must load the state_dict of ``torchvision.models.AlexNet``.
* ``CNNClassifier(num_classes=10)``: the repaired classifier (3×3 convs with padding 1, BatchNorm, ReLU,
  max pool, twice; global average pooling; one Linear(128, num_classes) without activation).

Each is a module exercise (:func:`~utils.cnn.architectures.shared.module_exercise`). The last layer of
each returns raw scores, so the three share the mistake of an activation after it.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from utils.checks.exercise import run_check
from utils.checks.feedback import show
from utils.cnn.architectures.shared import config_value, input_shape, module_cases, module_exercise, output_case

CLASS_AXES = ("image", "class")


def activation(name: str) -> Callable[[Tensor], Tensor]:
    """The activation a reference variant applies: ``relu``, ``tanh``, ``softmax`` (over classes) or ``none``."""
    return {"relu": F.relu, "tanh": torch.tanh, "none": lambda t: t,
            "softmax": lambda t: F.softmax(t, dim=1)}[name]


_FINAL_ACTIVATION = ("activation on the final classifier layer: a ReLU after the last Linear layer",
                     "the last Linear layer returns raw scores (logits), negative ones included: a ReLU there "
                     "clips every negative score to 0. Remove it.")
_FINAL_SOFTMAX = ("softmax on the output: an activation on the final classifier layer",
                  "return the raw scores of the last Linear layer: nn.CrossEntropyLoss applies the log-softmax "
                  "itself, so a softmax in the model squashes the scores twice.")

# --------------------------------------------------------------------------- LeNet-5


class LeNet5Reference(nn.Module):
    """LeNet-5 with ReLU and max pooling (the variant with 44,426 parameters on 1×28×28 inputs)."""

    def __init__(self, in_channels=1, num_classes=10, pool="max", act="relu", final="none", flat=16 * 4 * 4):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(flat, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)
        self.pool = nn.MaxPool2d(2, 2) if pool == "max" else nn.AvgPool2d(2, 2)
        self.act, self.final = activation(act), activation(final)

    def forward(self, x):
        x = self.pool(self.act(self.conv1(x)))
        x = self.pool(self.act(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = self.act(self.fc1(x))
        x = self.act(self.fc2(x))
        return self.final(self.fc3(x))


LENET = module_exercise(
    "LeNet5", "LeNet-5 with max pooling (reference in utils.cnn.architectures)", LeNet5Reference,
    lambda hidden: module_cases(
        "LeNet5", LeNet5Reference,
        counts=[dict(in_channels=1, num_classes=10)],
        outputs=[(dict(in_channels=1, num_classes=10), (2, 1, 28, 28)),
                 (dict(in_channels=3, num_classes=5), (3, 3, 28, 28), "train")],
        hidden_counts=[dict(in_channels=3, num_classes=7)],
        hidden_outputs=[(dict(in_channels=2, num_classes=4), (2, 2, 28, 28), "train"),
                        (dict(in_channels=1, num_classes=3), (1, 1, 28, 28))],
        hidden=hidden, axes=CLASS_AXES),
    [("LeNet with average pooling instead of max pooling",
      "each pooling layer of section 1 keeps the largest value of its 2×2 window, not the mean.", dict(pool="avg")),
     ("wrong flatten size: 16·5·5 = 400, the flatten size for 32×32 inputs",
      "follow the output-shape column of section 1's table for a 28×28 input down to the flatten.",
      dict(flat=16 * 5 * 5)),
     ("tanh activations (the 1998 LeNet) instead of ReLU",
      "the modern variant of section 1 uses ReLU wherever the table shows an activation.", dict(act="tanh")),
     (*_FINAL_ACTIVATION, dict(final="relu")),
     (*_FINAL_SOFTMAX, dict(final="softmax"))],
    hint="go through the table of section 1 row by row and compare each layer of your forward with it: the "
         "operation, the activation after it (or none), and the output shape.",
    section="1. LeNet-5 with max pooling",
    covers={"in_channels other than 1": lambda c: (config_value(c, "in_channels") or 1) > 1,
            "num_classes other than 10": lambda c: config_value(c, "num_classes") not in (None, 10)})


def check_LeNet5(LeNet5, hidden: bool = False) -> None:
    """Check the class ``LeNet5(in_channels=1, num_classes=10)``: parameter count and outputs."""
    show(run_check(LENET, LeNet5, hidden))


# --------------------------------------------------------------------------- AlexNet


class AlexNetVariant(nn.Module):
    """torchvision's AlexNet layout with the switches of the mistake catalogue."""

    def __init__(self, num_classes=1000, conv1_padding=2, flat=256 * 6 * 6, final="none", pool_size=6):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, conv1_padding), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((pool_size, pool_size))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(flat, 4096), nn.ReLU(), nn.Dropout(0.5),
                                        nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, num_classes))
        self.final = activation(final)

    def forward(self, x):
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.final(self.classifier(x))


def _alexnet_build(num_classes=1000, **variant):
    if not variant:
        from torchvision.models import AlexNet
        return AlexNet(num_classes=num_classes)
    return AlexNetVariant(num_classes, **variant)


def _alexnet_pooled_size(side: int) -> int:
    """The side of the feature map AlexNet's features leave for an input side (before the adaptive pooling)."""
    side = (side + 2 * 2 - 11) // 4 + 1
    for _ in range(3):
        side = (side - 3) // 2 + 1
    return side


def _adaptive_pool_matters(case) -> bool:
    """The features' map is neither 6×6 (where the adaptive pooling is the identity) nor so small that every
    pooling window holds one value (where average and max pooling agree): 4×4 or larger, not 6×6."""
    if not output_case(case):
        return False
    sides = [_alexnet_pooled_size(n) for n in input_shape(case)[2:]]
    return min(sides) >= 4 and sides != [6, 6]


ALEXNET = module_exercise(
    "AlexNet", "torchvision.models.AlexNet", _alexnet_build,
    lambda hidden: module_cases(
        "AlexNet", _alexnet_build, counts=[dict(num_classes=1000), dict(num_classes=10)],
        # 159×191 leaves a 4×5 map: the adaptive pooling resamples it (a 224×224 input leaves 6×6, where it
        # does nothing); train mode shows the dropout rate. No BatchNorm: one image is enough for train mode.
        outputs=[(dict(num_classes=10), (1, 3, 159, 191), "train")],
        hidden_counts=[dict(num_classes=37)], hidden_outputs=[],
        hidden=hidden, keep_float32=True, axes=CLASS_AXES),
    [("wrong flatten size: the first Linear layer of the classifier expects 256·5·5 features",
      "follow the output column of section 4's table: the adaptive pooling fixes the size of what is flattened.",
      dict(flat=256 * 5 * 5)),
     ("wrong flatten size: 256·13·13 is the size before the last max pool",
      "the last max pool and the adaptive pooling come before the flatten (section 4).",
      dict(flat=256 * 13 * 13)),
     (*_FINAL_ACTIVATION, dict(final="relu")),
     ("the first convolution has no padding",
      "check the padding of features[0] against the first row of section 4's table.", dict(conv1_padding=0))],
    hint="compare features, avgpool and classifier with section 4 index by index, with the kernel sizes, "
         "strides, paddings and dropout probabilities there; forward must use avgpool (it matters for inputs "
         "other than 224×224).",
    forbidden=("torchvision.models.alexnet.AlexNet",),
    section="4. AlexNet",
    covers={"train mode on a batch of 2 or more, then eval mode": None,
            "train mode (dropout on), then eval mode": lambda c: output_case(c) and c.inputs["mode"] == "train",
            "an input size where the adaptive pooling changes the feature map": _adaptive_pool_matters,
            "a non-square input": lambda c: output_case(c) and input_shape(c)[2] != input_shape(c)[3],
            "num_classes other than 1000": lambda c: config_value(c, "num_classes") not in (None, 1000)})


def check_AlexNet(AlexNet, hidden: bool = False) -> None:
    """Check ``AlexNet(num_classes=1000)`` against ``torchvision.models.AlexNet``."""
    show(run_check(ALEXNET, AlexNet, hidden))


# --------------------------------------------------------------------------- the repaired CNN classifier


class CNNClassifierReference(nn.Module):
    def __init__(self, num_classes=10, padding=1, batchnorm=True, final="none", flat=128):
        super().__init__()

        def bn(c):
            return nn.BatchNorm2d(c) if batchnorm else nn.Identity()

        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=padding), bn(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=padding), bn(128), nn.ReLU(), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(flat, num_classes)
        self.final = activation(final)

    def forward(self, x):
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.final(self.classifier(x))


CLASSIFIER = module_exercise(
    "CNNClassifier", "the repaired classifier of scenario D (reference in utils.cnn.architectures)",
    CNNClassifierReference,
    lambda hidden: module_cases(
        "CNNClassifier", CNNClassifierReference,
        counts=[dict(num_classes=10), dict(num_classes=3)],
        outputs=[(dict(num_classes=4), (1, 3, 29, 43)), (dict(num_classes=10), (2, 3, 32, 32), "train")],
        hidden_counts=[dict(num_classes=100)],
        hidden_outputs=[(dict(num_classes=7), (3, 3, 37, 21), "train"), (dict(num_classes=10), (1, 3, 64, 80))],
        hidden=hidden, axes=CLASS_AXES),
    [(*_FINAL_ACTIVATION, dict(final="relu")),
     (*_FINAL_SOFTMAX, dict(final="softmax")),
     ("wrong flatten size: the classifier expects 128·56·56 features",
      "after the global average pooling each image is 128 numbers, whatever its size (section 7).",
      dict(flat=128 * 56 * 56)),
     ("wrong flatten size: 128·54·54 is the flatten size of the unrepaired network on 224×224 inputs",
      "with global average pooling the classifier sees one number per channel, whatever the input size.",
      dict(flat=128 * 54 * 54)),
     ("the 3×3 convolutions still have no padding",
      "the repair pads both convolutions so that they keep the height and width (section 7).", dict(padding=0)),
     ("BatchNorm2d missing after the convolutions",
      "the repair normalises each convolution's output before its ReLU (section 7's list of layers).",
      dict(batchnorm=False))],
    hint="section 7's task lists the repaired layers in order; forward must apply the global average pooling, "
         "and the output is the raw scores of the last Linear layer.",
    section="7. Repairing a CNN classifier",
    covers={"an odd or non-square input size (pooling rounds down)":
            lambda c: output_case(c) and (input_shape(c)[2] != input_shape(c)[3] or input_shape(c)[2] % 2 == 1),
            "an input size other than 32×32 and 224×224":
            lambda c: output_case(c) and input_shape(c)[2:] not in ((32, 32), (224, 224)),
            "num_classes other than 10": lambda c: config_value(c, "num_classes") not in (None, 10)})


def check_CNNClassifier(CNNClassifier, hidden: bool = False) -> None:
    """Check the repaired ``CNNClassifier(num_classes=10)``."""
    show(run_check(CLASSIFIER, CNNClassifier, hidden))
