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
from utils.cnn.architectures.shared import module_cases, module_exercise


def activation(name: str) -> Callable[[Tensor], Tensor]:
    """The activation a reference variant applies: ``relu``, ``tanh``, ``softmax`` (over classes) or ``none``."""
    return {"relu": F.relu, "tanh": torch.tanh, "none": lambda t: t,
            "softmax": lambda t: F.softmax(t, dim=1)}[name]


_FINAL_ACTIVATION = ("activation on the final classifier layer: the last Linear must return raw scores (logits)",
                     "nn.CrossEntropyLoss applies log-softmax itself; a ReLU (or softmax) after the last layer "
                     "clips negative logits or squashes them.")
_FINAL_SOFTMAX = ("softmax on the output: " + _FINAL_ACTIVATION[0], _FINAL_ACTIVATION[1])

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
                 (dict(in_channels=3, num_classes=5), (3, 3, 28, 28))],
        hidden_counts=[dict(in_channels=3, num_classes=7)],
        hidden_outputs=[(dict(in_channels=2, num_classes=4), (2, 2, 28, 28))], hidden=hidden),
    [("LeNet with average pooling instead of max pooling", "use nn.MaxPool2d(2, 2) (or F.max_pool2d) after each "
      "convolution's ReLU; nn.AvgPool2d was the 1998 subsampling layer.", dict(pool="avg")),
     ("wrong flatten size: 16·5·5 = 400 is the flatten size for 32×32 inputs; on 28×28 inputs the last pooling "
      "gives 16×4×4 = 256", "follow the shapes: 28 → conv 5×5 → 24 → pool → 12 → conv 5×5 → 8 → pool → 4.",
      dict(flat=16 * 5 * 5)),
     ("tanh activations (the 1998 LeNet) instead of ReLU", "use ReLU after conv1, conv2, fc1 and fc2.",
      dict(act="tanh")),
     (*_FINAL_ACTIVATION, dict(final="relu")),
     (*_FINAL_SOFTMAX, dict(final="softmax"))],
    hint="conv1 → ReLU → max pool → conv2 → ReLU → max pool → flatten → fc1 → ReLU → fc2 → ReLU → fc3 (no activation).")


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


ALEXNET = module_exercise(
    "AlexNet", "torchvision.models.AlexNet", _alexnet_build,
    lambda hidden: module_cases(
        "AlexNet", _alexnet_build, counts=[dict(num_classes=1000), dict(num_classes=10)],
        outputs=[(dict(num_classes=10), (1, 3, 224, 224))],
        hidden_counts=[dict(num_classes=37)], hidden_outputs=[],
        hidden=hidden, keep_float32=True),
    [("wrong flatten size: after the features and AdaptiveAvgPool2d((6, 6)) there are 256·6·6 = 9216 features, "
      "not 256·5·5", "classifier[1] = nn.Linear(256 * 6 * 6, 4096).", dict(flat=256 * 5 * 5)),
     ("wrong flatten size: 256·13·13 is the size before the last max pool",
      "classifier[1] = nn.Linear(256 * 6 * 6, 4096), after the last max pool and the adaptive pooling.",
      dict(flat=256 * 13 * 13)),
     (*_FINAL_ACTIVATION, dict(final="relu")),
     ("the first convolution has no padding: torchvision's AlexNet uses Conv2d(3, 64, 11, stride=4, padding=2)",
      "features[0] = nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2).", dict(conv1_padding=0))],
    hint="copy torchvision's layout: features (5 convs with ReLUs, 3 max pools at indices 2, 5, 12), "
         "avgpool = AdaptiveAvgPool2d((6, 6)), classifier = Dropout, Linear(9216, 4096), ReLU, Dropout, "
         "Linear(4096, 4096), ReLU, Linear(4096, num_classes).",
    forbidden=("torchvision.models.alexnet.AlexNet",))


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
        outputs=[(dict(num_classes=10), (2, 3, 32, 32)), (dict(num_classes=4), (1, 3, 29, 43))],
        hidden_counts=[dict(num_classes=100)],
        hidden_outputs=[(dict(num_classes=10), (1, 3, 64, 80))], hidden=hidden),
    [(*_FINAL_ACTIVATION, dict(final="relu")),
     (*_FINAL_SOFTMAX, dict(final="softmax")),
     ("wrong flatten size: after AdaptiveAvgPool2d((1, 1)) there are 128 features, not 128·56·56",
      "self.classifier = nn.Linear(128, num_classes): the global pooling removes the spatial size.",
      dict(flat=128 * 56 * 56)),
     ("wrong flatten size: 128·54·54 is the flatten size of the unrepaired network on 224×224 inputs",
      "with global average pooling the classifier sees 128 features, whatever the input size.",
      dict(flat=128 * 54 * 54)),
     ("the 3×3 convolutions still have no padding", "nn.Conv2d(3, 64, 3, padding=1) and "
      "nn.Conv2d(64, 128, 3, padding=1).", dict(padding=0)),
     ("BatchNorm2d missing after the convolutions", "features = Conv, BatchNorm2d, ReLU, MaxPool, Conv, "
      "BatchNorm2d, ReLU, MaxPool (indices 0–7).", dict(batchnorm=False))],
    hint="features = [Conv2d(3, 64, 3, padding=1), BatchNorm2d(64), ReLU, MaxPool2d(2), Conv2d(64, 128, 3, "
         "padding=1), BatchNorm2d(128), ReLU, MaxPool2d(2)]; avgpool = AdaptiveAvgPool2d((1, 1)); "
         "classifier = Linear(128, num_classes); forward returns the raw scores.")


def check_CNNClassifier(CNNClassifier, hidden: bool = False) -> None:
    """Check the repaired ``CNNClassifier(num_classes=10)``."""
    show(run_check(CLASSIFIER, CNNClassifier, hidden))
