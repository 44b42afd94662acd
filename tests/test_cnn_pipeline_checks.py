"""Tests of utils/cnn/pipeline: the checks of the notebook source/cnn/cnn_pipeline.ipynb.

For every check: the instructor solution and independent correct variants pass; each catalogued mistake,
written as a student would write it (an edit of the solution), fails with the mistake's name in the
message; numpy's, Python's and torch's global generators and torch's thread count are untouched. The
sample mistakes of utils/instructor/samples/cnn_pipeline.py must apply and be diagnosed, and
``Exercise.call`` must return plain arrays that the grader side accepts. What every exercise keeps (the
release stubs, each mistake diagnosed on generated outputs) is tested in tests/test_contract.py.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import check_failures
import nbformat
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.utils.data import DataLoader, Dataset, Subset, random_split
from torchvision import transforms

import utils.cnn.pipeline as cp
from notebook_solutions import NotebookSolutions
from utils.checks.adapters import to_numpy
from utils.checks.exercise import Case, Produced, evaluate, produce
from utils.checks.feedback import CheckFailure, CheckResult
from utils.checks.seeding import grading_salt
from utils.cnn.pipeline import criterion_optimizer, data, loops, models, topk
from utils.cnn.pipeline.shared import VARIANT_OF, variant_name
from utils.instructor.samples.cnn_pipeline import MISTAKES as SAMPLES

NOTEBOOK = Path(__file__).resolve().parents[1] / "source" / "cnn" / "cnn_pipeline.ipynb"

FUNCTIONS = ["build_transforms", "split_train_val", "CustomCNN", "CustomCNNwithBN", "make_criterion_and_optimizer",
             "topk_accuracy", "train_one_epoch", "evaluate"]
MODELS = ("CustomCNN", "CustomCNNwithBN")
BASE = {"np": np, "torch": torch, "nn": nn, "F": F, "optim": optim, "transforms": transforms,
        "DataLoader": DataLoader, "Dataset": Dataset, "random_split": random_split}
NB = NotebookSolutions(NOTEBOOK, BASE)
CELLS, build, mutate = NB.cells, NB.build, NB.mutate


def check(name: str):
    return getattr(cp, f"check_{name}")


def failure(name: str, student, hidden: bool = False) -> str:
    return check_failures.failure(check(name), student, hidden=hidden)


# =========================================================================== the solution


def test_checks_do_not_depend_on_the_global_seed(capsys):
    """Different global seeds before a check give the same verdict: every random draw is local."""
    student = build("CustomCNNwithBN")
    with torch.random.fork_rng(devices=[]):
        for seed in (1, 12345):
            torch.manual_seed(seed)
            check("CustomCNNwithBN")(student)
            check("train_one_epoch")(build("train_one_epoch"))
    assert capsys.readouterr().out.count("✓") == 4


# =========================================================================== correct variants


def transforms_tuples():
    mean, std = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
    return (transforms.Compose([transforms.RandomCrop((32, 32), padding=(4, 4)),
                                transforms.RandomHorizontalFlip(p=0.5), transforms.ToTensor(),
                                transforms.Normalize(torch.tensor(mean), torch.tensor(std))]),
            transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)]))


def transforms_shared_tail():
    normalize = transforms.Normalize(mean=[0.5071, 0.4867, 0.4408], std=[0.2675, 0.2565, 0.2761])
    augment = [transforms.RandomCrop(32, padding=4, padding_mode="constant"), transforms.RandomHorizontalFlip()]
    tail = [transforms.ToTensor(), normalize]
    return transforms.Compose(augment + tail), transforms.Compose(tail)


def split_randperm(dataset, seed=0):
    n = len(dataset)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    cut = int(0.8 * n)
    return Subset(dataset, order[:cut]), Subset(dataset, order[cut:])


def split_positional(dataset, seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    n_train = int(len(dataset) * 0.8)
    return tuple(random_split(dataset, (n_train, len(dataset) - n_train), g))


def sequential_cnn(bn: bool):
    def block(c_in, c_out):
        layers = [nn.Conv2d(c_in, c_out, 3, padding="same")]
        return layers + ([nn.BatchNorm2d(c_out)] if bn else []) + [nn.ReLU(inplace=True)]

    class Net(nn.Module):
        def __init__(self, num_classes=100):
            super().__init__()
            self.features = nn.Sequential(*block(3, 32), *block(32, 64), nn.MaxPool2d(2), *block(64, 128),
                                          nn.MaxPool2d(2), *block(128, 256), nn.MaxPool2d(2))
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(4096, 512), nn.ReLU(), nn.Dropout(p=0.5),
                                            nn.Linear(512, 256), nn.ReLU(), nn.Dropout(p=0.5),
                                            nn.Linear(256, num_classes))

        def forward(self, x):
            return self.classifier(self.features(x))
    return Net


def criterion_positional(model):
    return nn.CrossEntropyLoss(reduction="mean"), optim.SGD(list(model.parameters()), 0.01, 0.9, 0, 5e-4, False)


def criterion_param_groups(model):
    groups = [{"params": [p for n, p in model.named_parameters() if n.endswith("weight")]},
              {"params": [p for n, p in model.named_parameters() if n.endswith("bias")]}]
    return nn.CrossEntropyLoss(), optim.SGD(groups, lr=1e-2, momentum=0.9, weight_decay=0.0005)


def topk_loop(logits, targets, k):
    correct = 0
    _, pred = torch.topk(logits, k, dim=1)
    for i in range(len(targets)):
        correct += int(targets[i].item() in pred[i].tolist())
    return correct / len(targets)


def topk_imagenet_style(logits, targets, k):
    _, pred = logits.topk(k, 1, True, True)
    pred = pred.t()
    correct = pred.eq(targets.view(1, -1).expand_as(pred))
    return correct[:k].reshape(-1).float().sum(0).mul_(1.0 / targets.size(0)).item()


def topk_any(logits, targets, k):
    return (logits.topk(k, dim=1).indices == targets[:, None]).any(dim=1).float().mean()   # a 0-d float32 tensor


def train_zero_grad_at_end(model, loader, criterion, optimizer, device):
    model.train()
    optimizer.zero_grad(set_to_none=False)
    losses, hits, seen = [], [], 0
    for batch in loader:
        x, y = (t.to(device) for t in batch)
        out = model(x)
        loss = criterion(out, y)
        loss.backward()
        optimizer.step()
        model.zero_grad()
        losses.append(loss.detach() * len(y))
        hits.append(out.max(dim=1)[1].eq(y))
        seen += len(y)
    return (torch.stack(losses).sum() / seen).item(), torch.cat(hits).float().mean().item()


def evaluate_inference_mode(model, loader, criterion, device):
    model.eval()
    logits, labels = [], []
    with torch.inference_mode():
        for x, y in loader:
            logits.append(model(x.to(device)))
            labels.append(y.to(device))
        logits, labels = torch.cat(logits), torch.cat(labels)
        # the mean over all samples equals the batch means weighted by batch size
        starts = np.cumsum([0] + [len(y) for _, y in loader])[:-1]
        loss = sum(criterion(logits[i:i + len(b)], b).item() * len(b)
                   for i, b in zip(starts, labels.split(loader.batch_size), strict=True))
    return loss / len(labels), (logits.argmax(1) == labels).double().mean().item()


VARIANTS = {
    "build_transforms": [transforms_tuples, transforms_shared_tail],
    "split_train_val": [split_randperm, split_positional],
    "CustomCNN": [sequential_cnn(False)],
    "CustomCNNwithBN": [sequential_cnn(True)],
    "make_criterion_and_optimizer": [criterion_positional, criterion_param_groups],
    "topk_accuracy": [topk_loop, topk_imagenet_style, topk_any],
    "train_one_epoch": [train_zero_grad_at_end],
    "evaluate": [evaluate_inference_mode],
}


@pytest.mark.parametrize("name,variant", [(n, v) for n, vs in VARIANTS.items() for v in vs],
                         ids=[f"{n}-{v.__name__}" for n, vs in VARIANTS.items() for v in vs])
def test_correct_variants_pass(name, variant, capsys):
    check(name)(variant, hidden=name not in MODELS)
    assert "✓" in capsys.readouterr().out


# =========================================================================== mistakes, as students make them

T, TR = "build_transforms", "train_one_epoch"
C, CB, CO, K = "CustomCNN", "CustomCNNwithBN", "make_criterion_and_optimizer", "topk_accuracy"
FLIP = "        transforms.RandomHorizontalFlip(),\n"
CROP = "        transforms.RandomCrop(32, padding=4),\n"
EVAL_HEAD = "    transform_eval = transforms.Compose([\n"
NORM = "        transforms.Normalize(mean=mean, std=std),\n"
TRAIN_TAIL = "        transforms.ToTensor(),\n" + NORM + "    ])\n    transform_eval"
MEAN, STD = "[0.5071, 0.4867, 0.4408]", "[0.2675, 0.2565, 0.2761]"
FWD_FC = ("        x = self.dropout(F.relu(self.fc1(x)))\n", "        x = self.dropout(F.relu(self.fc2(x)))\n")
NO_DROPOUT = [(FWD_FC[i], FWD_FC[i].replace(f"self.dropout(F.relu(self.fc{i + 1}(x)))", f"F.relu(self.fc{i + 1}(x))"))
              for i in (0, 1)]
FC1, FC1_NO_PAD = "nn.Linear(256 * 4 * 4, 512)", "nn.Linear(256 * 2 * 2, 512)"
LOGITS = "return self.fc3(x)"
SGD = "optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)"
TOPK_RETURN = "return correct / targets.size(0)"

MISTAKE_CASES = [
    # (exercise, mistake name, replacements in the solution)
    (T, data.M_IMAGENET, [(MEAN, "[0.485, 0.456, 0.406]"), (STD, "[0.229, 0.224, 0.225]")]),
    (T, data.M_CIFAR10, [(MEAN, "[0.4914, 0.4822, 0.4465]"), (STD, "[0.2470, 0.2435, 0.2616]")]),
    (T, data.M_SWAPPED, [("Normalize(mean=mean, std=std)", "Normalize(std, mean)")]),
    (T, data.M_NO_PADDING, [("RandomCrop(32, padding=4)", "RandomCrop(32)")]),
    (T, data.M_NO_FLIP, [(FLIP, "")]),
    (T, data.M_ORDER, [(CROP + FLIP, FLIP + CROP)]),
    (T, data.M_EVAL_AUGMENT, [(EVAL_HEAD, EVAL_HEAD + CROP + FLIP)]),
    (T, data.M_EVAL_NO_NORM, [(NORM + "    ])\n    return", "    ])\n    return")]),
    (T, data.M_TRAIN_NO_NORM, [(TRAIN_TAIL, "        transforms.ToTensor(),\n    ])\n    transform_eval")]),
    ("split_train_val", data.M_SPLIT_70, [("0.8 * len", "0.7 * len")]),
    ("split_train_val", data.M_SPLIT_SWAPPED, [("[train_size, val_size]", "[val_size, train_size]")]),
    ("split_train_val", data.M_SPLIT_FRACTIONS, [("[train_size, val_size]", "[0.8, 0.2]")]),
    ("split_train_val", data.M_SPLIT_UNSEEDED, [(", generator=generator)", ")")]),
    ("split_train_val", data.M_SPLIT_GLOBAL_SEED, [("    generator = torch.Generator().manual_seed(seed)\n",
                                                    "    torch.manual_seed(seed)\n"),
                                                   (", generator=generator)", ")")]),
    ("split_train_val", data.M_SPLIT_UNSHUFFLED,
     [("random_split(dataset, [train_size, val_size], generator=generator)",
       "(torch.utils.data.Subset(dataset, range(train_size)), "
       "torch.utils.data.Subset(dataset, range(train_size, len(dataset))))")]),
    (C, models.M_FINAL_RELU, [(LOGITS, "return F.relu(self.fc3(x))")]),
    (C, models.M_FINAL_SOFTMAX, [(LOGITS, "return F.softmax(self.fc3(x), dim=1)")]),
    (C, models.M_NO_DROPOUT, NO_DROPOUT),
    (C, models.M_DROPOUT_ONE, NO_DROPOUT[1:]),
    (C, models.M_DROPOUT_P, [("nn.Dropout(0.5)", "nn.Dropout(0.2)")]),
    (C, models.M_DROPOUT_IN_EVAL, [(f"self.dropout(F.relu(self.fc{i}(x)))", f"F.dropout(F.relu(self.fc{i}(x)), 0.5)")
                                   for i in (1, 2)]),
    (C, models.M_FLATTEN, [(FC1, "nn.Linear(256 * 8 * 8, 512)"),
                           ("x = self.pool(x)                  # 8×8 → 4×4", "")]),
    (C, models.M_NO_PAD, [(", padding=1)", ")"), (FC1, FC1_NO_PAD)]),
    (CB, models.M_FINAL_RELU, [("return self.fc3(x)", "return F.relu(self.fc3(x))")]),
    (CB, models.M_FINAL_SOFTMAX, [("return self.fc3(x)", "return F.softmax(self.fc3(x), dim=1)")]),
    (CB, models.M_NO_DROPOUT, [("nn.Dropout(0.5)", "nn.Identity()")]),
    (CB, models.M_DROPOUT_ONE, [(FWD_FC[1], "        x = F.relu(self.fc2(x))\n")]),
    (CB, models.M_DROPOUT_P, [("nn.Dropout(0.5)", "nn.Dropout(p=0.3)")]),
    (CB, models.M_DROPOUT_IN_EVAL, [("self.dropout(", "F.dropout(p=0.5, input=")]),
    (CB, models.M_FLATTEN, [(FC1, "nn.Linear(256, 512)")]),
    (CB, models.M_NO_PAD, [(", padding=1)", ")"), (FC1, FC1_NO_PAD)]),
    (CB, models.M_BN_AFTER_RELU, [(f"F.relu(self.bn{i}(self.conv{i}(x)))", f"self.bn{i}(F.relu(self.conv{i}(x)))")
                                  for i in range(1, 5)]),
    (CO, criterion_optimizer.M_NO_MOMENTUM, [("momentum=0.9, ", "")]),
    (CO, criterion_optimizer.M_NO_WD, [(", weight_decay=5e-4", "")]),
    (CO, criterion_optimizer.M_NO_MOMENTUM + " and weight_decay=5e-4", [(", momentum=0.9, weight_decay=5e-4", "")]),
    (CO, criterion_optimizer.M_LR, [("lr=0.01", "lr=0.001")]),
    (CO, criterion_optimizer.M_ADAM, [(SGD, "optim.Adam(model.parameters(), lr=0.001)")]),
    (CO, criterion_optimizer.M_NLL, [("nn.CrossEntropyLoss()", "nn.NLLLoss()")]),
    (K, topk.M_TOPK_NO_VIEW, [("targets.view(-1, 1).expand_as(pred)", "targets")]),
    (K, topk.M_TOPK_MEAN_ALL, [(TOPK_RETURN, "return correct / pred.numel()")]),
    (K, topk.M_TOPK_PERCENT, [(TOPK_RETURN, "return 100.0 * correct / targets.size(0)")]),
    (K, topk.M_TOPK_SMALLEST, [("largest=True", "largest=False")]),
    (K, topk.M_TOPK_IGNORE_K, [("logits.topk(k,", "logits.topk(1,")]),
    (K, topk.M_TOPK_TIES, [("_, pred = logits.topk(k, dim=1, largest=True, sorted=True)",
                            "pred = torch.argsort(logits, dim=1, descending=True, stable=True)[:, :k]")]),
    (TR, loops.M_NO_ZERO_GRAD, [("        optimizer.zero_grad()\n", "")]),
    (TR, loops.M_ZERO_AFTER_BACKWARD, [("        optimizer.zero_grad()\n", ""),
                                       ("        loss.backward()\n",
                                        "        loss.backward()\n        optimizer.zero_grad()\n")]),
    (TR, loops.M_NO_STEP, [("        optimizer.step()\n", "")]),
    (TR, loops.M_STEP_BEFORE_BACKWARD, [("        loss.backward()\n        optimizer.step()\n",
                                         "        optimizer.step()\n        loss.backward()\n")]),
    (TR, loops.M_BATCH_MEAN, [("loss.item() * labels.size(0)", "loss.item()"),
                              ("return running_loss / total,", "return running_loss / len(loader),")]),
    (TR, loops.M_NO_TRAIN, [("    model.train()\n", "")]),
    (TR, loops.M_PERCENT, [("correct / total", "100 * correct / total")]),
    (TR, loops.M_LOSS_SUM, [("loss.item() * labels.size(0)", "loss.item()"),
                            ("return running_loss / total,", "return running_loss,")]),
    ("evaluate", loops.M_NO_EVAL, [("    model.eval()\n", "")]),
    ("evaluate", loops.M_NO_NO_GRAD, [("with torch.no_grad():", "if True:")]),
    ("evaluate", loops.M_NO_EVAL_NO_GRAD, [("    model.eval()\n", ""), ("with torch.no_grad():", "if True:")]),
    ("evaluate", loops.M_PERCENT, [("correct / total", "100 * correct / total")]),
    ("evaluate", loops.M_BATCH_MEAN, [("loss.item() * labels.size(0)", "loss.item()"),
                                      ("return running_loss / total,", "return running_loss / len(loader),")]),
]


@pytest.mark.parametrize("function,name,pairs", MISTAKE_CASES,
                         ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(MISTAKE_CASES)])
def test_mistake_is_named(function, name, pairs):
    text = failure(function, mutate(function, *pairs))
    if "raised an error" in text:   # e.g. pred.eq(targets) with N != k: torch cannot broadcast
        assert name in text, text  # the exception hint names the mistake
    else:
        assert "does not match" in text and f"Likely cause: {name}" in text, text


# =========================================================================== off the catalogue: never a wrong cause

# (exercise, replacements in the solution, the causes the feedback may name: () = none, a generic description)
OFF_CATALOGUE = [
    # ragged data: the accuracy as a mean of batch accuracies (the loss right)
    (TR, [("correct / total", "sum(batch_acc) / len(batch_acc)"),
          ("        correct += ", "        batch_acc.append((outputs.argmax(dim=1) == labels).float().mean().item())\n"
                                 "        correct += "),
          ("    running_loss, correct, total = 0.0, 0, 0\n",
           "    running_loss, correct, total = 0.0, 0, 0\n    batch_acc = []\n")], ()),
    # the mean of batch means written another way: a running average of the batch losses
    (TR, [("running_loss += loss.item() * labels.size(0)", "running_loss += (loss.item() - running_loss) / (i + 1)"),
          ("for images, labels in loader:", "for i, (images, labels) in enumerate(loader):"),
          ("return running_loss / total,", "return running_loss,")], (loops.M_BATCH_MEAN,)),
    # step() before backward() with the gradients cleared to zeros, not None: weight decay moves the weights
    # before the backward pass that needs them (torch raises; no cause may be named)
    (TR, [("optimizer.zero_grad()", "optimizer.zero_grad(set_to_none=False)"),
          ("        loss.backward()\n        optimizer.step()\n",
           "        optimizer.step()\n        loss.backward()\n")], ()),
    # step() before backward() and zero_grad() after it: each step uses the previous batch's gradient (torch
    # raises too: the weights change before the backward pass)
    (TR, [("        optimizer.zero_grad()\n", ""),
          ("        loss.backward()\n        optimizer.step()\n",
           "        optimizer.step()\n        optimizer.zero_grad()\n        loss.backward()\n")], ()),
    # zero_grad() between forward and step(), step() before backward(): the catalogued order mistake
    (TR, [("        optimizer.zero_grad()\n", ""),
          ("        loss.backward()\n        optimizer.step()\n",
           "        optimizer.zero_grad()\n        optimizer.step()\n        loss.backward()\n")],
     (loops.M_STEP_BEFORE_BACKWARD,)),
    ("evaluate", [("correct / total", "sum(accs) / len(accs)"),
                  ("            correct += ", "            accs.append((outputs.argmax(1) == labels).double().mean())\n"
                                             "            correct += "),
                  ("    running_loss, correct, total = 0.0, 0, 0\n", "    running_loss, correct, total = 0.0, 0, 0\n"
                                                                   "    accs = []\n")], ()),
    # normalisation constants rounded to three decimals: not ImageNet's, not CIFAR-10's
    (T, [(MEAN, "[0.507, 0.487, 0.441]"), (STD, "[0.268, 0.257, 0.276]")], ()),
    # a reflecting pad: the crop still moves, so it is not "RandomCrop without padding"
    (T, [("RandomCrop(32, padding=4)", "RandomCrop(32, padding=4, padding_mode='reflect')")], ()),
    ("split_train_val", [("int(0.8 * len(dataset))", "round(0.8 * len(dataset))")], ()),
    (CO, [("momentum=0.9", "momentum=0.95")], ()),
    (CO, [("weight_decay=5e-4", "weight_decay=5e-4, nesterov=True")], ()),
    (CO, [("lr=0.01", "lr=0.02")], ()),
    # dividing by the number of classes instead of rows
    (K, [(TOPK_RETURN, "return correct / logits.size(1)")], ()),
    # k ignored, written as a slice of the top-k columns
    (K, [("pred.eq(targets.view(-1, 1).expand_as(pred))", "pred[:, :1].eq(targets.view(-1, 1))")],
     (topk.M_TOPK_IGNORE_K,)),
    # a dropout probability outside the catalogue: no p=0.x variant may be named
    (C, [("nn.Dropout(0.5)", "nn.Dropout(0.6)")], ()),
]


@pytest.mark.parametrize("function,pairs,allowed", OFF_CATALOGUE,
                         ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(OFF_CATALOGUE)])
def test_an_off_catalogue_mistake_is_never_given_a_wrong_cause(function, pairs, allowed):
    student = mutate(function, *pairs)
    with pytest.raises(CheckFailure) as info:
        check(function)(student, hidden=True)
    text = str(info.value)
    causes = [line.split("Likely cause: ", 1)[1] for line in text.splitlines() if "Likely cause: " in line]
    assert all(any(c.startswith(a) for a in allowed) for c in causes), text
    if not causes:   # no cause: the generic description, with the exercise's own hint and section
        assert cp.EXERCISES[function].hint in text and "See the notebook section" in text, text


def test_step_before_backward_is_not_called_a_misplaced_zero_grad():
    """The issue's example: step() before backward() leaves the weights as they were, as zero_grad() between
    backward() and step() does; the order of the calls tells them apart."""
    student = mutate(TR, ("        loss.backward()\n        optimizer.step()\n",
                          "        optimizer.step()\n        loss.backward()\n"))
    text = failure(TR, student)
    cause = next(line for line in text.splitlines() if "Likely cause: " in line)
    assert cause.endswith(loops.M_STEP_BEFORE_BACKWARD) and "zero_grad" not in cause, text
    assert "batches whose loss.backward() came before their optimizer.step()" in text, text


def test_a_mean_of_batch_means_fails_only_on_a_ragged_loader():
    """Every batch full: the mean of the batch means is the mean per sample; a smaller last batch tells them apart
    (the visible case 2 ends with a batch of 6)."""
    pairs = [("loss.item() * labels.size(0)", "loss.item()"),
             ("return running_loss / total,", "return running_loss / len(loader),")]
    for name in (TR, "evaluate"):
        text = failure(name, mutate(name, *pairs))
        assert "Case 2 of 2" in text and "the last batch holds 6" in text, text
        assert f"Likely cause: {loops.M_BATCH_MEAN}" in text, text


def test_the_labels_reach_the_criterion_as_class_indices():
    """One-hot float labels give the same cross-entropy, but break the stated rule."""
    one_hot = ("        outputs = model(images)\n",
               "        outputs = model(images)\n        labels = F.one_hot(labels, outputs.size(1)).double()\n")
    text = failure(TR, mutate(TR, one_hot,
                              ("(outputs.argmax(dim=1) == labels)", "(outputs.argmax(dim=1) == labels.argmax(dim=1))")))
    assert "breaks a rule" in text and loops.LABELS_RULE in text and "float64" in text, text


def test_evaluate_may_leave_the_model_in_eval_mode_or_restore_it(capsys):
    """Section 5.2: the mode evaluate leaves is free; the parameters and running statistics are not."""
    restoring = mutate("evaluate", ("    model.eval()\n", "    was_training = model.training\n    model.eval()\n"),
                       ("    return running_loss / total, correct / total",
                        "    model.train(was_training)\n    return running_loss / total, correct / total"))
    check("evaluate")(restoring, hidden=True)
    check("evaluate")(build("evaluate"), hidden=True)
    assert capsys.readouterr().out.count("✓") == 2
    probe = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    loader = [(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))]
    build("evaluate")(probe, loader, nn.CrossEntropyLoss(), torch.device("cpu"))
    assert not probe.training   # the notebook's own solution leaves it in eval mode


def test_topk_accuracy_may_not_change_its_inputs():
    """Making the targets a column in place breaks the notebook's second call on the same labels."""
    text = failure(K, mutate(K, ("targets.view(-1, 1).expand_as(pred)", "targets.unsqueeze_(1).expand_as(pred)")))
    assert "breaks a rule" in text and topk.INPUTS_RULE in text and "targets was changed in place" in text, text


def test_batchnorm_momentum_shows_only_after_a_train_mode_pass(capsys):
    """The visible cases load running statistics; the hidden eval case follows one train-mode pass."""
    for edit in ("nn.BatchNorm2d(32, momentum=0.01)", "nn.BatchNorm2d(32, momentum=None)"):
        student = mutate(CB, ("nn.BatchNorm2d(32)", edit))
        check(CB)(student)
        assert "✓" in capsys.readouterr().out
        text = failure(CB, student, hidden=True)
        assert "one train-mode forward pass" in text and "Likely cause" not in text, text
    # eps, unlike momentum, shows on the visible cases: the running variances are of order one, not 1e-5
    text = failure(CB, mutate(CB, ("nn.BatchNorm2d(32)", "nn.BatchNorm2d(32, eps=1e-3)")))
    assert "Likely cause" not in text and "Case 4 of 6" in text, text


def test_split_leaves_the_global_generator_alone():
    """A split that reseeds torch's global generator is reproducible, but not harmless."""
    student = mutate("split_train_val", ("    generator = torch.Generator().manual_seed(seed)\n",
                                         "    torch.manual_seed(seed)\n    generator = None\n"))
    text = failure("split_train_val", student)
    assert f"Likely cause: {data.M_SPLIT_GLOBAL_SEED}" in text and "global random generator" in text, text


def test_every_catalogued_mistake_is_tested():
    tested = {(f, n) for f, n, _ in MISTAKE_CASES}
    for function, exercise in cp.EXERCISES.items():
        for mistake in exercise.mistakes:
            made_as = mistake.name.partition(VARIANT_OF)[0]   # a mistake with several settings is tested once
            assert (function, made_as) in tested, (function, mistake.name)


def test_the_setting_of_a_mistake_is_named():
    """A mistake made with one of several settings (here the learning rate) says which one."""
    text = failure(CO, mutate(CO, ("lr=0.01", "lr=0.001")))
    assert f"Likely cause: {variant_name(criterion_optimizer.M_LR, 'lr=0.001')}" in text, text


def test_brief_mistakes_are_catalogued():
    """The mistakes the assignment must reject, by name."""
    names = {m.name for e in cp.EXERCISES.values() for m in e.mistakes}
    for key in ("activation on the final layer", "without being made a column", "forgetting zero_grad",
                "model.eval() missing", "torch.no_grad() missing"):
        assert any(key in n for n in names), key


def test_top5_without_view_on_a_batch_of_five_is_named():
    """With N == k the wrong comparison broadcasts silently; the check still names it."""
    student = mutate("topk_accuracy", ("targets.view(-1, 1).expand_as(pred)", "targets"))
    text = failure("topk_accuracy", student)
    assert topk.M_TOPK_NO_VIEW in text


def test_model_that_does_not_fit_is_explained():
    """A forgotten pooling with fc1 left at 4096 crashes in forward: the error names the layout."""
    student = mutate("CustomCNN", ("x = self.pool(x)                  # 8×8 → 4×4", ""))
    text = failure("CustomCNN", student)
    assert "CustomCNN raised an error" in text and "RuntimeError" in text, text
    assert "a shape does not fit" in text and "flatten 4096" in text, text


def test_wrong_return_kind_is_explained():
    text = failure("train_one_epoch", lambda *args: None)
    assert "None" in text or "expected" in text.lower()
    text = failure("build_transforms", lambda: transforms.ToTensor())
    assert "build_transforms" in text


# =========================================================================== notebook, samples
# (the release notebook's stubs are tested for every exercise by tests/test_contract.py)


def test_notebook_cells_are_the_checked_ones():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tests = {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}
    for name in FUNCTIONS:
        assert name in CELLS and f"test_{name}" in tests
        assert tests[f"test_{name}"].source == (f"check_{name}({name})\n### BEGIN HIDDEN TESTS\n"
                                                f"check_{name}({name}, hidden=True)\n### END HIDDEN TESTS")
        assert 1 <= tests[f"test_{name}"].metadata["nbgrader"]["points"] <= 3
    assert set(cp.EXERCISES) == set(FUNCTIONS)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "USE_REAL_CIFAR100 = False" in code and "CIFAR100(root=DATA_ROOT, train=True, download=True" in code


# The sample's expected diagnosis quotes code the mistake's name may no longer hold (contract clause i): the
# name now reads "targets compared with the predictions without being made a column". Runs as xfail(strict=True):
# once utils/instructor/samples/cnn_pipeline.py expects the new words, the test passes and the entry must go.
SAMPLE_GAPS: dict[str, str] = {}   # sample -> why its diagnosis does not match yet (xfail, strict)


@pytest.mark.parametrize("sample", [pytest.param(s, id=s.student, marks=[pytest.mark.xfail(
    strict=True, reason=SAMPLE_GAPS[s.student])] if s.student in SAMPLE_GAPS else []) for s in SAMPLES])
def test_sample_mistake_applies_and_is_diagnosed(sample):
    assert sample.student.startswith("cnn_pipeline_") and sample.notebook == "cnn_pipeline"
    student = mutate(sample.cell, *sample.replace, once=True)
    text = failure(sample.cell, student, hidden=True)
    assert sample.diagnosis in text, text
    others = [n for n in FUNCTIONS if n != sample.cell]
    assert others and all(sample.cell != o for o in others)


def test_samples_are_enough_and_unique():
    assert len(SAMPLES) >= 3
    assert len({s.student for s in SAMPLES}) == len(SAMPLES)


# =========================================================================== the trusted-grading split


@pytest.mark.parametrize("name", FUNCTIONS)
def test_call_returns_plain_arrays_that_the_grader_accepts(name):
    """Inputs are plain data; ``call`` (student code only) gives numeric arrays; judging them elsewhere passes."""
    exercise = cp.EXERCISES[name]
    with grading_salt("a course secret"):
        cases = exercise.make_cases(name not in MODELS)   # visible model cases already cover every kind
    student = build(name)
    arrays = []
    for index, case in enumerate(cases):
        assert check_failures.plain_data(case.inputs), (name, index)
        inputs = pickle.loads(pickle.dumps(case.inputs))   # what the kernel receives
        produced = produce(exercise, student, Case(case.description, inputs), "case")
        assert produced.error is None, produced.error
        array = to_numpy(produced.value)
        assert isinstance(array, np.ndarray) and array.dtype.kind in "biuf", type(produced.value)
        arrays.append(pickle.loads(pickle.dumps(array)))
    verdict = evaluate(exercise, cases, lambda index, case, label: Produced(value=arrays[index]))
    assert isinstance(verdict, CheckResult), verdict
