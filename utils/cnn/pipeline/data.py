"""Exercises 1 and 2: the data pipeline.

* ``build_transforms() -> (transform_train, transform_eval)``: training augmentation
  ``RandomCrop(32, padding=4) → RandomHorizontalFlip(p=0.5) → ToTensor → Normalize(CIFAR-100 mean, std)``
  and evaluation ``ToTensor → Normalize``. A case compares either a table of the pipeline's steps and
  their parameters (:func:`describe_pipeline`) or its output on a random image under fixed torch seeds.
* ``split_train_val(dataset, seed=0) -> (train_set, val_set)``: an 80/20 ``random_split`` with
  ``train_size = int(0.8 * len(dataset))`` and a ``torch.Generator`` seeded with ``seed``, leaving torch's
  global generator as it was (section 1.2 says so). A case compares eight measurements of the split of
  ``TensorDataset(arange(n))`` (:func:`split_stats`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from utils.checks.adapters import to_numpy
from utils.checks.characterise import Layout
from utils.checks.compare import EXACT, Tolerance
from utils.checks.diagnose import Mistake
from utils.checks.exercise import HIDDEN_SALT, Case, Exercise, visible_then_hidden
from utils.checks.seeding import case_rng
from utils.cnn.pipeline.shared import check_on_one_thread, seeded

CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

# torchvision computes both pipelines in float32: a correct one agrees up to float32 rounding, while a
# wrong constant or a missing step moves the values by 1e-2 or more.
FLOAT32_PIXELS = Tolerance(atol=1e-6, rtol=1e-6)

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
    train = T.Compose(augment + tail)
    evaluation = T.Compose((augment if eval_augment else []) + eval_tail)
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
        with seeded(seed):
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


def _random_image(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=(32, 32, 3)).astype(np.uint8)


_TABLE = Layout(axes=("step", "field"))
_IMAGES = Layout(axes=("draw (one per torch seed)", "channel", "row", "column"))


def _transform_cases(hidden: bool) -> list[Case]:
    image = _random_image(case_rng("build_transforms", 3))
    train_ref, eval_ref = reference_transforms()
    cases = [
        Case("the training pipeline's steps and their parameters, in order",
             {"kind": "describe", "which": "train"}, _describe_step_index(describe_pipeline(train_ref)),
             layout=_TABLE),
        Case("the evaluation pipeline's steps and their parameters, in order",
             {"kind": "describe", "which": "eval"}, _describe_step_index(describe_pipeline(eval_ref)),
             layout=_TABLE),
        Case("the training pipeline applied to a random 32×32 RGB image with torch seeds 0–3 "
             "(same random crops and flips as the reference)",
             {"kind": "apply", "which": "train", "image": image, "seeds": [0, 1, 2, 3]}, layout=_IMAGES),
        Case("the evaluation pipeline applied to a random 32×32 RGB image",
             {"kind": "apply", "which": "eval", "image": image, "seeds": [0]}, layout=_IMAGES),
    ]
    if hidden:
        other = _random_image(case_rng("build_transforms", 5, HIDDEN_SALT))
        cases.append(Case("the training pipeline on another image with torch seeds 10–17",
                          {"kind": "apply", "which": "train", "image": other, "seeds": list(range(10, 18))},
                          layout=_IMAGES))
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

_NORM_HINT = ("use the CIFAR-100 constants of the table in section 1.1 (means 0.5071, 0.4867, 0.4408; standard "
              "deviations 0.2675, 0.2565, 0.2761), in both pipelines.")

TRANSFORMS = Exercise(
    function="build_transforms",
    reference_name="the reference torchvision pipelines",
    make_cases=_transform_cases,
    reference=lambda inputs: _pipeline_output(reference_transforms(), inputs),
    call=lambda fn, inputs: _pipeline_output(fn(), inputs),
    mistakes=[
        Mistake(M_IMAGENET, _NORM_HINT, _transform_variant(mean=IMAGENET_MEAN, std=IMAGENET_STD)),
        Mistake(M_CIFAR10, _NORM_HINT, _transform_variant(mean=CIFAR10_MEAN, std=CIFAR10_STD)),
        Mistake(M_SWAPPED, "Normalize takes the means first, then the standard deviations; the means are the "
                           "larger numbers.",
                _transform_variant(mean=CIFAR100_STD, std=CIFAR100_MEAN)),
        Mistake(M_NO_PADDING, "the crop pads 4 pixels on every side before it cuts out 32×32, so that the image "
                              "shifts by up to 4 pixels.",
                _transform_variant(padding=0)),
        Mistake(M_NO_FLIP, "after the crop, the training pipeline mirrors the image with probability 0.5.",
                _transform_variant(flip=False)),
        Mistake(M_ORDER, "section 1.1 gives the order of the training steps: crop, flip, conversion to a "
                         "tensor, normalisation.",
                _transform_variant(order="flip_crop")),
        Mistake(M_EVAL_AUGMENT, "the evaluation pipeline only converts to a tensor and normalises: no random step.",
                _transform_variant(eval_augment=True)),
        Mistake(M_EVAL_NO_NORM, "both pipelines end with the same normalisation.",
                _transform_variant(eval_normalize=False)),
        Mistake(M_TRAIN_NO_NORM, "the training pipeline ends with the normalisation, after the conversion to a "
                                 "tensor.",
                _transform_variant(train_normalize=False)),
    ],
    tolerance=FLOAT32_PIXELS,
    hint="follow section 1.1: the training pipeline crops with a padding of 4, flips, converts to a tensor and "
         "normalises with the CIFAR-100 constants; the evaluation pipeline only converts and normalises.",
    exception_hints={"TypeError": "build_transforms() takes no arguments and returns the pair "
                                  "(training pipeline, evaluation pipeline)."},
    section="1.1 Normalisation and augmentation",
    covers={
        "the training pipeline's steps and parameters": lambda case: case.inputs == {"kind": "describe",
                                                                                    "which": "train"},
        "the evaluation pipeline's steps and parameters": lambda case: case.inputs == {"kind": "describe",
                                                                                      "which": "eval"},
        "the training pipeline under several torch seeds (crops and flips drawn)":
            lambda case: case.inputs["kind"] == "apply" and case.inputs["which"] == "train"
            and len(case.inputs["seeds"]) >= 4,
        "the evaluation pipeline applied to an image":
            lambda case: case.inputs["kind"] == "apply" and case.inputs["which"] == "eval",
    },
)


def check_build_transforms(build_transforms, hidden: bool = False) -> None:
    """Check ``build_transforms()`` against the reference torchvision pipelines."""
    check_on_one_thread(TRANSFORMS, build_transforms, hidden)


# =========================================================================== exercise 2: 80/20 split

_SPLIT_FIELDS = ["len(train_set)", "len(val_set)", "samples in both sets", "distinct samples in either set",
                 "same split when called again with the same seed (1 = yes)",
                 "different split for a different seed (1 = yes)", "shuffled, not the first 80 % (1 = yes)",
                 "torch's global random generator left as it was (1 = yes)"]


def _indices(subset) -> list[int]:
    return [int(np.asarray(to_numpy(item[0] if isinstance(item, (tuple, list)) else item)).reshape(()))
            for item in subset]


def split_stats(split_fn: Callable, n: int, seed: int) -> np.ndarray:
    """Eight measurements of a split of ``TensorDataset(arange(n))`` (see ``_SPLIT_FIELDS``)."""
    from torch.utils.data import TensorDataset
    dataset = TensorDataset(torch.arange(n))
    with seeded(2024):   # an unseeded split draws from here, never from the caller's generator
        state = torch.get_rng_state()
        first = split_fn(dataset, seed)
        untouched = torch.equal(state, torch.get_rng_state())
        again = split_fn(dataset, seed)
        other = split_fn(dataset, seed + 1)
    if not isinstance(first, (tuple, list)) or len(first) != 2:
        return first
    train, val = _indices(first[0]), _indices(first[1])
    train_again, train_other = _indices(again[0]), _indices(other[0])
    return np.array([len(train), len(val), len(set(train) & set(val)), len(set(train) | set(val)),
                     float(train == train_again), float(train != train_other),
                     float(train != list(range(len(train)))), float(untouched)], dtype=np.float64)


def reference_split(dataset, seed=0, fraction=0.8, sizes="int", seeded_generator=True, shuffled=True, swap=False,
                    global_seed=False):
    """``random_split`` with ``int(0.8·n)`` training samples and a seeded generator; keywords = mistakes."""
    from torch.utils.data import Subset, random_split
    n = len(dataset)
    train_size = int(fraction * n)
    val_size = n - train_size
    if not shuffled:
        return Subset(dataset, range(train_size)), Subset(dataset, range(train_size, n))
    if global_seed:
        torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed) if seeded_generator and not global_seed else None
    # [0.8, 0.2] as a student writes them (1 - 0.8 is 0.19999..., which rounds differently)
    lengths = [fraction, round(1 - fraction, 6)] if sizes == "fractions" else [train_size, val_size]
    if swap:
        lengths = lengths[::-1]
    kwargs = {"generator": generator} if generator is not None else {}
    return tuple(random_split(dataset, lengths, **kwargs))


def _split_cases(hidden: bool) -> list[Case]:
    settings = visible_then_hidden([(100, 0), (1797, 1), (101, 2)], [(5000, 7), (64, 3)], hidden)
    return [Case(f"a dataset of {n} samples, seed={seed}" + (" (0.8·n is not a whole number)" if (4 * n) % 5 else ""),
                 {"n": n, "seed": seed}, lambda index: _SPLIT_FIELDS[index[0]]) for (n, seed), _ in settings]


def _split_variant(**kw):
    return lambda inputs: split_stats(lambda d, s: reference_split(d, s, **kw), inputs["n"], inputs["seed"])


M_SPLIT_70 = "split not 80/20: the training set holds 70 % of the samples"
M_SPLIT_SWAPPED = "split not 80/20: the sizes are swapped, the training set holds only 20 %"
M_SPLIT_FRACTIONS = ("split sizes from fractions [0.8, 0.2]: random_split gives the leftover sample to "
                     "the training set, but the training size must be the whole part of 0.8·n")
M_SPLIT_UNSEEDED = "the split is not reproducible: random_split was called without a seeded generator"
M_SPLIT_GLOBAL_SEED = ("the split reseeds torch's global generator (torch.manual_seed): reproducible, but every "
                       "later random draw of the notebook changes with it")
M_SPLIT_UNSHUFFLED = "the split is not random: the first 80 % of the samples are taken in order"

SPLIT = Exercise(
    function="split_train_val",
    reference_name="torch.utils.data.random_split (80/20, seeded generator)",
    make_cases=_split_cases,
    reference=lambda inputs: split_stats(reference_split, inputs["n"], inputs["seed"]),
    call=lambda fn, inputs: split_stats(fn, inputs["n"], inputs["seed"]),
    mistakes=[
        Mistake(M_SPLIT_70, "the training set holds the whole part of 0.8·n samples, the validation set the rest.",
                _split_variant(fraction=0.7)),
        Mistake(M_SPLIT_SWAPPED, "random_split returns the subsets in the order of the sizes you pass: the "
                                 "training size first.",
                _split_variant(swap=True)),
        Mistake(M_SPLIT_FRACTIONS, "pass whole sizes: the whole part of 0.8·n for training, the rest for "
                                   "validation (section 1.2).",
                _split_variant(sizes="fractions")),
        Mistake(M_SPLIT_UNSEEDED, "hand random_split a torch.Generator of its own, seeded with seed: the same seed "
                                  "then gives the same split.",
                _split_variant(seeded_generator=False)),
        Mistake(M_SPLIT_GLOBAL_SEED, "seed a torch.Generator of its own and hand it to random_split; leave the "
                                     "global generator alone.", _split_variant(global_seed=True)),
        Mistake(M_SPLIT_UNSHUFFLED, "use torch.utils.data.random_split: it shuffles the indices before splitting.",
                _split_variant(shuffled=False)),
    ],
    tolerance=EXACT,
    hint="section 1.2: the training size is the whole part of 0.8·n, the validation set holds the rest, and "
         "random_split draws from a torch.Generator of its own, seeded with seed.",
    section="1.2 A validation set: the 80/20 split",
    layout=Layout(axes=("measurement",)),
    covers={
        "0.8·n not a whole number": lambda case: (4 * case.inputs["n"]) % 5 != 0,
        "0.8·n a whole number": lambda case: (4 * case.inputs["n"]) % 5 == 0,
        "seed 0 (the default)": lambda case: case.inputs["seed"] == 0,
        "a seed other than 0": lambda case: case.inputs["seed"] != 0,
        "a dataset of 1000 samples or more": lambda case: case.inputs["n"] >= 1000,
    },
)


def check_split_train_val(split_train_val, hidden: bool = False) -> None:
    """Check ``split_train_val(dataset, seed)``: 80/20, disjoint, seeded, shuffled."""
    check_on_one_thread(SPLIT, split_train_val, hidden)
