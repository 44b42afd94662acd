"""Tests of utils/cnn/architectures: the checks of source/cnn/cnn_architectures.ipynb.

For every check: the instructor solution and independent correct variants pass (torchvision's own
modules where torchvision has one); each catalogued mistake, written as student code, fails with the
mistake's name in the message; a forward left as a stub is reported as not implemented; the global RNGs
are untouched. The references themselves are compared with torchvision, and the sample mistakes of
utils/instructor/samples/cnn_architectures.py must apply to the notebook and be diagnosed. What every
exercise keeps (the release stubs, each mistake diagnosed on generated outputs) is tested in
tests/test_contract.py.
"""
from __future__ import annotations

from pathlib import Path

import check_failures
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import utils.cnn.architectures as ca
from notebook_solutions import NotebookSolutions
from utils.checks.exercise import Case
from utils.checks.feedback import NotImplementedYet
from utils.cnn.architectures.basic_block import BASIC_BLOCK, BasicBlockVariant, torchvision_basic_block
from utils.cnn.architectures.classifiers import AlexNetVariant, LeNet5Reference
from utils.cnn.architectures.squeeze_excitation import SEBlockReference, SEResNet18Reference
from utils.instructor.samples.cnn_architectures import MISTAKES as SAMPLES

NOTEBOOK = Path(__file__).resolve().parents[1] / "source" / "cnn" / "cnn_architectures.ipynb"
ORDER = ["LeNet5", "VGGBlock", "BasicBlock", "AlexNet", "SEBlock", "SEResNet18", "CNNClassifier",
         "block_gradient_norms"]
NB = NotebookSolutions(NOTEBOOK, {"np": np, "torch": torch, "nn": nn, "F": F})
CELLS = NB.cells
SOL = NB.run({name: CELLS[name] for name in ORDER})


def mutate(name: str, *pairs: tuple[str, str], once: bool = False):
    """The object ``name`` from its solution cell with exact text replacements inside the solution blocks,
    run among all the solutions."""
    return NB.mutate(name, *pairs, once=once, namespace=SOL)


def check(name: str):
    return getattr(ca, f"check_{name}")


def fails_with(name: str, student, text: str, hidden: bool = False) -> str:
    return check_failures.fails_with(check(name), student, text, hidden=hidden)


# --------------------------------------------------------------------------- the notebook


def test_every_exercise_has_a_solution_cell_and_a_check():
    assert set(ORDER) <= set(CELLS)
    assert set(ORDER) == set(ca.EXERCISES)
    for name in ORDER:
        assert callable(check(name))


# --------------------------------------------------------------------------- references


def test_lenet_has_44426_parameters_on_28x28():
    model = LeNet5Reference(in_channels=1, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 44426
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert sum(p.numel() for p in SOL["LeNet5"]().parameters()) == 44426


def test_reference_variants_equal_torchvision():
    """The hand-written variants with no switch set are exactly torchvision's modules."""
    from torchvision.ops import SqueezeExcitation
    gen = torch.Generator().manual_seed(3)
    for config in [(8, 8, 1), (8, 16, 2), (6, 6, 2)]:
        tv = torchvision_basic_block(*config).double().eval()
        mine = BasicBlockVariant(*config).double().eval()
        mine.load_state_dict(tv.state_dict(), strict=True)
        x = torch.randn(2, config[0], 7, 7, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(mine(x), tv(x), atol=1e-12, rtol=0)
    se = SEBlockReference(16, 4).double()
    tv_se = SqueezeExcitation(16, 4).double()
    tv_se.load_state_dict({k: (v[:, :, None, None] if k.endswith("weight") else v)
                           for k, v in se.state_dict().items()})
    x = torch.randn(2, 16, 5, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(se(x), tv_se(x), atol=1e-12, rtol=0)


def test_alexnet_variant_has_torchvisions_names_and_outputs():
    from torchvision.models import AlexNet
    with torch.device("meta"):
        tv, mine = AlexNet(num_classes=5), AlexNetVariant(num_classes=5)
    assert {k: v.shape for k, v in tv.state_dict().items()} == {k: v.shape for k, v in mine.state_dict().items()}
    assert sum(p.numel() for p in AlexNet().parameters()) == 61100840


def test_seresnet_reference_counts():
    plain = sum(p.numel() for n, p in SEResNet18Reference(10, 16).named_parameters() if ".se." not in n)
    assert plain == 11173962           # the CIFAR ResNet-18 without SE
    assert sum(p.numel() for p in SEResNet18Reference(10, 16).parameters()) == 11263042


# --------------------------------------------------------------------------- accepted implementations


class LeNetFunctional(nn.Module):
    """Another correct LeNet: functional pooling, view, flatten size computed with a dummy forward."""

    def __init__(self, in_channels=1, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        with torch.no_grad():
            flat = int(self._features(torch.zeros(1, in_channels, 28, 28)).numel())
        self.fc1 = nn.Linear(flat, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def _features(self, x):
        return F.max_pool2d(F.relu(self.conv2(F.max_pool2d(F.relu(self.conv1(x)), 2))), 2)

    def forward(self, x):
        x = self._features(x)
        x = x.view(x.size(0), -1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class TorchvisionBasicBlock(nn.Module):
    def __new__(cls, in_channels, out_channels, stride=1):
        return torchvision_basic_block(in_channels, out_channels, stride)


class SEPooling(nn.Module):
    def __init__(self, channels, reduction=16):
        super().__init__()
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.fc2 = nn.Linear(channels // reduction, channels)

    def forward(self, x):
        n, c = x.shape[:2]
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(self.squeeze(x).view(n, c)))))
        return x * s.view(n, c, 1, 1)


class VGGFunctional(nn.Module):
    """Another correct VGG block: the ModuleList filled by append, functional ReLU and pooling."""

    def __init__(self, in_channels, out_channels, num_convs=2):
        super().__init__()
        self.convs = nn.ModuleList()
        for i in range(num_convs):
            self.convs.append(nn.Conv2d(out_channels if i else in_channels, out_channels, (3, 3), 1, (1, 1)))

    def forward(self, x):
        for conv in self.convs:
            x = conv(x).clamp(min=0)
        return F.max_pool2d(x, kernel_size=2)


class TorchvisionSqueezeExcitation(nn.Module):
    """torchvision's own SE block: correct, but not written by the student."""

    def __new__(cls, channels, reduction=16):
        from torchvision.ops import SqueezeExcitation
        return SqueezeExcitation(channels, channels // reduction)


class SEConv1x1(nn.Module):
    """A correct SE block written with 1×1 convolutions named fc1 / fc2 (torchvision's layout, by hand)."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class SEResNetLoops(nn.Module):
    """Another correct SE-ResNet-18: blocks from a _make_layer helper, mean pooling, float32 throughout."""

    def __init__(self, num_classes=10, reduction=16):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.in_planes = 64
        self.layer1 = self._make_layer(64, 1, reduction)
        self.layer2 = self._make_layer(128, 2, reduction)
        self.layer3 = self._make_layer(256, 2, reduction)
        self.layer4 = self._make_layer(512, 2, reduction)
        self.fc = nn.Linear(512, num_classes)

    def _make_layer(self, planes, stride, reduction):
        blocks = []
        for s in (stride, 1):
            blocks.append(SOL["SEBasicBlock"](self.in_planes, planes, s, reduction))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            out = layer(out)
        return self.fc(out.mean(dim=(2, 3)))


class ClassifierFunctional(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2),
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2))
        self.classifier = nn.Linear(128, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def gradient_norms_retain_grad(blocks, x, grad_output):
    hs = [x.clone().requires_grad_()]
    for block in blocks:
        hs.append(block(hs[-1]))
    for h in hs:
        h.retain_grad()
    hs[-1].backward(grad_output)
    return np.array([float(torch.sqrt((h.grad ** 2).sum())) for h in hs])


def gradient_norms_loop(blocks, x, grad_output):
    out = []
    for k in range(len(blocks) + 1):
        h = x.detach().requires_grad_()
        start = h
        for i, block in enumerate(blocks):
            if i == k:
                start = h = h.detach().requires_grad_()
            h = block(h)
        if k == len(blocks):
            out.append(grad_output.norm().item())
            continue
        (g,) = torch.autograd.grad((h * grad_output).sum(), start)
        out.append(g.norm().item())
    return out


ACCEPTED = [
    ("LeNet5", lambda: SOL["LeNet5"]), ("LeNet5", lambda: LeNetFunctional),
    ("VGGBlock", lambda: SOL["VGGBlock"]), ("VGGBlock", lambda: VGGFunctional),
    ("BasicBlock", lambda: SOL["BasicBlock"]),
    ("SEBlock", lambda: SOL["SEBlock"]), ("SEBlock", lambda: SEPooling),
    ("SEBlock", lambda: SEConv1x1),
    ("SEResNet18", lambda: SOL["SEResNet18"]),
    ("CNNClassifier", lambda: SOL["CNNClassifier"]), ("CNNClassifier", lambda: ClassifierFunctional),
    ("block_gradient_norms", lambda: SOL["block_gradient_norms"]),
    ("block_gradient_norms", lambda: gradient_norms_retain_grad),
    ("block_gradient_norms", lambda: gradient_norms_loop),
]


@pytest.mark.parametrize("name, student", ACCEPTED, ids=[f"{n}-{i}" for i, (n, _) in enumerate(ACCEPTED)])
def test_correct_implementations_pass_and_leave_the_rngs_alone(name, student, capsys):
    np_state, torch_state = np.random.get_state(), torch.get_rng_state()
    check(name)(student(), hidden=True)
    assert "✓" in capsys.readouterr().out
    after = np.random.get_state()
    assert np_state[0] == after[0] and np.array_equal(np_state[1], after[1]) and np_state[2:] == after[2:]
    assert torch.equal(torch_state, torch.get_rng_state())


def test_alexnet_accepts_the_solution(capsys):
    """(torchvision's own AlexNet is the reference; the solution must load its state_dict.)"""
    torch_state = torch.get_rng_state()
    check("AlexNet")(SOL["AlexNet"], hidden=True)
    assert capsys.readouterr().out.count("✓") == 1
    assert torch.equal(torch_state, torch.get_rng_state())


def _torchvision_alexnet():
    from torchvision.models import AlexNet
    return AlexNet


@pytest.mark.parametrize("name, student, called", [
    ("BasicBlock", lambda: TorchvisionBasicBlock, "torchvision.models.resnet.BasicBlock"),
    ("SEBlock", lambda: TorchvisionSqueezeExcitation, "torchvision.ops.misc.SqueezeExcitation"),
    ("AlexNet", _torchvision_alexnet, "torchvision.models.alexnet.AlexNet")])
def test_torchvisions_own_module_is_not_an_answer(name, student, called):
    """It is what the answer is compared with: it loads the state_dict and matches, but earns nothing."""
    message = fails_with(name, student(), "must be written from scratch")
    assert called in message, message


def test_seresnet_accepts_another_layout(capsys):
    check("SEResNet18")(SEResNetLoops)
    assert "✓" in capsys.readouterr().out


def test_a_module_built_for_real_does_not_move_the_global_rng(capsys):
    """LeNetFunctional cannot be built on the meta device only if .item() is used: force the CPU path."""
    class LeNetItem(LeNetFunctional):
        def __init__(self, in_channels=1, num_classes=10):
            super().__init__(in_channels, num_classes)
            assert torch.zeros(1).sum().item() == 0.0   # fails on the meta device
    state = torch.get_rng_state()
    check("LeNet5")(LeNetItem)
    assert torch.equal(state, torch.get_rng_state())


# --------------------------------------------------------------------------- rejected mistakes

MAX_POOL = "self.pool = nn.MaxPool2d(kernel_size=2, stride=2)"
AVG_POOL = "self.pool = nn.AvgPool2d(kernel_size=2, stride=2)"
CONV1, CONV2 = "Conv2d(in_channels, out_channels, 3, stride", "Conv2d(out_channels, out_channels, 3, stride"
SE_FCS = "nn.Linear(channels, channels // reduction)\n        self.fc2 = nn.Linear(channels // reduction,"

REJECTED = [
    # LeNet-5
    ("LeNet5", (MAX_POOL, AVG_POOL), "LeNet with average pooling instead of max pooling"),
    ("LeNet5", ("nn.Linear(16 * 4 * 4, 120)", "nn.Linear(16 * 5 * 5, 120)"), "wrong flatten size"),
    ("LeNet5", ("return self.fc3(x)", "return F.relu(self.fc3(x))"), "activation on the final classifier layer"),
    ("LeNet5", ("x = F.relu(self.fc1(x))", "x = torch.tanh(self.fc1(x))"), None),
    ("LeNet5", ("F.relu(", "torch.tanh("), "tanh activations"),
    ("LeNet5", ("return self.fc3(x)", "return F.softmax(self.fc3(x), dim=1)"), "softmax on the output"),
    # VGG block
    ("VGGBlock", ("kernel_size=3, padding=1)", "kernel_size=3)"), "have no padding"),
    ("VGGBlock", ("return self.pool(x)", "return x"), "max pooling at the end of the block is missing"),
    ("VGGBlock", (MAX_POOL, AVG_POOL), "average pooling instead of max pooling"),
    ("VGGBlock", ("""        for conv in self.convs:
            x = F.relu(conv(x))
""", """        for i, conv in enumerate(self.convs):
            x = conv(x) if i == len(self.convs) - 1 else F.relu(conv(x))
"""), "no ReLU after the last convolution"),
    # BasicBlock
    ("BasicBlock", ("if stride != 1 or in_channels != out_channels:", "if False:"),
     "no projection shortcut when the shape changes"),
    ("BasicBlock", ("if stride != 1 or in_channels != out_channels:", "if in_channels != out_channels:"),
     "no projection shortcut when the shape changes"),
    ("BasicBlock", ("return F.relu(out + identity)", "return F.relu(out) + identity"),
     "ReLU before the addition instead of after it"),
    ("BasicBlock", ("                nn.BatchNorm2d(out_channels),\n", ""), "BatchNorm missing in the shortcut"),
    ("BasicBlock", ("3, stride=stride, padding=1, bias=False)", "3, stride=1, padding=1, bias=False)"),
     None),
    ("BasicBlock", ("padding=1, bias=False)", "padding=1)"), "the 3×3 convolutions have a bias"),
    ("BasicBlock", ((f"{CONV1}=stride", f"{CONV1}=1"), (f"{CONV2}=1", f"{CONV2}=stride")),
     "applied in the second 3×3 convolution"),
    # SE block
    ("SEBlock", ("z = x.mean(dim=(2, 3))", "z = x.amax(dim=(2, 3))"), "SE using max instead of average pooling"),
    ("SEBlock", ("s = torch.sigmoid(self.fc2(F.relu(self.fc1(z))))", "s = self.fc2(F.relu(self.fc1(z)))"),
     "SE without the sigmoid"),
    ("SEBlock", (SE_FCS, "nn.Linear(channels, reduction)\n        self.fc2 = nn.Linear(reduction,"),
     "SE reduction ratio wrong"),
    ("SEBlock", ("return x * s[:, :, None, None]", "return s[:, :, None, None]"), "returns the channel weights"),
    ("SEBlock", ("torch.sigmoid(self.fc2(F.relu(self.fc1(z))))", "F.softmax(self.fc2(F.relu(self.fc1(z))), dim=1)"),
     "softmax instead of sigmoid"),
    ("SEBlock", (SE_FCS, "nn.Linear(channels, channels)\n        self.fc2 = nn.Linear(channels,"),
     "not C (no bottleneck)"),
    # SE-ResNet-18
    ("SEResNet18", ("out = self.se(out)\n        return F.relu(out + identity)",
                    "return F.relu(self.se(out + identity))"), "SE applied after the addition"),
    ("SEResNet18", ("self.se = SEBlock(out_channels, reduction)",
                    "self.se = SEBlock(out_channels, out_channels // reduction)"), "SE reduction ratio wrong"),
    ("SEResNet18", ("kernel_size=3, stride=1, padding=1, bias=False)\n        self.bn1 = nn.BatchNorm2d(64)",
                    "kernel_size=7, stride=2, padding=3, bias=False)\n        self.bn1 = nn.BatchNorm2d(64)"),
     "ImageNet stem"),
    # the repaired classifier
    ("CNNClassifier", ("return self.classifier(x)", "return F.relu(self.classifier(x))"),
     "activation on the final classifier layer"),
    ("CNNClassifier", ("return self.classifier(x)", "return F.softmax(self.classifier(x), dim=1)"),
     "softmax on the output"),
    ("CNNClassifier", ("self.classifier = nn.Linear(128, num_classes)",
                       "self.classifier = nn.Linear(128 * 56 * 56, num_classes)"), "wrong flatten size"),
    ("CNNClassifier", ("kernel_size=3, padding=1), nn.BatchNorm2d(64)", "kernel_size=3), nn.BatchNorm2d(64)"), None),
    ("CNNClassifier", ((", padding=1), nn.BatchNorm2d(64)", "), nn.BatchNorm2d(64)"),
                       (", padding=1), nn.BatchNorm2d(128)", "), nn.BatchNorm2d(128)")), "still have no padding"),
    ("CNNClassifier", (("nn.BatchNorm2d(64)", "nn.Identity()"), ("nn.BatchNorm2d(128)", "nn.Identity()")),
     "BatchNorm2d missing"),
    # gradient norms
    ("block_gradient_norms", ("g.norm().item()", "g.abs().mean().item()"), "mean of |gradient| instead of the L2 norm"),
    ("block_gradient_norms", ("g.norm().item()", "(g ** 2).sum().item()"), "square root is missing"),
    ("block_gradient_norms", ("grad_outputs=grad_output", "grad_outputs=torch.ones_like(hs[-1])"),
     "grad_output is ignored"),
    ("block_gradient_norms", ("for g in grads]", "for g in grads][::-1]"), "reverse order"),
    ("block_gradient_norms", ("for g in grads]", "for g in grads[:-1]]"), "is missing"),
]


@pytest.mark.parametrize("name, pair, text", REJECTED, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(REJECTED)])
def test_mistakes_are_rejected_by_name(name, pair, text):
    student = mutate(name, *(pair if isinstance(pair[0], tuple) else (pair,)))
    message = fails_with(name, student, text or "✗")
    if text is None:   # no catalogue entry on purpose: the message must still say what differed
        assert "differ" in message or "Shape" in message or "raised" in message, message


def test_seresnet_without_projection_is_named():
    student = mutate("SEResNet18", ("if stride != 1 or in_channels != out_channels:", "if False:"))
    fails_with("SEResNet18", student, "no projection shortcut when the shape changes")


def test_alexnet_mistakes_are_named():
    flat = mutate("AlexNet", ("nn.Linear(256 * 6 * 6, 4096)", "nn.Linear(256 * 5 * 5, 4096)"))
    fails_with("AlexNet", flat, "wrong flatten size")
    final = mutate("AlexNet", ("return self.classifier(x)", "return F.relu(self.classifier(x))"))
    fails_with("AlexNet", final, "activation on the final classifier layer")


class SESequential(nn.Module):
    """A correct SE computation whose layers are not named fc1 / fc2 as the exercise asks."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        self.excite = nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(),
                                    nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, x):
        return x * self.excite(x.mean(dim=(2, 3)))[:, :, None, None]


class SETransposed(SEPooling):
    """fc1's weight stored transposed (same number of parameters, another shape)."""

    def __init__(self, channels, reduction=16):
        super().__init__(channels, reduction)
        self.fc1.weight = nn.Parameter(torch.zeros(channels, channels // reduction))

    def forward(self, x):
        z = F.relu(x.mean(dim=(2, 3)) @ self.fc1.weight + self.fc1.bias)
        return x * torch.sigmoid(self.fc2(z))[:, :, None, None]


def test_parameter_mismatch_is_a_check_failure_naming_the_parameters():
    """Other names or shapes than the state_dict's: a CheckFailure that lists them, never a raw exception."""
    message = fails_with("SEBlock", SESequential, "ParameterMismatch")
    assert "fc1.weight" in message and "excite.0.weight" in message
    assert "Hint: use the attribute names" in message
    message = fails_with("SEBlock", SETransposed, "different shapes")
    assert "fc1.weight: yours (32, 4), expected (4, 32)" in message, message


def test_call_returns_plain_numpy_and_inputs_pickle():
    """The trusted grader pickles the inputs, runs ``call`` in the student's kernel and saves arrays only."""
    import pickle
    students = {"block_gradient_norms": gradient_norms_loop, "AlexNet": SOL["AlexNet"]}
    for name, exercise in ca.EXERCISES.items():
        cases = exercise.make_cases(name != "AlexNet")
        if name != "AlexNet":
            pickle.loads(pickle.dumps([(c.description, c.inputs) for c in cases]))
        firsts = [c for c in cases if c.inputs.get("kind") == "count"][:1] + \
                 [c for c in cases if c.inputs.get("kind") != "count"][:1 if name != "AlexNet" else 0]
        for case in firsts:
            value = exercise.call(students.get(name, SOL[name]), case.inputs)
            assert type(value) is np.ndarray and value.dtype.kind == "f", (name, type(value))


def test_other_parameter_names_are_explained():
    student = mutate("BasicBlock", ("self.downsample = nn.Sequential(", "self.shortcut = nn.Sequential("),
                     ("self.downsample = None", "self.downsample = self.shortcut = None"),
                     ("identity = x if self.downsample is None else self.downsample(x)",
                      "identity = x if self.shortcut is None else self.shortcut(x)"))
    message = fails_with("BasicBlock", student, "ParameterMismatch")
    assert "downsample.0.weight" in message and "shortcut.0.weight" in message


# --------------------------------------------------------------------------- stubs
# (the release notebook's stubs are tested for every exercise by tests/test_contract.py)


class StubForward(nn.Module):
    """__init__ done (with the right parameters), forward still a stub."""

    def __new__(cls, *args, **kwargs):
        module = SOL["BasicBlock"](*args, **kwargs)
        module.forward = lambda x: (_ for _ in ()).throw(NotImplementedError())
        return module


def test_forward_stub_is_not_implemented_yet():
    with pytest.raises(NotImplementedYet):
        check("BasicBlock")(StubForward)


# --------------------------------------------------------------------------- sample mistakes


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.student for s in SAMPLES])
def test_sample_mistakes_apply_and_are_diagnosed(sample):
    assert sample.notebook == "cnn_architectures" and sample.student.startswith("cnn_")
    student = mutate(sample.cell, *sample.replace, once=True)
    fails_with(sample.cell, student, sample.diagnosis)


def test_at_least_three_samples_with_unique_students():
    assert len(SAMPLES) >= 3
    assert len({s.student for s in SAMPLES}) == len(SAMPLES)


def test_cached_weights_follow_the_grading_salt():
    from utils.checks.seeding import grading_salt
    public = BASIC_BLOCK.make_cases(False)[-1].inputs
    with grading_salt("course secret"):
        graded = BASIC_BLOCK.make_cases(False)[-1].inputs
    assert not np.array_equal(public["x"], graded["x"])
    assert not np.array_equal(public["state"]["conv1.weight"], graded["state"]["conv1.weight"])
    again = BASIC_BLOCK.make_cases(False)[-1].inputs
    assert np.array_equal(public["x"], again["x"])


@pytest.mark.parametrize("name, student, verdict", [
    ("SEBlock", lambda: SEPooling, "✓"), ("VGGBlock", lambda: VGGFunctional, "✓"),
    ("SEBlock", lambda: SESequential, "ParameterMismatch"),
    ("SEBlock", lambda: mutate("SEBlock", ("z = x.mean(dim=(2, 3))", "z = x.amax(dim=(2, 3))")),
     "SE using max instead of average pooling")])
def test_the_trusted_split_gives_the_same_verdict(name, student, verdict):
    """As utils.grading.in_kernel.recording / utils.grading.trusted do: pickled inputs, ``call`` on one side,
    plain arrays across, references and the verdict on the other side."""
    import pickle

    from utils.checks.compare import to_numpy
    from utils.checks.exercise import Produced, case_label, evaluate, produce
    from utils.checks.feedback import CheckResult
    exercise = ca.EXERCISES[name]
    cases = exercise.make_cases(True)
    sent = pickle.loads(pickle.dumps([(c.description, c.inputs) for c in cases]))
    recorded = []
    for index, (description, inputs) in enumerate(sent):
        produced = produce(exercise, student(), Case(description, inputs), case_label(index + 1, len(sent)))
        recorded.append(produced if produced.error else Produced(value=to_numpy(produced.value).copy()))
    result = evaluate(exercise, cases, lambda index, case, label: recorded[index])
    text = result.text()
    assert verdict in text, text
    assert isinstance(result, CheckResult) == (verdict == "✓")


# --------------------------------------------------------------------------- issue 15: coverage, rules, causes
# Each case added for an uncovered property is tested here with the mistaken variant it exists to reject;
# off-catalogue variants must never be given a wrong cause.


def no_cause(message: str) -> str:
    assert "Likely cause" not in message, message
    return message


def test_alexnet_adaptive_pooling_is_observed():
    """At 224×224 the features' map is already 6×6 and the adaptive pooling does nothing: the check's input
    leaves a 4×5 map, so a forward without avgpool fails, and so does a max pooling in its place."""
    skipped = mutate("AlexNet", ("        x = self.avgpool(x)\n", ""))
    message = fails_with("AlexNet", skipped, "raised")
    assert "9216" in message or "shapes cannot be multiplied" in message, message
    maxpool = mutate("AlexNet", ("nn.AdaptiveAvgPool2d((6, 6))", "nn.AdaptiveMaxPool2d((6, 6))"))
    message = no_cause(fails_with("AlexNet", maxpool, "values differ"))
    assert "input 1×3×159×191" in message, message


def test_alexnet_dropout_rate_is_observed():
    """Dropout is the identity in eval mode: the train-mode forward (seeded) shows its probability."""
    student = mutate("AlexNet", ("nn.Dropout(p=0.5), nn.Linear(4096, 4096)",
                                 "nn.Dropout(p=0.2), nn.Linear(4096, 4096)"))
    message = no_cause(fails_with("AlexNet", student, "Only the train-mode output differs"))
    assert "the eval-mode output after that train-mode step matches" in message, message


class EvalOnlyBatchNormBlock(nn.Module):
    """A from-scratch BasicBlock whose BatchNorms always use the running statistics (training flag forgotten)."""

    def __new__(cls, in_channels, out_channels, stride=1):
        block = SOL["BasicBlock"](in_channels, out_channels, stride)

        def bn(layer, t):
            return F.batch_norm(t, layer.running_mean, layer.running_var, layer.weight, layer.bias, eps=layer.eps)

        def forward(x):
            identity = x if block.downsample is None else bn(block.downsample[1], block.downsample[0](x))
            out = F.relu(bn(block.bn1, block.conv1(x)))
            return F.relu(bn(block.bn2, block.conv2(out)) + identity)
        block.forward = forward
        return block


def test_batchnorm_is_checked_in_train_mode_too():
    """Eval-mode cases alone pass a block that never uses batch statistics; the train case (batch 2) does not."""
    message = no_cause(fails_with("BasicBlock", EvalOnlyBatchNormBlock, "train-mode output"))
    assert "Case 6 of 7" in message, message   # the eval-only cases before it pass


def test_running_statistics_updated_twice_are_seen():
    """A forward that runs bn1 twice (a debugging line left in) updates the running statistics twice: only the
    eval-mode output after the train-mode step shows it."""
    student = mutate("BasicBlock", ("out = F.relu(self.bn1(self.conv1(x)))",
                                    "self.bn1(self.conv1(x))\n        out = F.relu(self.bn1(self.conv1(x)))"))
    message = no_cause(fails_with("BasicBlock", student,
                                  "Only the eval-mode output after that train-mode step differs"))
    assert "train-mode output matches" in message, message


def test_dropout_added_to_lenet_is_seen_in_train_mode():
    student = mutate("LeNet5", ("return self.fc3(x)", "return self.fc3(F.dropout(x, 0.5, self.training))"))
    message = no_cause(fails_with("LeNet5", student, "train-mode output"))
    assert "Only the train-mode output differs" in message, message


def test_forward_must_not_change_its_input_in_place():
    student = mutate("SEBlock", ("return x * s[:, :, None, None]", "x *= s[:, :, None, None]\n        return x"))
    message = fails_with("SEBlock", student, "breaks a rule of the exercise")
    assert "must not change its input tensor in place" in message and "x was changed in place" in message, message


def test_a_squeezed_batch_of_one_is_seen():
    """Batches of 2 or more hide a flatten written as squeeze(): the batch-of-one case does not."""
    student = mutate("CNNClassifier", ("x = torch.flatten(x, 1)", "x = x.squeeze()"))
    message = fails_with("CNNClassifier", student, "Shape: yours (4,), expected (1, 4)")
    assert "input 1×3×29×43" in message and "a missing axis of length 1" in message, message


def test_se_hidden_width_rounds_down():
    """channels = 20, reduction = 8: C // r = 2; rounding up gives 3 (a hidden count case)."""
    student = mutate("SEBlock", ("self.fc1 = nn.Linear(channels, channels // reduction)\n"
                                 "        self.fc2 = nn.Linear(channels // reduction, channels)",
                                 "self.fc1 = nn.Linear(channels, -(-channels // reduction))\n"
                                 "        self.fc2 = nn.Linear(-(-channels // reduction), channels)"))
    check("SEBlock")(student)   # every visible channel count is a multiple of the reduction
    message = fails_with("SEBlock", student, "SEBlock(channels=20, reduction=8)", hidden=True)
    assert "Yours 143, expected 102." in message, message   # 20·3 + 3 + 3·20 + 20 against 20·2 + 2 + 2·20 + 20


def test_vgg_pooling_that_rounds_up_is_seen():
    student = mutate("VGGBlock", ("return self.pool(x)", "return F.max_pool2d(x, 2, ceil_mode=True)"))
    fails_with("VGGBlock", student, "Shape: yours (1, 6, 5, 6), expected (1, 6, 4, 5).")


def test_gradient_norms_leave_the_callers_blocks_alone():
    """A helper that switches the caller's network to eval mode breaks section 8's rule."""
    student = mutate("block_gradient_norms", ("hs = [x.detach().requires_grad_()]",
                                              "blocks.eval()\n    hs = [x.detach().requires_grad_()]"))
    message = fails_with("block_gradient_norms", student, "breaks a rule of the exercise")
    assert "blocks was left in eval mode" in message, message


@pytest.mark.parametrize("dropped", [0, 1])
def test_a_dropped_norm_is_reported_as_that_entry(dropped):
    """Dropping ‖∂L/∂h_0‖ (the input never kept) or ‖∂L/∂h_1‖ (an off-by-one) is reported as that entry
    missing, never as the catalogued missing last entry."""
    student = mutate("block_gradient_norms", ("return np.array([g.norm().item() for g in grads])",
                                              f"return np.delete(np.array([g.norm().item() for g in grads]), "
                                              f"{dropped})"))
    message = no_cause(fails_with("block_gradient_norms", student, f"Entry {dropped} (expected"))
    assert "is missing; the others match" in message, message


def test_every_dropped_norm_is_located_on_every_case():
    """On every case (hidden ones too) the norms differ enough that the generic diagnosis finds which entry
    is missing: no two neighbours are within its tolerance of each other."""
    from utils.checks.characterise import describe_shape
    exercise = ca.EXERCISES["block_gradient_norms"]
    for case in exercise.make_cases(True):
        expected = exercise.reference(case.inputs)
        for k in range(len(expected)):
            lines = describe_shape((len(expected) - 1,), expected.shape, exercise.layout,
                                   np.delete(expected, k), expected)
            assert any(line.startswith(f"Entry {k} (expected") for line in lines), (case.description, k, lines)


OFF_CATALOGUE = [
    # (exercise, edits, a cause that would be wrong)
    ("LeNet5", ("x = self.pool(F.relu(self.conv2(x)))", "x = F.avg_pool2d(F.relu(self.conv2(x)), 2)"),
     "LeNet with average pooling"),
    ("LeNet5", ("x = F.relu(self.fc2(x))", "x = self.fc2(x)"), "tanh"),
    ("VGGBlock", ("""        for conv in self.convs:
            x = F.relu(conv(x))
""", """        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x)) if i else conv(x)
"""), "no ReLU after the last convolution"),
    ("BasicBlock", ("return F.relu(out + identity)", "return out + identity"), "ReLU before the addition"),
    ("SEBlock", ("s = torch.sigmoid(self.fc2(F.relu(self.fc1(z))))", "s = torch.tanh(self.fc2(F.relu(self.fc1(z))))"),
     "SE without the sigmoid"),
    ("SEBlock", ("z = x.mean(dim=(2, 3))", "z = x.mean(dim=(2, 3)) * 2"), "max instead of average"),
    ("CNNClassifier", ("return self.classifier(x)", "return F.log_softmax(self.classifier(x), dim=1)"),
     "softmax on the output"),
    ("block_gradient_norms", ("g.norm().item()", "g.flatten(1).norm(dim=1).mean().item()"), "mean of |gradient|"),
]


@pytest.mark.parametrize("name, pair, wrong", OFF_CATALOGUE,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(OFF_CATALOGUE)])
def test_off_catalogue_variants_get_no_wrong_cause(name, pair, wrong):
    message = fails_with(name, mutate(name, pair), "✗")
    assert wrong not in message, message
    no_cause(message)
    assert "differ" in message or "Shape" in message or "values" in message, message


def test_the_stride_only_shortcut_is_named_as_such():
    """Projecting only when the channels change: the narrower catalogue entry, consistent with every case."""
    student = mutate("BasicBlock", ("if stride != 1 or in_channels != out_channels:",
                                    "if in_channels != out_channels:"))
    message = fails_with("BasicBlock", student, "by the stride alone", hidden=True)
    assert "Hint: with stride 2" in message, message


def test_gradient_norms_come_back_as_numpy():
    """Section 8 asks for a numpy array: a tensor of norms (torch.stack) breaks that rule; a list of floats is
    accepted (gradient_norms_loop above)."""
    student = mutate("block_gradient_norms", ("return np.array([g.norm().item() for g in grads])",
                                              "return torch.stack([g.norm() for g in grads])"))
    message = fails_with("block_gradient_norms", student, "breaks a rule of the exercise")
    assert "returns a numpy array" in message and "it returned a torch tensor" in message, message
