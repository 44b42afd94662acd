"""Checks for the CNN PyTorch-pipeline assignment (a CIFAR-100 classifier end to end).

Exercises and the student's objects:

* ``build_transforms() -> (transform_train, transform_eval)``: training augmentation
  ``RandomCrop(32, padding=4) → RandomHorizontalFlip(p=0.5) → ToTensor → Normalize(CIFAR-100 mean, std)``
  and evaluation ``ToTensor → Normalize``.
* ``split_train_val(dataset, seed=0) -> (train_set, val_set)``: an 80/20 ``random_split`` with
  ``train_size = int(0.8 * len(dataset))`` and a ``torch.Generator`` seeded with ``seed``.
* ``CustomCNN(num_classes=100)``: conv 3→32→64 (pool), →128 (pool), →256 (pool), 3×3 kernels with
  padding 1, FC 256·4·4 = 4096 → 512 → 256 → num_classes, ReLU everywhere but the last layer, dropout 0.5
  after fc1 and fc2.
* ``CustomCNNwithBN(num_classes=100)``: the same with ``BatchNorm2d`` between every conv and its ReLU.
* ``make_criterion_and_optimizer(model) -> (criterion, optimizer)``: ``CrossEntropyLoss`` and
  ``SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)``.
* ``topk_accuracy(logits, targets, k) -> float``: fraction of rows whose target is among the k indices
  returned by ``torch.topk`` (ties resolved as torch.topk resolves them).
* ``train_one_epoch(model, loader, criterion, optimizer, device) -> (mean_loss, accuracy)``
* ``evaluate(model, loader, criterion, device) -> (mean_loss, accuracy)``

Every reference is real torch/torchvision code (a reference network, ``random_split``, ``torch.optim.SGD``,
``torch.topk``) run when the check runs. Models run in float64. Anything random in the student's code
(module initialisation, dropout, an unseeded split) runs inside ``torch.random.fork_rng`` with a fixed
local seed, so checks are deterministic and never move the global generators. Each known mistake is the
same harness run on a deliberately wrong reference.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.checks.exercise import Case, Exercise, run_check
from utils.checks.compare import Tolerance, to_numpy
from utils.checks.feedback import show
from utils.checks.diagnose import Mistake
from utils.checks.seeding import case_rng

CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

EXACT = Tolerance(atol=1e-9, rtol=0.0)


def _seeded(seed: int):
    """A context in which torch's global generator is seeded locally and restored afterwards."""
    class _Ctx:
        def __enter__(self):
            self._fork = torch.random.fork_rng(devices=[])
            self._fork.__enter__()
            torch.manual_seed(seed)

        def __exit__(self, *exc):
            return self._fork.__exit__(*exc)
    return _Ctx()


class _one_thread:
    """Run a check on one CPU thread (its tensors are tiny; extra threads only add overhead), then restore."""

    def __enter__(self):
        self._threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self._threads)
        return False


def _as_pair(result, what: str = "(loss, accuracy)"):
    """Two numbers from a student's ``(a, b)`` return value, or the value itself when it is not that."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        return result
    out = []
    for v in result:
        a = to_numpy(v)
        if a is None or a.size != 1:
            return result
        out.append(float(a.reshape(())))
    return out


# =========================================================================== exercise 1: transforms

_TYPE_CODES = {"RandomCrop": 1, "RandomHorizontalFlip": 2, "ToTensor": 3, "Normalize": 4}
_TYPE_NAMES = {0: "no step", 1: "RandomCrop", 2: "RandomHorizontalFlip", 3: "ToTensor", 4: "Normalize",
               9: "another transform"}
_FIELDS = {1: ["type", "size[0]", "size[1]", "padding"], 2: ["type", "p"], 3: ["type"],
           4: ["type", "mean[0]", "mean[1]", "mean[2]", "std[0]", "std[1]", "std[2]"]}
_STEPS, _STEP_COLS = 6, 7


def _padding_value(padding) -> float:
    if padding is None:
        return 0.0
    if isinstance(padding, (int, float)):
        return float(padding)
    values = list(padding)
    return float(values[0]) if len(set(values)) == 1 else -1.0


def describe_pipeline(transform) -> np.ndarray:
    """A (6, 7) table of a ``Compose``: one row per step, [type code, parameters...], zero-padded."""
    steps = list(getattr(transform, "transforms", [transform]))
    table = np.zeros((_STEPS, _STEP_COLS))
    for row, step in enumerate(steps[:_STEPS]):
        code = _TYPE_CODES.get(type(step).__name__, 9)
        values = [code]
        if code == 1:
            size = step.size if isinstance(step.size, (tuple, list)) else (step.size, step.size)
            values += [float(size[0]), float(size[-1]), _padding_value(step.padding)]
        elif code == 2:
            values += [float(step.p)]
        elif code == 4:
            mean = np.asarray(to_numpy(step.mean), dtype=np.float64).ravel()
            std = np.asarray(to_numpy(step.std), dtype=np.float64).ravel()
            mean = np.resize(mean, 3) if mean.size else np.zeros(3)
            std = np.resize(std, 3) if std.size else np.zeros(3)
            values += list(mean) + list(std)
        table[row, :len(values)] = values
    return table


def _compose(*steps):
    from torchvision import transforms as T
    return T.Compose(list(steps))


def reference_transforms(mean=CIFAR100_MEAN, std=CIFAR100_STD, padding=4, flip=True, order="crop_flip",
                         eval_augment=False, eval_normalize=True, train_normalize=True):
    """The torchvision pipelines (train, eval); the keywords build the known mistakes."""
    from torchvision import transforms as T
    crop = T.RandomCrop(32, padding=padding) if padding else T.RandomCrop(32)
    augment = [crop, T.RandomHorizontalFlip(p=0.5)] if flip else [crop]
    if order == "flip_crop":
        augment = augment[::-1]
    tail = [T.ToTensor()] + ([T.Normalize(mean=list(mean), std=list(std))] if train_normalize else [])
    eval_tail = [T.ToTensor()] + ([T.Normalize(mean=list(mean), std=list(std))] if eval_normalize else [])
    train = _compose(*(augment + tail))
    evaluation = _compose(*((augment if eval_augment else []) + eval_tail))
    return train, evaluation


def _pipeline_output(pair, inputs) -> Any:
    """What a case measures on a (train, eval) pair: its description, or its output on an image."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        return pair
    train, evaluation = pair
    which = train if inputs["which"] == "train" else evaluation
    if inputs["kind"] == "describe":
        return describe_pipeline(which)
    from PIL import Image
    image = Image.fromarray(np.asarray(inputs["image"], dtype=np.uint8))
    outputs = []
    for seed in inputs["seeds"]:
        with _seeded(seed):
            out = which(image)
        outputs.append(np.asarray(to_numpy(out), dtype=np.float64))
    return np.stack(outputs)


def _describe_step_index(expected: np.ndarray):
    def describe(index):
        row, col = index
        code = int(expected[row, 0])
        fields = _FIELDS.get(code, ["type"])
        field = fields[col] if col < len(fields) else f"value {col}"
        legend = (" (type codes: 1 RandomCrop, 2 RandomHorizontalFlip, 3 ToTensor, 4 Normalize, "
                  "9 another transform, 0 no step)") if col == 0 else ""
        return f"step {row + 1}, expected {_TYPE_NAMES.get(code, '?')}: {field}{legend}"
    return describe


def _transform_cases(hidden: bool) -> list[Case]:
    rng = case_rng("build_transforms", 3)
    image = rng.integers(0, 256, size=(32, 32, 3)).astype(np.uint8)
    train_ref, eval_ref = reference_transforms()
    cases = [
        Case("the training pipeline's steps and their parameters, in order",
             {"kind": "describe", "which": "train"}, _describe_step_index(describe_pipeline(train_ref))),
        Case("the evaluation pipeline's steps and their parameters, in order",
             {"kind": "describe", "which": "eval"}, _describe_step_index(describe_pipeline(eval_ref))),
        Case("the training pipeline applied to a random 32×32 RGB image with torch seeds 0–3 "
             "(same random crops and flips as the reference)",
             {"kind": "apply", "which": "train", "image": image, "seeds": [0, 1, 2, 3]}),
        Case("the evaluation pipeline applied to a random 32×32 RGB image",
             {"kind": "apply", "which": "eval", "image": image, "seeds": [0]}),
    ]
    if hidden:
        image2 = case_rng("build_transforms", 5, "hidden").integers(0, 256, size=(32, 32, 3)).astype(np.uint8)
        cases.append(Case("the training pipeline on another image with torch seeds 10–17",
                          {"kind": "apply", "which": "train", "image": image2, "seeds": list(range(10, 18))}))
    return cases


def _transform_variant(**kw):
    return lambda inputs: _pipeline_output(reference_transforms(**kw), inputs)


M_IMAGENET = "wrong normalization constants: these are ImageNet's mean and std, not CIFAR-100's"
M_CIFAR10 = "wrong normalization constants: these are CIFAR-10's mean and std, not CIFAR-100's"
M_SWAPPED = "wrong normalization constants: mean and std are swapped"
M_NO_PADDING = "RandomCrop without padding=4: a 32×32 crop of a 32×32 image never moves"
M_NO_FLIP = "RandomHorizontalFlip is missing from the training pipeline"
M_ORDER = "the augmentation steps are in the wrong order: RandomCrop comes first, then RandomHorizontalFlip"
M_EVAL_AUGMENT = "the evaluation pipeline augments: random crops and flips belong to training only"
M_EVAL_NO_NORM = "Normalize is missing from the evaluation pipeline: the model would see differently scaled inputs"
M_TRAIN_NO_NORM = "Normalize is missing from the training pipeline"

_NORM_HINT = "CIFAR-100: mean = (0.5071, 0.4867, 0.4408), std = (0.2675, 0.2565, 0.2761)."
TRANSFORM_MISTAKES = [
    Mistake(M_IMAGENET, _NORM_HINT, _transform_variant(mean=IMAGENET_MEAN, std=IMAGENET_STD)),
    Mistake(M_CIFAR10, _NORM_HINT, _transform_variant(mean=CIFAR10_MEAN, std=CIFAR10_STD)),
    Mistake(M_SWAPPED, "transforms.Normalize(mean=..., std=...): the means are the larger numbers.",
            _transform_variant(mean=CIFAR100_STD, std=CIFAR100_MEAN)),
    Mistake(M_NO_PADDING, "transforms.RandomCrop(32, padding=4) pads 4 pixels on each side, then crops 32×32.",
            _transform_variant(padding=0)),
    Mistake(M_NO_FLIP, "add transforms.RandomHorizontalFlip() (p=0.5) after the crop.", _transform_variant(flip=False)),
    Mistake(M_ORDER, "RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor(), Normalize(...).",
            _transform_variant(order="flip_crop")),
    Mistake(M_EVAL_AUGMENT, "the evaluation pipeline is ToTensor() then Normalize(...) only.",
            _transform_variant(eval_augment=True)),
    Mistake(M_EVAL_NO_NORM, "use the same Normalize(mean, std) in both pipelines.",
            _transform_variant(eval_normalize=False)),
    Mistake(M_TRAIN_NO_NORM, "end the training pipeline with Normalize(mean, std), after ToTensor().",
            _transform_variant(train_normalize=False)),
]

TRANSFORMS = Exercise(
    function="build_transforms",
    reference_name="the reference torchvision pipelines",
    make_cases=_transform_cases,
    reference=lambda inputs: _pipeline_output(reference_transforms(), inputs),
    call=lambda fn, inputs: _pipeline_output(fn(), inputs),
    mistakes=TRANSFORM_MISTAKES,
    tolerance=Tolerance(atol=1e-6, rtol=1e-6),
    hint="return (transform_train, transform_eval): train = Compose([RandomCrop(32, padding=4), "
         "RandomHorizontalFlip(), ToTensor(), Normalize(mean, std)]), eval = Compose([ToTensor(), "
         "Normalize(mean, std)]) with the CIFAR-100 constants, from torchvision.transforms.",
    exception_hints={"TypeError": "build_transforms() takes no arguments and returns a tuple "
                                  "(transform_train, transform_eval)."},
)

# =========================================================================== exercise 2: 80/20 split

_SPLIT_FIELDS = ["len(train_set)", "len(val_set)", "samples in both sets", "distinct samples in either set",
                 "same split when called again with the same seed (1 = yes)",
                 "different split for a different seed (1 = yes)", "shuffled, not the first 80 % (1 = yes)"]


def _indices(subset) -> list[int]:
    return [int(np.asarray(to_numpy(item[0] if isinstance(item, (tuple, list)) else item)).reshape(()))
            for item in subset]


def split_stats(split_fn: Callable, n: int, seed: int) -> np.ndarray:
    """Seven measurements of a split of ``TensorDataset(arange(n))`` (see ``_SPLIT_FIELDS``)."""
    from torch.utils.data import TensorDataset
    dataset = TensorDataset(torch.arange(n))
    with _seeded(2024):   # an unseeded split draws from here, never from the caller's generator
        first = split_fn(dataset, seed)
        again = split_fn(dataset, seed)
        other = split_fn(dataset, seed + 1)
    if not isinstance(first, (tuple, list)) or len(first) != 2:
        return first
    train, val = _indices(first[0]), _indices(first[1])
    train_again, train_other = _indices(again[0]), _indices(other[0])
    return np.array([len(train), len(val), len(set(train) & set(val)), len(set(train) | set(val)),
                     float(train == train_again), float(train != train_other),
                     float(train != list(range(len(train))))], dtype=np.float64)


def reference_split(dataset, seed=0, fraction=0.8, sizes="int", seeded=True, shuffled=True, swap=False):
    """``random_split`` with ``int(0.8·n)`` training samples and a seeded generator; keywords = mistakes."""
    from torch.utils.data import Subset, random_split
    n = len(dataset)
    train_size = int(fraction * n)
    val_size = n - train_size
    if not shuffled:
        return Subset(dataset, range(train_size)), Subset(dataset, range(train_size, n))
    generator = torch.Generator().manual_seed(seed) if seeded else None
    lengths = [fraction, 1 - fraction] if sizes == "fractions" else [train_size, val_size]
    if swap:
        lengths = lengths[::-1]
    kwargs = {"generator": generator} if generator is not None else {}
    return tuple(random_split(dataset, lengths, **kwargs))


def _split_cases(hidden: bool) -> list[Case]:
    settings = [(100, 0), (1797, 1), (101, 2)]
    if hidden:
        settings += [(5000, 7), (64, 3)]
    return [Case(f"a dataset of {n} samples, seed={seed}" + (" (0.8·n is not a whole number)" if (4 * n) % 5 else ""),
                 {"n": n, "seed": seed}, lambda index: _SPLIT_FIELDS[index[0]]) for n, seed in settings]


def _split_variant(**kw):
    return lambda inputs: split_stats(lambda d, s: reference_split(d, s, **kw), inputs["n"], inputs["seed"])


M_SPLIT_70 = "split not 80/20: the training set holds 70 % of the samples"
M_SPLIT_SWAPPED = "split not 80/20: the sizes are swapped, the training set holds only 20 %"
M_SPLIT_FRACTIONS = ("split sizes from fractions [0.8, 0.2]: random_split gives the leftover sample to "
                     "the training set, but train_size must be int(0.8 * len(dataset))")
M_SPLIT_UNSEEDED = "the split is not reproducible: random_split was called without a seeded generator"
M_SPLIT_UNSHUFFLED = "the split is not random: the first 80 % of the samples are taken in order"

SPLIT_MISTAKES = [
    Mistake(M_SPLIT_70, "train_size = int(0.8 * len(dataset)), val_size = len(dataset) - train_size.",
            _split_variant(fraction=0.7)),
    Mistake(M_SPLIT_SWAPPED, "random_split(dataset, [train_size, val_size], ...): the training size first.",
            _split_variant(swap=True)),
    Mistake(M_SPLIT_FRACTIONS, "pass the integer sizes [train_size, val_size] with train_size = int(0.8 * n).",
            _split_variant(sizes="fractions")),
    Mistake(M_SPLIT_UNSEEDED, "random_split(..., generator=torch.Generator().manual_seed(seed)).",
            _split_variant(seeded=False)),
    Mistake(M_SPLIT_UNSHUFFLED, "use torch.utils.data.random_split: it shuffles the indices before splitting.",
            _split_variant(shuffled=False)),
]

SPLIT = Exercise(
    function="split_train_val",
    reference_name="torch.utils.data.random_split (80/20, seeded generator)",
    make_cases=_split_cases,
    reference=lambda inputs: split_stats(reference_split, inputs["n"], inputs["seed"]),
    call=lambda fn, inputs: split_stats(fn, inputs["n"], inputs["seed"]),
    mistakes=SPLIT_MISTAKES,
    tolerance=EXACT,
    hint="train_size = int(0.8 * len(dataset)); val_size = len(dataset) - train_size; "
         "return random_split(dataset, [train_size, val_size], generator=torch.Generator().manual_seed(seed)).",
)

# =========================================================================== exercises 3 and 4: the networks

_ARCH_ROWS, _ARCH_COLS = 16, 7
_CONV_FIELDS = ["layer type (1 Conv2d, 2 BatchNorm2d, 3 Linear, 0 none)", "in_channels", "out_channels",
                "kernel_size", "stride", "padding", "has bias (1 = yes)"]
_BN_FIELDS = [_CONV_FIELDS[0], "num_features", "-", "-", "-", "-", "has affine weight and bias (1 = yes)"]
_LINEAR_FIELDS = [_CONV_FIELDS[0], "in_features", "out_features", "-", "-", "-", "has bias (1 = yes)"]


def _layers(model):
    mods = list(model.modules())
    return ([m for m in mods if isinstance(m, nn.Conv2d)], [m for m in mods if isinstance(m, nn.BatchNorm2d)],
            [m for m in mods if isinstance(m, nn.Linear)])


def _conv_padding(m) -> float:
    if isinstance(m.padding, str):
        return float((m.kernel_size[0] - 1) // 2) if m.padding == "same" else 0.0
    return float(m.padding[0])


def architecture_rows(model) -> np.ndarray:
    """(16, 7): its Conv2d, then BatchNorm2d, then Linear layers, each in registration order."""
    convs, bns, linears = _layers(model)
    rows = [[1, m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], _conv_padding(m), m.bias is not None]
            for m in convs]
    rows += [[2, m.num_features, 0, 0, 0, 0, m.affine] for m in bns]
    rows += [[3, m.in_features, m.out_features, 0, 0, 0, m.bias is not None] for m in linears]
    table = np.zeros((_ARCH_ROWS, _ARCH_COLS))
    rows = np.array(rows[:_ARCH_ROWS], dtype=np.float64).reshape(-1, _ARCH_COLS)
    table[:len(rows)] = rows
    return table


class ReferenceCNN(nn.Module):
    """CustomCNN / CustomCNNwithBN as specified; the keywords reproduce known mistakes."""

    def __init__(self, num_classes=100, bn=False, *, final=None, dropout_p=0.5, dropout_at=(1, 2),
                 bn_after_relu=False, fc1_in=256 * 4 * 4, padding=1):
        super().__init__()
        channels = [3, 32, 64, 128, 256]
        self.convs = nn.ModuleList(nn.Conv2d(channels[i], channels[i + 1], 3, padding=padding) for i in range(4))
        self.bns = nn.ModuleList(nn.BatchNorm2d(c) for c in channels[1:]) if bn else None
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1, self.fc2 = nn.Linear(fc1_in, 512), nn.Linear(512, 256)
        self.fc3 = nn.Linear(256, num_classes)
        self.final, self.dropout_p, self.dropout_at, self.bn_after_relu = final, dropout_p, dropout_at, bn_after_relu

    def _block(self, i, x):
        x = self.convs[i](x)
        if self.bns is not None and not self.bn_after_relu:
            x = self.bns[i](x)
        x = F.relu(x)
        if self.bns is not None and self.bn_after_relu:
            x = self.bns[i](x)
        return x

    def forward(self, x):
        x = self.pool(self._block(1, self._block(0, x)))     # 32 → 16
        x = self.pool(self._block(2, x))                      # 16 → 8
        x = self.pool(self._block(3, x))                      # 8 → 4
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        if 1 in self.dropout_at:
            x = F.dropout(x, self.dropout_p, self.training)
        x = F.relu(self.fc2(x))
        if 2 in self.dropout_at:
            x = F.dropout(x, self.dropout_p, self.training)
        x = self.fc3(x)
        if self.final == "relu":
            x = F.relu(x)
        elif self.final == "softmax":
            x = F.softmax(x, dim=1)
        return x


def _model_weights(rng, bn: bool, num_classes: int) -> dict:
    """He-scaled random weights for every layer, so activations stay of order one."""
    channels = [3, 32, 64, 128, 256]
    conv = [(rng.normal(0, np.sqrt(2 / (9 * channels[i])), (channels[i + 1], channels[i], 3, 3)),
             rng.normal(0, 0.1, channels[i + 1])) for i in range(4)]
    dims = [4096, 512, 256, num_classes]
    linear = [(rng.normal(0, np.sqrt(2 / dims[i]), (dims[i + 1], dims[i])), rng.normal(0, 0.1, dims[i + 1]))
              for i in range(3)]
    bns = [(rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c), rng.normal(0, 0.2, c), rng.uniform(0.5, 1.5, c))
           for c in channels[1:]] if bn else []
    return {"conv": conv, "linear": linear, "bn": bns}


def _load_weights(model, weights: dict) -> None:
    convs, bns, linears = _layers(model)

    def t(a):
        return torch.from_numpy(np.asarray(a, dtype=np.float64))

    with torch.no_grad():
        for m, (w, b) in list(zip(convs, weights["conv"])) + list(zip(linears, weights["linear"])):
            m.weight.copy_(t(w))
            if m.bias is not None:
                m.bias.copy_(t(b))
        for m, (g, b, mean, var) in zip(bns, weights["bn"]):
            if m.affine:
                m.weight.copy_(t(g))
                m.bias.copy_(t(b))
            if m.running_mean is not None:
                m.running_mean.copy_(t(mean))
                m.running_var.copy_(t(var))


def _build(cls, num_classes):
    with _seeded(0):   # the student's __init__ draws its initial weights from torch's generator
        return cls() if num_classes is None else cls(num_classes=num_classes)


def model_output(cls, inputs) -> Any:
    """What a model case measures for a network class (the student's or a reference)."""
    kind = inputs["kind"]
    model = _build(cls, inputs.get("num_classes"))
    if kind == "architecture":
        return architecture_rows(model)
    if kind == "size":
        with torch.no_grad():
            model.eval()
            out = model(torch.zeros(2, 3, 32, 32))
        n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return np.array([n_params, *tuple(out.shape)], dtype=np.float64)
    model = model.double()
    _load_weights(model, inputs["weights"])
    x = torch.from_numpy(inputs["x"])
    if kind == "eval":
        model.eval()
        with torch.no_grad():
            return model(x).detach().numpy()
    model.train()
    if kind == "train":
        with _seeded(inputs["seed"]), torch.no_grad():
            return model(x).detach().numpy()
    # kind == "step": one SGD step from the case's weights, dropout and batch statistics active
    convs, _, linears = _layers(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    with _seeded(inputs["seed"]):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), torch.from_numpy(inputs["y"]))
        loss.backward()
        optimizer.step()
    return np.concatenate([[loss.item()], convs[0].weight.detach().numpy().ravel(),
                           linears[-1].weight.detach().numpy().ravel()])


def _describe_arch_index(expected: np.ndarray):
    def describe(index):
        row, col = index
        kind = int(expected[row, 0])
        fields = {1: _CONV_FIELDS, 2: _BN_FIELDS, 3: _LINEAR_FIELDS}.get(kind, _CONV_FIELDS)
        number = int((expected[:row + 1, 0] == kind).sum()) if kind else 0
        name = {1: f"Conv2d layer {number}", 2: f"BatchNorm2d layer {number}", 3: f"Linear layer {number}"}.get(
            kind, "a layer the reference does not have")
        return f"{name}: {fields[col]}"
    return describe


def _describe_output_index(index):
    return f"[{', '.join(map(str, index))}] (sample, class)"


_SIZE_FIELDS = ["number of trainable parameters", "output rows (batch size 2)", "output columns (classes)"]


def _model_cases(name: str, bn: bool, hidden: bool) -> list[Case]:
    with _seeded(0):   # building the reference initialises weights: keep the caller's generator untouched
        expected_arch = architecture_rows(ReferenceCNN(bn=bn))
    cases = [
        Case(f"{name}(): its Conv2d{', BatchNorm2d' if bn else ''} and Linear layers, in order",
             {"kind": "architecture"}, _describe_arch_index(expected_arch)),
        Case(f"{name}(): parameter count and output shape for a (2, 3, 32, 32) input",
             {"kind": "size", "num_classes": None}, lambda index: _SIZE_FIELDS[index[0]]),
        Case(f"{name}(num_classes=10): parameter count and output shape",
             {"kind": "size", "num_classes": 10}, lambda index: _SIZE_FIELDS[index[0]]),
    ]
    settings = [("eval", 3), ("train", 4), ("step", 4)]
    if hidden:
        settings += [("eval", 5), ("train", 6), ("step", 2)]
    for number, (kind, n) in enumerate(settings, start=4):
        rng = case_rng(name, number, "hidden" if number > 6 else "")
        inputs = {"kind": kind, "num_classes": None, "weights": _model_weights(rng, bn, 100),
                  "x": rng.normal(size=(n, 3, 32, 32)), "y": rng.integers(0, 100, n), "seed": number}
        what = {"eval": "eval mode (no dropout" + (", BatchNorm with running statistics)" if bn else ")"),
                "train": f"train mode (dropout active{', BatchNorm with batch statistics' if bn else ''}), "
                         f"torch seed {number}",
                "step": f"one SGD step (lr 0.01, momentum 0.9, weight_decay 5e-4) in train mode, torch seed {number}; "
                        "compared: the loss, then conv1's and fc3's updated weights"}[kind]
        cases.append(Case(f"{name}() with random weights loaded into its layers, {n} random 3×32×32 images, {what}",
                          inputs, _describe_output_index if kind != "step" else None))
    return cases


def _model_variant(bn: bool, **kw):
    return lambda inputs: model_output(lambda num_classes=100: ReferenceCNN(num_classes, bn, **kw), inputs)


M_FINAL_RELU = "activation on the final layer: ReLU after fc3 clips the negative logits"
M_FINAL_SOFTMAX = ("activation on the final layer: softmax after fc3 (CrossEntropyLoss applies log-softmax "
                   "itself)")
M_NO_DROPOUT = "dropout missing: in train mode the output equals the output without dropout"
M_DROPOUT_ONE = "dropout applied only after fc1: it belongs after fc1 and after fc2"
M_DROPOUT_P = "dropout present but its probability is not 0.5"
M_FLATTEN = "wrong flatten size: fc1 must take 256·4·4 = 4096 features (three 2×2 poolings: 32 → 16 → 8 → 4)"
M_NO_PAD = "the convolutions have no padding=1, so the spatial size shrinks and the flatten size changes"
M_BN_AFTER_RELU = "BatchNorm is applied after the ReLU: the order is conv → BatchNorm → ReLU"

_FINAL_HINT = "return self.fc3(x): the last layer outputs raw scores (logits), no activation."


def _model_mistakes(bn: bool) -> list[Mistake]:
    v = lambda **kw: _model_variant(bn, **kw)  # noqa: E731
    mistakes = [
        Mistake(M_FINAL_RELU, _FINAL_HINT, v(final="relu")),
        Mistake(M_FINAL_SOFTMAX, _FINAL_HINT, v(final="softmax")),
        Mistake(M_NO_DROPOUT, "self.dropout = nn.Dropout(0.5), applied after the ReLUs of fc1 and fc2.",
                v(dropout_at=())),
        Mistake(M_DROPOUT_ONE, "x = self.dropout(F.relu(self.fc2(x))) too.", v(dropout_at=(1,))),
    ] + [Mistake(M_DROPOUT_P, "nn.Dropout(0.5) (or p=0.5).", v(dropout_p=p)) for p in (0.1, 0.2, 0.25, 0.3, 0.4)]
    mistakes += [Mistake(M_FLATTEN, "nn.Linear(256 * 4 * 4, 512), and flatten with x.view(x.size(0), -1).",
                         v(fc1_in=n)) for n in (256 * 8 * 8, 256 * 2 * 2, 128 * 4 * 4, 256, 128 * 8 * 8)]
    mistakes.append(Mistake(M_NO_PAD, "nn.Conv2d(c_in, c_out, kernel_size=3, padding=1) keeps the spatial size.",
                            v(padding=0, fc1_in=256 * 2 * 2)))
    if bn:
        mistakes.append(Mistake(M_BN_AFTER_RELU, "x = F.relu(self.bn1(self.conv1(x))).", v(bn_after_relu=True)))
    return mistakes


def _model_exercise(name: str, bn: bool) -> Exercise:
    layout = ("conv 3→32, conv 32→64, pool, conv 64→128, pool, conv 128→256, pool (3×3 kernels, padding 1"
              + ", each conv followed by BatchNorm2d then ReLU" * bn + "), flatten 4096, fc 512, fc 256, "
              "fc num_classes, ReLU after every layer but the last, dropout 0.5 after fc1 and fc2")
    return Exercise(
        function=name,
        reference_name=f"the reference {name} (real torch modules)",
        make_cases=lambda hidden: _model_cases(name, bn, hidden),
        reference=lambda inputs: model_output(lambda num_classes=100: ReferenceCNN(num_classes, bn), inputs),
        call=model_output,
        mistakes=_model_mistakes(bn),
        tolerance=Tolerance(atol=1e-7, rtol=1e-6),
        hint=layout + ".",
        exception_hints={"RuntimeError": "a shape does not fit: " + layout + "."},
    )


CUSTOM_CNN = _model_exercise("CustomCNN", bn=False)
CUSTOM_CNN_BN = _model_exercise("CustomCNNwithBN", bn=True)

# =========================================================================== exercise 5: loss and optimizer

_PROBE_IN, _PROBE_OUT = 6, 4


def optimizer_steps(factory, inputs) -> Any:
    """Three training steps of a linear probe with the (criterion, optimizer) that ``factory`` builds."""
    with _seeded(0):   # its initial weights are overwritten; the seed only keeps the caller's generator untouched
        model = nn.Linear(_PROBE_IN, _PROBE_OUT).double()
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(inputs["w"]))
        model.bias.copy_(torch.from_numpy(inputs["b"]))
    pair = factory(model)
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        return pair
    criterion, optimizer = pair
    x, y = torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["y"])
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return np.concatenate([losses, model.weight.detach().numpy().ravel(), model.bias.detach().numpy()])


def reference_criterion_and_optimizer(model, optimizer="SGD", lr=0.01, momentum=0.9, weight_decay=5e-4,
                                      criterion="CE"):
    crit = nn.CrossEntropyLoss() if criterion == "CE" else nn.NLLLoss()
    if optimizer == "SGD":
        return crit, torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    return crit, torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)


def _optimizer_cases(hidden: bool) -> list[Case]:
    cases = []
    for number in range(1, 3 + 2 * hidden):
        rng = case_rng("make_criterion_and_optimizer", number)
        n = 8 + 4 * number
        inputs = {"w": rng.normal(size=(_PROBE_OUT, _PROBE_IN)), "b": rng.normal(size=_PROBE_OUT),
                  "x": rng.normal(size=(n, _PROBE_IN)) * 2, "y": rng.integers(0, _PROBE_OUT, n)}
        cases.append(Case(f"three training steps of a Linear({_PROBE_IN}, {_PROBE_OUT}) model on {n} random samples "
                          "(compared: the 3 losses, then the final weights and biases)", inputs,
                          lambda index: f"loss of step {index[0] + 1}" if index[0] < 3 else
                          f"parameter {index[0] - 3} after three steps"))
    return cases


def _optimizer_variant(**kw):
    return lambda inputs: optimizer_steps(lambda m: reference_criterion_and_optimizer(m, **kw), inputs)


M_NO_MOMENTUM = "SGD without momentum=0.9"
M_NO_WD = "SGD without weight_decay=5e-4"
M_LR = "wrong learning rate: it must be lr=0.01"
M_ADAM = "Adam instead of SGD"
M_NLL = "NLLLoss on raw scores: CrossEntropyLoss (log-softmax + NLL) is the loss for logits"
_OPT_HINT = "optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)."
OPTIMIZER_MISTAKES = (
    [Mistake(M_NO_MOMENTUM, _OPT_HINT, _optimizer_variant(momentum=0.0)),
     Mistake(M_NO_WD, _OPT_HINT, _optimizer_variant(weight_decay=0.0)),
     Mistake(M_NO_MOMENTUM + " and weight_decay=5e-4", _OPT_HINT, _optimizer_variant(momentum=0.0, weight_decay=0.0))]
    + [Mistake(M_LR, _OPT_HINT, _optimizer_variant(lr=lr)) for lr in (0.001, 0.1, 1e-4, 0.05)]
    + [Mistake(M_ADAM, _OPT_HINT, _optimizer_variant(optimizer="Adam", lr=lr, weight_decay=wd))
       for lr in (0.01, 0.001) for wd in (5e-4, 0.0)]
    + [Mistake(M_NLL, "criterion = nn.CrossEntropyLoss().", _optimizer_variant(criterion="NLL"))]
)

OPTIMIZER = Exercise(
    function="make_criterion_and_optimizer",
    reference_name="nn.CrossEntropyLoss with optim.SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)",
    make_cases=_optimizer_cases,
    reference=lambda inputs: optimizer_steps(reference_criterion_and_optimizer, inputs),
    call=optimizer_steps,
    mistakes=OPTIMIZER_MISTAKES,
    # float64 torch arithmetic on both sides, so agreement is exact; a tight tolerance is what makes
    # weight_decay=5e-4 visible (three steps change the weights by only ~1e-5 of their size)
    tolerance=Tolerance(atol=1e-10, rtol=1e-9),
    hint="return (nn.CrossEntropyLoss(), " + _OPT_HINT[:-1] + ").",
    exception_hints={"AttributeError": "return the pair (criterion, optimizer), in that order.",
                     "TypeError": "return the pair (criterion, optimizer), in that order."},
)

# =========================================================================== exercise 6: top-k accuracy


def reference_topk_accuracy(logits, targets, k, rule="topk"):
    """Fraction of rows whose target is among ``torch.topk(logits, k, dim=1)``; ``rule`` = known mistakes."""
    logits = torch.as_tensor(logits)
    targets = torch.as_tensor(targets)
    n = targets.shape[0]
    if rule == "argsort":   # ties broken by a stable sort instead of torch.topk
        order = np.argsort(-logits.numpy(), axis=1, kind="stable")[:, :k]
        return float((order == targets.numpy()[:, None]).any(axis=1).mean())
    largest = rule != "smallest"
    _, pred = logits.topk(1 if rule == "ignore_k" else k, dim=1, largest=largest, sorted=True)
    if rule == "no_view":     # pred (N, k) compared with targets (N,): broadcasts along the wrong axis
        return float(pred.eq(targets).sum().item()) / n
    hits = pred.eq(targets.view(-1, 1).expand_as(pred))
    if rule == "mean_all":    # mean over N·k entries instead of N samples
        return float(hits.float().mean().item())
    correct = float(hits.sum().item()) / n
    return 100 * correct if rule == "percent" else correct


def topk_values(fn, inputs) -> Any:
    logits = torch.tensor(inputs["logits"], dtype=torch.float32)
    targets = torch.tensor(inputs["targets"], dtype=torch.int64)
    out = []
    for k in inputs["ks"]:
        value = to_numpy(fn(logits.clone(), targets.clone(), k))
        if value is None or value.size != 1:
            return value
        out.append(float(value.reshape(())))
    return np.array(out)


def _topk_cases(hidden: bool) -> list[Case]:
    hand = np.array([[0.1, 2.0, 0.3, 1.5, -1.0], [3.0, 0.2, 0.1, 0.0, 2.9],
                     [0.0, 0.5, 1.0, 1.5, 2.0], [1.0, -1.0, 0.5, 0.2, 0.9]])
    settings = [("4 hand-made rows over 5 classes, targets [3, 4, 0, 2] (top-1: 0 of 4 correct, top-2: 2 of 4, "
                 "top-3: 3 of 4)", hand, np.array([3, 4, 0, 2]), [1, 2, 3])]
    rng = case_rng("topk_accuracy", 2)
    settings.append(("64 rows of random logits over 100 classes, no ties", rng.normal(size=(64, 100)),
                     rng.integers(0, 100, 64), [1, 5]))
    rng = case_rng("topk_accuracy", 3)
    settings.append(("50 rows of integer logits in {0, 1, 2} over 10 classes: many ties, resolved as torch.topk "
                     "resolves them", rng.integers(0, 3, size=(50, 10)).astype(float), rng.integers(0, 10, 50),
                     [1, 3, 5]))
    rng = case_rng("topk_accuracy", 4)
    settings.append(("5 rows over 10 classes with k=5 (batch size equal to k), no ties",
                     rng.normal(size=(5, 10)), rng.integers(0, 10, 5), [5]))
    if hidden:
        rng = case_rng("topk_accuracy", 5, "hidden")
        settings.append(("200 rows over 100 classes with values rounded to 1 decimal (ties), k = 1, 5, 10",
                         np.round(rng.normal(size=(200, 100)), 1), rng.integers(0, 100, 200), [1, 5, 10]))
        rng = case_rng("topk_accuracy", 6, "hidden")
        settings.append(("3 rows over 3 classes, k = 1, 3 and k=3 (batch size equal to k)",
                         rng.normal(size=(3, 3)), rng.integers(0, 3, 3), [1, 3]))
    return [Case(desc + f", k in {ks}", {"logits": logits, "targets": targets, "ks": ks},
                 lambda index, ks=ks: f"k={ks[index[0]]}") for desc, logits, targets, ks in settings]


def _topk_variant(rule):
    return lambda inputs: np.array([reference_topk_accuracy(torch.tensor(inputs["logits"], dtype=torch.float32),
                                                            torch.tensor(inputs["targets"]), k, rule)
                                    for k in inputs["ks"]])


M_TOPK_NO_VIEW = ("predictions compared without .view(-1, 1).expand_as(pred): (N, k) predictions against (N,) "
                  "targets broadcast along the wrong axis")
M_TOPK_MEAN_ALL = "the hits are averaged over N·k entries: divide the number of correct rows by N"
M_TOPK_PERCENT = "accuracy returned in percent: return a fraction between 0 and 1"
M_TOPK_SMALLEST = "topk with largest=False picks the k smallest scores"
M_TOPK_IGNORE_K = "k is ignored: only the top-1 prediction is compared"
M_TOPK_TIES = "ties are broken differently from torch.topk (argmax / argsort pick other tied classes)"
TOPK_MISTAKES = [
    Mistake(M_TOPK_NO_VIEW, "pred.eq(targets.view(-1, 1).expand_as(pred)).sum().item() / N.", _topk_variant("no_view")),
    Mistake(M_TOPK_MEAN_ALL, "count rows with a hit (at most one per row), then divide by N.", _topk_variant("mean_all")),
    Mistake(M_TOPK_PERCENT, "correct / N, without * 100.", _topk_variant("percent")),
    Mistake(M_TOPK_SMALLEST, "logits.topk(k, dim=1, largest=True, sorted=True).", _topk_variant("smallest")),
    Mistake(M_TOPK_IGNORE_K, "logits.topk(k, dim=1): use the k you are given.", _topk_variant("ignore_k")),
    Mistake(M_TOPK_TIES, "use logits.topk(k, dim=1) so tied scores are handled exactly as torch.topk does.",
            _topk_variant("argsort")),
]

TOPK = Exercise(
    function="topk_accuracy",
    reference_name="torch.topk-based top-k accuracy",
    make_cases=_topk_cases,
    reference=_topk_variant("topk"),
    call=topk_values,
    mistakes=TOPK_MISTAKES,
    tolerance=Tolerance(atol=1e-6, rtol=0.0),
    hint="_, pred = logits.topk(k, dim=1, largest=True, sorted=True); "
         "correct = pred.eq(targets.view(-1, 1).expand_as(pred)).sum().item(); return correct / N.",
    exception_hints={"RuntimeError": f"perhaps {M_TOPK_NO_VIEW}. pred has shape (N, k): compare it with "
                                     "targets.view(-1, 1).expand_as(pred)."},
)

# =========================================================================== exercises 7 and 8: the loops


def _probe_model(weights: dict, bn: bool):
    """Flatten → Linear(12, 16) → [BatchNorm1d] → ReLU → Dropout(0.5) → Linear(16, 4), float64."""
    with _seeded(0):   # initial weights are overwritten below; the caller's generator stays untouched
        layers = [nn.Flatten(), nn.Linear(12, 16)] + ([nn.BatchNorm1d(16)] if bn else []) + \
                 [nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 4)]
    model = nn.Sequential(*layers).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.from_numpy(weights["w1"]))
        model[1].bias.copy_(torch.from_numpy(weights["b1"]))
        model[-1].weight.copy_(torch.from_numpy(weights["w2"]))
        model[-1].bias.copy_(torch.from_numpy(weights["b2"]))
        if bn:
            model[2].running_mean.copy_(torch.from_numpy(weights["mean"]))
            model[2].running_var.copy_(torch.from_numpy(weights["var"]))
    return model


def _loader(inputs):
    from torch.utils.data import DataLoader, TensorDataset
    dataset = TensorDataset(torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["y"]))
    return DataLoader(dataset, batch_size=inputs["batch_size"], shuffle=False,
                      generator=torch.Generator().manual_seed(0))


def train_epoch_output(fn, inputs) -> Any:
    """Run ``fn(model, loader, criterion, optimizer, device)`` on a probe given in eval mode."""
    model = _probe_model(inputs["weights"], bn=False)
    model.eval()   # train_one_epoch must switch dropout on itself
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    steps = []
    step = optimizer.step
    optimizer.step = lambda *args, **kwargs: (steps.append(1), step(*args, **kwargs))[1]   # count the calls
    with _seeded(inputs["seed"]):
        result = _as_pair(fn(model, _loader(inputs), nn.CrossEntropyLoss(), optimizer, torch.device("cpu")))
    if not isinstance(result, list):
        return result
    params = [p.detach().numpy().ravel() for p in model.parameters()]
    return np.concatenate([result, [len(steps)], *params])


def evaluate_output(fn, inputs) -> Any:
    """Run ``fn(model, loader, criterion, device)`` on a probe given in train mode; record side effects."""
    model = _probe_model(inputs["weights"], bn=True)
    model.train()   # evaluate must switch dropout off and BatchNorm to its running statistics itself
    grad_enabled = []
    model.register_forward_pre_hook(lambda module, args: grad_enabled.append(torch.is_grad_enabled()))
    stats_before = model[2].running_mean.clone()
    with _seeded(inputs["seed"]):
        result = _as_pair(fn(model, _loader(inputs), nn.CrossEntropyLoss(), torch.device("cpu")))
    if not isinstance(result, list):
        return result
    stats_changed = not torch.equal(stats_before, model[2].running_mean)
    return np.array(result + [float(any(grad_enabled)), float(stats_changed)])


def reference_train_one_epoch(model, loader, criterion, optimizer, device, *, zero_grad="before", train=True,
                              percent=False, loss_sum=False, step=True):
    """The zero_grad → forward → loss → backward → step loop; keywords reproduce known mistakes."""
    if train:
        model.train()
    total_loss, correct, seen = 0.0, 0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        if zero_grad == "before":
            optimizer.zero_grad()
        outputs = model(images)
        loss = criterion(outputs, labels)
        loss.backward()
        if zero_grad == "after_backward":
            optimizer.zero_grad()
        if step:
            optimizer.step()
        total_loss += loss.item() * (1 if loss_sum else labels.size(0))
        correct += (outputs.argmax(dim=1) == labels).sum().item()
        seen += labels.size(0)
    accuracy = correct / seen
    return total_loss if loss_sum else total_loss / seen, 100 * accuracy if percent else accuracy


def reference_evaluate(model, loader, criterion, device, *, eval_mode=True, no_grad=True, percent=False):
    """model.eval() and torch.no_grad() around forward and loss; keywords reproduce known mistakes."""
    if eval_mode:
        model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    with torch.set_grad_enabled(not no_grad):
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            outputs = model(images)
            total_loss += criterion(outputs, labels).item() * labels.size(0)
            correct += (outputs.argmax(dim=1) == labels).sum().item()
            seen += labels.size(0)
    accuracy = correct / seen
    return total_loss / seen, 100 * accuracy if percent else accuracy


def _loop_cases(exercise: str, hidden: bool) -> list[Case]:
    settings = [(24, 8), (30, 10)] + ([(32, 4), (20, 5)] if hidden else [])
    cases = []
    for number, (n, batch) in enumerate(settings, start=1):
        rng = case_rng(exercise, number, "hidden" if number > 2 else "")
        weights = {"w1": rng.normal(0, 0.6, (16, 12)), "b1": rng.normal(0, 0.1, 16),
                   "w2": rng.normal(0, 0.4, (4, 16)), "b2": rng.normal(0, 0.1, 4),
                   "mean": rng.normal(0, 0.3, 16), "var": rng.uniform(0.5, 2.0, 16)}
        inputs = {"weights": weights, "x": rng.normal(size=(n, 3, 2, 2)), "y": rng.integers(0, 4, n),
                  "batch_size": batch, "seed": 100 + number}
        if exercise == "train_one_epoch":
            desc = (f"a probe model Flatten → Linear(12, 16) → ReLU → Dropout(0.5) → Linear(16, 4), handed over in "
                    f"eval mode; {n} samples in batches of {batch}; SGD(lr=0.1, momentum=0.9, weight_decay=0.01); torch seed {100 + number}"
                    "; compared: mean loss, accuracy, number of optimizer.step() calls, then the parameters after the epoch")

            def describe(index):
                return (["mean loss", "accuracy", "number of optimizer.step() calls"][index[0]] if index[0] < 3
                        else f"parameter {index[0] - 3} after the epoch")
        else:
            desc = (f"a probe model Flatten → Linear(12, 16) → BatchNorm1d → ReLU → Dropout(0.5) → Linear(16, 4), "
                    f"handed over in train mode; {n} samples in batches of {batch}; torch seed {100 + number}")

            def describe(index):
                return ["mean loss", "accuracy", "gradients were tracked during the forward pass (1 = yes)",
                        "BatchNorm running statistics changed (1 = yes)"][index[0]]
        cases.append(Case(desc, inputs, describe))
    return cases


def _train_variant(**kw):
    return lambda inputs: train_epoch_output(
        lambda *args: reference_train_one_epoch(*args, **kw), inputs)


def _eval_variant(**kw):
    return lambda inputs: evaluate_output(lambda *args: reference_evaluate(*args, **kw), inputs)


M_NO_ZERO_GRAD = "forgetting zero_grad: gradients accumulate across steps"
M_ZERO_AFTER_BACKWARD = "optimizer.zero_grad() is called between backward() and step(), so step() sees zero gradients"
M_NO_STEP = "optimizer.step() is missing: the parameters never change"
M_NO_TRAIN = "model.train() missing in train_one_epoch: dropout stays off when the model arrives in eval mode"
M_PERCENT = "accuracy returned in percent: return a fraction between 0 and 1"
M_LOSS_SUM = "the loss is summed over batches, not averaged over samples"
M_NO_EVAL = "model.eval() missing in evaluate: dropout is active and BatchNorm uses (and updates) batch statistics"
M_NO_NO_GRAD = "torch.no_grad() missing in evaluate: autograd records a graph for every batch"
M_NO_EVAL_NO_GRAD = "model.eval() and torch.no_grad() both missing in evaluate"

TRAIN_MISTAKES = [
    Mistake(M_NO_ZERO_GRAD, "call optimizer.zero_grad() at the start of every batch.", _train_variant(zero_grad="never")),
    Mistake(M_ZERO_AFTER_BACKWARD, "order: zero_grad(), forward, loss, backward(), step().",
            _train_variant(zero_grad="after_backward")),
    Mistake(M_NO_STEP, "call optimizer.step() after loss.backward().", _train_variant(step=False)),
    Mistake(M_NO_TRAIN, "call model.train() at the start of train_one_epoch.", _train_variant(train=False)),
    Mistake(M_PERCENT, "accuracy = correct / total.", _train_variant(percent=True)),
    Mistake(M_LOSS_SUM, "running_loss += loss.item() * labels.size(0); return running_loss / total.",
            _train_variant(loss_sum=True)),
]

EVAL_MISTAKES = [
    Mistake(M_NO_EVAL, "call model.eval() at the start of evaluate.", _eval_variant(eval_mode=False)),
    Mistake(M_NO_NO_GRAD, "wrap the loop in `with torch.no_grad():`.", _eval_variant(no_grad=False)),
    Mistake(M_NO_EVAL_NO_GRAD, "model.eval(), then the loop inside `with torch.no_grad():`.",
            _eval_variant(eval_mode=False, no_grad=False)),
    Mistake(M_PERCENT, "accuracy = correct / total.", _eval_variant(percent=True)),
]

TRAIN_EPOCH = Exercise(
    function="train_one_epoch",
    reference_name="the reference zero_grad → forward → backward → step loop",
    make_cases=lambda hidden: _loop_cases("train_one_epoch", hidden),
    reference=lambda inputs: train_epoch_output(reference_train_one_epoch, inputs),
    call=train_epoch_output,
    mistakes=TRAIN_MISTAKES,
    hint="model.train(); per batch: move to device, optimizer.zero_grad(), outputs = model(images), "
         "loss = criterion(outputs, labels), loss.backward(), optimizer.step(); return (sum of "
         "loss.item()·batch size / N, correct / N).",
    exception_hints={"TypeError": "train_one_epoch(model, loader, criterion, optimizer, device) returns "
                                  "(mean_loss, accuracy)."},
)

EVALUATE = Exercise(
    function="evaluate",
    reference_name="the reference evaluation loop (model.eval(), torch.no_grad())",
    make_cases=lambda hidden: _loop_cases("evaluate", hidden),
    reference=lambda inputs: evaluate_output(reference_evaluate, inputs),
    call=evaluate_output,
    mistakes=EVAL_MISTAKES,
    hint="model.eval(); with torch.no_grad(): per batch outputs = model(images), loss = criterion(outputs, labels); "
         "no zero_grad, backward or step; return (mean loss per sample, correct / N).",
    exception_hints={"TypeError": "evaluate(model, loader, criterion, device) returns (mean_loss, accuracy)."},
)

EXERCISES = {e.function: e for e in (TRANSFORMS, SPLIT, CUSTOM_CNN, CUSTOM_CNN_BN, OPTIMIZER, TOPK,
                                     TRAIN_EPOCH, EVALUATE)}


def check_build_transforms(build_transforms, hidden: bool = False) -> None:
    """Check ``build_transforms()`` against the reference torchvision pipelines."""
    with _one_thread():
        result = run_check(TRANSFORMS, build_transforms, hidden)
    show(result)


def check_split_train_val(split_train_val, hidden: bool = False) -> None:
    """Check ``split_train_val(dataset, seed)``: 80/20, disjoint, seeded, shuffled."""
    with _one_thread():
        result = run_check(SPLIT, split_train_val, hidden)
    show(result)


def check_CustomCNN(CustomCNN, hidden: bool = False) -> None:  # noqa: N802, N803 - the class's own name
    """Check the ``CustomCNN`` class against the reference network (layers, outputs, one SGD step)."""
    with _one_thread():
        result = run_check(CUSTOM_CNN, CustomCNN, hidden)
    show(result)


def check_CustomCNNwithBN(CustomCNNwithBN, hidden: bool = False) -> None:  # noqa: N802, N803
    """Check the ``CustomCNNwithBN`` class against the reference network with BatchNorm2d."""
    with _one_thread():
        result = run_check(CUSTOM_CNN_BN, CustomCNNwithBN, hidden)
    show(result)


def check_make_criterion_and_optimizer(make_criterion_and_optimizer, hidden: bool = False) -> None:
    """Check ``make_criterion_and_optimizer(model)`` by three training steps of a linear probe."""
    with _one_thread():
        result = run_check(OPTIMIZER, make_criterion_and_optimizer, hidden)
    show(result)


def check_topk_accuracy(topk_accuracy, hidden: bool = False) -> None:
    """Check ``topk_accuracy(logits, targets, k)`` against torch.topk, ties included."""
    with _one_thread():
        result = run_check(TOPK, topk_accuracy, hidden)
    show(result)


def check_train_one_epoch(train_one_epoch, hidden: bool = False) -> None:
    """Check ``train_one_epoch(model, loader, criterion, optimizer, device)`` on a probe model."""
    with _one_thread():
        result = run_check(TRAIN_EPOCH, train_one_epoch, hidden)
    show(result)


def check_evaluate(evaluate, hidden: bool = False) -> None:
    """Check ``evaluate(model, loader, criterion, device)`` on a probe model."""
    with _one_thread():
        result = run_check(EVALUATE, evaluate, hidden)
    show(result)
