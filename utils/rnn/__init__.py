"""Checks for the RNN assignment: a character-level RNN by hand, then LSTMs.

Exercises and the student's signatures (torch tensors in, torch tensors or numpy out):

* ``build_vocab(text) -> (chars, char2idx, idx2char)``: sorted unique characters and both mappings.
* ``make_sequences(text, char2idx) -> (inputs, targets)``: one-hot inputs (T−1, V) for ``text[:-1]``
  and target indices (T−1,) for ``text[1:]``.
* ``init_rnn_params(V, H) -> dict``: leaf tensors W_xh (H, V), W_hh (H, H), b_xh (H,), b_hh (H,),
  W_hy (V, H), b_y (V,), all with ``requires_grad``.
* ``rnn_forward(params, inputs, h0) -> (logits, h_T)``: inputs (T, V), h0 (H,), logits (T, V), h_T (H,).
* ``rnn_loss(logits, targets) -> scalar``: log-softmax over the vocabulary, then the mean NLL.
* ``rnn_gradients(params, inputs, targets, h0, forward, loss_fn) -> dict``: gradients with
  ``torch.autograd.grad``.
* ``perplexity(logits, targets) -> float``: exp of the mean NLL.
* ``lstm_cell(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh) -> (h, c)`` in torch's layout
  (gate blocks i, f, g, o), x (B, D), h and c (B, H).
* ``lstm_forward(x, layers, h0, c0, cell) -> (output, (h_n, c_n))``: a multi-layer LSTM over a batch,
  x (B, T, D), like ``torch.nn.LSTM(batch_first=True)``.
* ``LSTMModel(input_size, hidden_size, num_layers, output_size)``: nn.Module with ``self.lstm`` and
  ``self.fc``; forward (B, T, D) -> (B, output_size) from the last time step.
* ``gradient_norms(rnn, x) -> (T,)``: ‖∂L/∂x_t‖ with L the sum of the last time step's output.

References are real torch modules (``nn.RNN`` + ``nn.Linear``, ``nn.LSTMCell``, ``nn.LSTM``,
``F.cross_entropy``) loaded with the case's weights, in float64. The known mistakes are the same
computation done wrongly by the numpy functions below.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from utils.checks.exercise import Case, Exercise, run_check
from utils.checks.compare import Tolerance, to_numpy
from utils.checks.feedback import show
from utils.checks.diagnose import Mistake
from utils.checks.feedback import CheckResult  # noqa: F401  (re-exported type of the ✓ result)
from utils.checks.seeding import case_rng

PARAM_NAMES = ("W_xh", "W_hh", "b_xh", "b_hh", "W_hy", "b_y")

# --------------------------------------------------------------------------- small helpers


def _t(x, dtype=torch.float64) -> torch.Tensor:
    return torch.as_tensor(np.array(x), dtype=dtype)


def _arr(value):
    """A student's value as a float array, or the value itself when it is not array-like."""
    array = to_numpy(value)
    if array is None or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        return value
    return array.astype(np.float64)


def _stack(parts):
    """Equal-shaped parts stacked on a new first axis; otherwise the first odd part as it is."""
    arrays = [_arr(p) for p in parts]
    for raw, a in zip(parts, arrays):
        if not isinstance(a, np.ndarray):
            return raw
    for a in arrays[1:]:
        if a.shape != arrays[0].shape:
            return a
    return np.stack(arrays)


def _scalar(value):
    array = _arr(value)
    if isinstance(array, np.ndarray) and array.size == 1:
        return array.reshape(())
    return array


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _splits(T: int, n: int) -> list[tuple[int, int]]:
    """Split range(T) into at most ``n`` consecutive non-empty chunks."""
    n = max(1, min(n, T))
    edges = np.linspace(0, T, n + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


# --------------------------------------------------------------------------- exercise 1: vocabulary

_ALPHABET = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'-")


def _random_texts(exercise: str, count: int) -> list[str]:
    """Hidden texts drawn with case_rng: random letters, repeated so that some characters recur."""
    texts = []
    for number in range(count):
        rng = case_rng(exercise, number, "hidden text")
        pool = rng.choice(_ALPHABET, size=int(rng.integers(3, 15)), replace=False)
        texts.append("".join(rng.choice(pool, size=int(rng.integers(8, 30)))))
    return texts


def _vocab_cases(hidden: bool) -> list[Case]:
    texts = ["Deep Learning", "hello world", "abcabc cab!", "To be, or not to be: that is the question."]
    if hidden:
        texts += ["Hello World", "banana bandana"] + _random_texts("build_vocab", 2)
    cases = []
    for text in texts:
        def describe(index, text=text):
            i, col = index
            what = ("ord(chars[i])", "char2idx[chars[i]]", "ord(idx2char[i]), −1 if missing")[col]
            return f"vocabulary entry i={i}, column {col}: {what}"
        cases.append(Case(f"text {text!r}; each row i is (ord(chars[i]), char2idx[chars[i]], ord(idx2char[i]))",
                          {"text": text}, describe))
    return cases


def _vocab_rows(chars, char2idx, idx2char):
    return np.array([[ord(ch), char2idx[ch], ord(idx2char[i])] for i, ch in enumerate(chars)], dtype=np.float64)


def _vocab_call(fn, inputs):
    result = fn(inputs["text"])
    if not (isinstance(result, (tuple, list)) and len(result) == 3):
        return result
    chars, char2idx, idx2char = result

    def code(i):  # ord(idx2char[i]), or -1 where idx2char has no entry i
        try:
            return ord(idx2char[i])
        except (KeyError, IndexError):
            return -1
    rows = [[ord(ch), char2idx[ch], code(i)] for i, ch in enumerate(list(chars))]
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def _vocab_reference(inputs):
    # The standard pattern: chars = sorted(set(text)); both maps follow enumerate(chars).
    chars = sorted(set(inputs["text"]))
    return _vocab_rows(chars, {c: i for i, c in enumerate(chars)}, dict(enumerate(chars)))


def _vocab_variant(kind):
    def compute(inputs):
        text = inputs["text"]
        if kind == "unsorted":
            chars = list(dict.fromkeys(text))
        elif kind == "reverse":
            chars = sorted(set(text), reverse=True)
        elif kind == "duplicates":
            chars = sorted(text)
        else:
            chars = sorted(set(text))
        char2idx = {c: i for i, c in enumerate(chars)}
        if kind == "positions":
            char2idx = {c: i for i, c in enumerate(text)}
        if kind == "start_one":
            rows = _vocab_rows(chars, {c: i + 1 for i, c in enumerate(chars)}, dict(enumerate(chars)))
            rows[:, 2] = [-1] + [ord(c) for c in chars[:-1]]   # idx2char = {i + 1: c}: no entry 0
            return rows
        return _vocab_rows(chars, char2idx, dict(enumerate(chars)))
    return compute


VOCAB = Exercise(
    function="build_vocab",
    reference_name="chars = sorted(set(text)) with char2idx / idx2char from enumerate(chars)",
    make_cases=_vocab_cases,
    reference=_vocab_reference,
    call=_vocab_call,
    mistakes=[
        Mistake("vocabulary not sorted: the characters are in order of first appearance",
                "chars = sorted(set(text)): sorting makes the indices the same on every run and machine.",
                _vocab_variant("unsorted")),
        Mistake("vocabulary sorted in reverse order", "use sorted(set(text)) without reverse=True.",
                _vocab_variant("reverse")),
        Mistake("duplicates kept in the vocabulary: every character must appear once",
                "take set(text) before sorting.", _vocab_variant("duplicates")),
        Mistake("char2idx was built from the positions in the text, not from the vocabulary",
                "char2idx = {ch: i for i, ch in enumerate(chars)}.", _vocab_variant("positions")),
        Mistake("indices start at 1: the first character of the vocabulary must have index 0",
                "enumerate(chars) starts at 0; one-hot vectors have V entries, 0..V−1.",
                _vocab_variant("start_one")),
    ],
    tolerance=Tolerance(atol=1e-9, rtol=0.0),
    hint="chars = sorted(set(text)); char2idx = {ch: i for i, ch in enumerate(chars)}; "
         "idx2char = {i: ch for i, ch in enumerate(chars)}; return (chars, char2idx, idx2char).",
    exception_hints={"KeyError": "char2idx maps characters to indices and idx2char maps indices (0..V−1) to "
                                 "characters; check both are built from the sorted vocabulary."},
)

# --------------------------------------------------------------------------- exercise 2: sequences and one-hot


def _sequence_cases(hidden: bool) -> list[Case]:
    texts = ["abca", "Deep Learning", "hello world", "a stitch in time saves nine"]
    if hidden:
        texts += ["Hello World", "xy"] + _random_texts("make_sequences", 2)
    cases = []
    for text in texts:
        chars = sorted(set(text))
        V = len(chars)

        def describe(index, text=text, V=V):
            t, j = index
            if j < V:
                return f"inputs[{t}, {j}] (one-hot of input character {text[t]!r})"
            return f"targets[{t}] (should be the index of {text[t + 1]!r})"
        cases.append(Case(f"text {text!r} (V={V}); compared: inputs (T−1, V) with targets as an extra last column",
                          {"text": text, "char2idx": {c: i for i, c in enumerate(chars)}}, describe))
    return cases


def _sequence_call(fn, inputs):
    result = fn(inputs["text"], inputs["char2idx"])
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        return result
    x, y = _arr(result[0]), _arr(result[1])
    if not isinstance(x, np.ndarray):
        return result[0]
    if not isinstance(y, np.ndarray):
        return result[1]
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        return x if x.ndim != 2 else y
    return np.column_stack([x, y])


def _sequence_variant(kind="correct"):
    def compute(inputs):
        text, c2i = inputs["text"], inputs["char2idx"]
        V = len(c2i)
        src, dst = text[:-1], text[1:]
        if kind == "swapped":
            src, dst = text[1:], text[:-1]
        elif kind == "no_shift":
            src, dst = text[:-1], text[:-1]
        elif kind == "full":
            src, dst = text, text
        x = np.zeros((len(src), V))
        x[np.arange(len(src)), [c2i[c] for c in src]] = 1.0
        if kind == "index_plus_one":
            x = np.zeros((len(src), V))
            idx = np.array([c2i[c] for c in src]) + 1
            keep = idx < V
            x[np.arange(len(src))[keep], idx[keep]] = 1.0
        return np.column_stack([x, [c2i[c] for c in dst]])
    return compute


def _sequence_reference(inputs):
    # one-hot rows are rows of the identity: torch.nn.functional.one_hot
    text, c2i = inputs["text"], inputs["char2idx"]
    x = F.one_hot(torch.tensor([c2i[c] for c in text[:-1]]), len(c2i)).double()
    y = torch.tensor([c2i[c] for c in text[1:]], dtype=torch.float64)
    return torch.column_stack([x, y]).numpy()


SEQUENCES = Exercise(
    function="make_sequences",
    reference_name="one-hot(text[:-1]) and indices of text[1:] (torch.nn.functional.one_hot)",
    make_cases=_sequence_cases,
    reference=_sequence_reference,
    call=_sequence_call,
    mistakes=[
        Mistake("input and target sequences are swapped: inputs come from text[1:] and targets from text[:-1]",
                "the model reads character t and predicts character t+1: input = text[:-1], target = text[1:].",
                _sequence_variant("swapped")),
        Mistake("the target is not shifted: each target equals its own input character",
                "target = text[1:] is the input shifted left by one.", _sequence_variant("no_shift")),
        Mistake("the whole text is used for both inputs and targets (no shift, one step too many)",
                "input = text[:-1] (all but the last), target = text[1:] (all but the first).",
                _sequence_variant("full")),
        Mistake("the one-hot 1 is one place too far right (index + 1)",
                "vec[idx] = 1.0 with idx = char2idx[ch], which starts at 0.", _sequence_variant("index_plus_one")),
    ],
    tolerance=Tolerance(atol=1e-9, rtol=0.0),
    hint="inputs = torch.stack([one_hot(char2idx[ch], V) for ch in text[:-1]]); "
         "targets = torch.tensor([char2idx[ch] for ch in text[1:]], dtype=torch.long).",
)

# --------------------------------------------------------------------------- exercise 3: parameter shapes


def _init_cases(hidden: bool) -> list[Case]:
    sizes = [(10, 16), (4, 3), (27, 8)]
    if hidden:
        rng = case_rng("init_rnn_params", 0, "hidden sizes")
        sizes += [(8, 8)] + [tuple(int(v) for v in rng.integers(2, 70, size=2)) for _ in range(2)]
    rows = ["W_xh", "W_hh", "b_xh", "b_hh", "W_hy", "b_y"]
    cols = ["ndim", "shape[0]", "shape[1] (0 for vectors)", "requires_grad", "is_leaf"]

    def describe(index):
        return f"{rows[index[0]]}: {cols[index[1]]}"
    return [Case(f"V={V}, H={H}; each row is (ndim, shape[0], shape[1], requires_grad, is_leaf) of "
                 "W_xh, W_hh, b_xh, b_hh, W_hy, b_y", {"V": V, "H": H}, describe) for V, H in sizes]


def _param_rows(tensors):
    rows = []
    for p in tensors:
        shape = tuple(p.shape) + (0, 0)
        rows.append([p.dim(), shape[0], shape[1], float(p.requires_grad), float(p.is_leaf)])
    return np.array(rows, dtype=np.float64)


def _init_call(fn, inputs):
    with torch.random.fork_rng(devices=[]):
        params = fn(inputs["V"], inputs["H"])
    if not isinstance(params, dict):
        return params
    values = [params[name] for name in PARAM_NAMES]
    for v in values:
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"every parameter must be a torch.Tensor, got {type(v).__name__}")
    return _param_rows(values)


def _torch_rnn_modules(V, H, device=None):
    with torch.random.fork_rng(devices=[]):
        rnn = torch.nn.RNN(V, H, nonlinearity="tanh", device=device)
        head = torch.nn.Linear(H, V, device=device)
    return rnn, head


def _init_reference(inputs):
    rnn, head = _torch_rnn_modules(inputs["V"], inputs["H"], device="meta")
    return _param_rows([rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0,
                        head.weight, head.bias])


def _init_variant(transpose=(), requires_grad=True, leaf=True):
    def compute(inputs):
        rows = _init_reference(inputs)
        for name in transpose:
            i = PARAM_NAMES.index(name)
            rows[i, 1], rows[i, 2] = rows[i, 2], rows[i, 1]
        rows[:, 3] = float(requires_grad)
        rows[:, 4] = float(leaf)
        return rows
    return compute


INIT = Exercise(
    function="init_rnn_params",
    reference_name="the parameter shapes of torch.nn.RNN(V, H) + torch.nn.Linear(H, V)",
    make_cases=_init_cases,
    reference=_init_reference,
    call=_init_call,
    mistakes=[
        Mistake("transposed W_xh: it must be (H, V) so that W_xh @ x_t maps a one-hot (V,) to (H,)",
                "W_xh: (H, V), W_hh: (H, H), W_hy: (V, H): 'input-hidden-hidden'.", _init_variant(("W_xh",))),
        Mistake("transposed W_hy: it must be (V, H) so that W_hy @ h_t gives V logits",
                "W_hy: (V, H).", _init_variant(("W_hy",))),
        Mistake("transposed W_xh and W_hy", "W_xh: (H, V), W_hy: (V, H).", _init_variant(("W_xh", "W_hy"))),
        Mistake("the parameters are not leaf tensors: `torch.randn(..., requires_grad=True) * 0.1` is the result "
                "of a multiplication, so an optimizer refuses it and .grad stays None",
                "scale first, then ask for gradients: (torch.randn(H, V) * 0.1).requires_grad_().",
                _init_variant(leaf=False)),
        Mistake("requires_grad is missing: autograd cannot compute gradients for these tensors",
                "create each parameter with .requires_grad_() (or requires_grad=True on an unscaled tensor).",
                _init_variant(requires_grad=False)),
    ],
    tolerance=Tolerance(atol=1e-9, rtol=0.0),
    hint="W_xh (H, V), W_hh (H, H), b_xh (H,), b_hh (H,), W_hy (V, H), b_y (V,), each a leaf with requires_grad.",
    exception_hints={"KeyError": f"return a dict with the keys {', '.join(PARAM_NAMES)}."},
)

# --------------------------------------------------------------------------- exercise 4: RNN forward


def rnn_numpy(p, x, h0, *, transpose_hh=False, bias_xh=True, bias_hh=True,
              tanh_output=False, reset_h=False, ignore_h0=False, return_h0=False, relu=False):
    """The vanilla RNN over one sequence; keyword flags reproduce known mistakes."""
    W_xh = p["W_xh"]
    W_hh = p["W_hh"].T if transpose_hh else p["W_hh"]
    zeros = np.zeros_like(h0)
    h = zeros if ignore_h0 else h0
    logits = []
    for x_t in x:
        h_prev = zeros if reset_h else h
        a = W_xh @ x_t + W_hh @ h_prev
        a = a + (p["b_xh"] if bias_xh else 0) + (p["b_hh"] if bias_hh else 0)
        h = np.maximum(a, 0) if relu else np.tanh(a)
        s = p["W_hy"] @ h + p["b_y"]
        logits.append(np.tanh(s) if tanh_output else s)
    return np.array(logits), (h0 if return_h0 else h)


def _chunked_rnn(step, x, h0, splits):
    """Run ``step(x_chunk, h) -> (logits, h)`` chunk after chunk, carrying the returned state."""
    parts, h = [], h0
    for a, b in splits:
        logits, h = step(x[a:b], h)
        parts.append(logits)
    return parts


_RNN_SETTINGS = [  # (V, H, T, one-hot inputs, random h0)
    (3, 2, 4, True, True),
    (5, 4, 6, True, False),
    (4, 4, 5, False, True),
    (6, 3, 7, True, True),
]
_RNN_HIDDEN = [(8, 5, 10, True, True), (5, 5, 4, False, True), (7, 6, 9, False, False)]


def _rnn_inputs(exercise, number, setting, salt):
    V, H, T, one_hot, random_h0 = setting
    rng = case_rng(exercise, number, salt)
    p = {"W_xh": rng.normal(0, 0.6, (H, V)), "W_hh": rng.normal(0, 0.5, (H, H)),
         "b_xh": rng.normal(0, 0.4, H), "b_hh": rng.normal(0, 0.4, H),
         "W_hy": rng.normal(0, 0.6, (V, H)), "b_y": rng.normal(0, 0.3, V)}
    x = np.eye(V)[rng.integers(0, V, T)] if one_hot else rng.normal(size=(T, V))
    h0 = rng.normal(0, 0.5, H) if random_h0 else np.zeros(H)
    return {"params": p, "inputs": x, "h0": h0, "targets": rng.integers(0, V, T),
            "splits": _splits(T, 2)}


def _describe_rnn(setting):
    V, H, T, one_hot, random_h0 = setting
    return (f"V={V}, H={H}, T={T}, {'one-hot' if one_hot else 'dense random'} inputs, "
            f"{'random' if random_h0 else 'zero'} h0, random nonzero biases")


def _rnn_cases(exercise, hidden, describe_for):
    settings = [(s, "") for s in _RNN_SETTINGS] + ([(s, "hidden") for s in _RNN_HIDDEN] if hidden else [])
    cases = []
    for number, (s, salt) in enumerate(settings, start=1):
        inputs = _rnn_inputs(exercise, number, s, salt)
        description, describe = describe_for(s, inputs)
        cases.append(Case(description, inputs, describe))
    return cases


def _forward_description(setting, inputs):
    (a, b), *rest = inputs["splits"]
    if rest:
        how = (f"; the sequence is fed in two calls, steps {a}..{b - 1} from h0, then the rest from the "
               "h_T your first call returned; compared: all logits (T, V)")
    else:
        how = "; compared: logits (T, V)"

    def describe(index):
        t, v = index
        second = rest and t >= b
        return f"logits[t={t}, v={v}]" + (" (second call, started from your returned h_T)" if second else "")
    return _describe_rnn(setting) + how, describe


def _forward_tensors(inputs):
    params = {k: _t(v) for k, v in inputs["params"].items()}
    return params, _t(inputs["inputs"]), _t(inputs["h0"])


def _forward_call(fn, inputs):
    params, x, h0 = _forward_tensors(inputs)

    def step(x_chunk, h):
        result = fn(params, x_chunk, h)
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise TypeError(f"rnn_forward must return (logits, h_T), got {type(result).__name__}")
        logits, h_T = result
        if isinstance(logits, (list, tuple)) and logits and isinstance(logits[0], torch.Tensor):
            logits = torch.stack(list(logits))
        return _arr(logits), (h_T if isinstance(h_T, torch.Tensor) else _t(h_T))

    parts = _chunked_rnn(step, x, h0, inputs["splits"])
    for part in parts:
        if not isinstance(part, np.ndarray) or part.ndim != 2:
            return part
    return np.concatenate(parts)


def _loaded_torch_rnn(p: dict):
    """torch.nn.RNN (tanh) + torch.nn.Linear in float64, holding the weights ``p`` of a case."""
    H, V = p["W_xh"].shape
    rnn, head = _torch_rnn_modules(V, H)
    rnn, head = rnn.double(), head.double()
    with torch.no_grad():
        for name, value in (("weight_ih_l0", p["W_xh"]), ("weight_hh_l0", p["W_hh"]),
                            ("bias_ih_l0", p["b_xh"]), ("bias_hh_l0", p["b_hh"])):
            getattr(rnn, name).copy_(_t(value))
        head.weight.copy_(_t(p["W_hy"]))
        head.bias.copy_(_t(p["b_y"]))
    return rnn, head


def torch_rnn_logits(inputs) -> np.ndarray:
    """Logits of torch.nn.RNN (tanh) + torch.nn.Linear loaded with the case's weights, float64."""
    rnn, head = _loaded_torch_rnn(inputs["params"])
    with torch.no_grad():
        out, _ = rnn(_t(inputs["inputs"])[:, None, :], _t(inputs["h0"])[None, None, :])
        return head(out[:, 0]).numpy()


def _forward_variant(**kw):
    def compute(inputs):
        def step(x_chunk, h):
            return rnn_numpy(inputs["params"], x_chunk, h, **kw)
        return np.concatenate(_chunked_rnn(step, inputs["inputs"], inputs["h0"], inputs["splits"]))
    return compute


_FORWARD_MISTAKES = [
    (dict(transpose_hh=True), "W_hh is transposed: `h @ W_hh` computes W_hhᵀ h_{t−1}",
     "write W_hh @ h (matrix times column vector), not h @ W_hh."),
    (dict(bias_xh=False), "a missing bias: b_xh is not added to the hidden pre-activation",
     "both biases enter the hidden state: W_xh x_t + b_xh + W_hh h_{t−1} + b_hh."),
    (dict(bias_hh=False), "a missing bias: b_hh is not added to the hidden pre-activation",
     "both biases enter the hidden state: W_xh x_t + b_xh + W_hh h_{t−1} + b_hh."),
    (dict(bias_xh=False, bias_hh=False), "a missing bias: neither b_xh nor b_hh is added",
     "h_t = tanh(W_xh x_t + b_xh + W_hh h_{t−1} + b_hh)."),
    (dict(tanh_output=True), "tanh on the output: the logits s_t must be linear",
     "s_t = W_hy @ h_t + b_y, no activation: log-softmax in the loss turns the logits into probabilities."),
    (dict(reset_h=True), "h reset inside the loop: every step starts from zeros instead of h_{t−1}",
     "initialise h = h0 once, before the loop; inside the loop only update h = tanh(...)."),
    (dict(ignore_h0=True), "h0 is ignored: the first step starts from zeros instead of the h0 argument",
     "start with h = h0; the check feeds the sequence in two calls and passes your returned h_T as h0."),
    (dict(return_h0=True), "the returned h_T is the initial state h0, not the state after the last step",
     "return the h of the last loop iteration: it carries the sequence into the next call."),
    (dict(relu=True), "ReLU instead of tanh for the hidden state", "h_t = torch.tanh(...)."),
]

FORWARD = Exercise(
    function="rnn_forward",
    forbidden=("torch.nn.RNN", "torch.nn.RNNCell", "torch.rnn_tanh", "torch.rnn_tanh_cell"),
    reference_name="torch.nn.RNN(V, H) + torch.nn.Linear(H, V) loaded with your weights",
    make_cases=lambda hidden: _rnn_cases("rnn_forward", hidden, _forward_description),
    reference=torch_rnn_logits,
    call=_forward_call,
    mistakes=[Mistake(name, hint, _forward_variant(**kw)) for kw, name, hint in _FORWARD_MISTAKES],
    hint="h = h0; for each x_t: h = tanh(W_xh @ x_t + b_xh + W_hh @ h + b_hh); s_t = W_hy @ h + b_y; "
         "return (torch.stack(logits), h).",
    exception_hints={"RuntimeError": "a shape or dtype mismatch: W_xh is (H, V), W_hh (H, H), W_hy (V, H); "
                                     "x_t = inputs[t] is (V,); new tensors should use dtype=inputs.dtype."},
)

# --------------------------------------------------------------------------- exercise 5: loss


def _loss_cases(hidden: bool) -> list[Case]:
    settings = [(3, 4, "zeros"), (5, 6, "random"), (7, 7, "random"), (4, 10, "large")]
    if hidden:
        settings += [(12, 5, "random"), (1, 3, "random")]
    cases = []
    for number, (T, V, kind) in enumerate(settings, start=1):
        rng = case_rng("rnn_loss", number)
        logits = {"zeros": np.zeros((T, V)), "random": rng.normal(0, 1.5, (T, V)),
                  "large": rng.normal(0, 20, (T, V))}[kind]
        what = {"zeros": "all-zero logits (the loss is log V by hand)", "random": "random logits",
                "large": "large logits (std 20: exp() of them would overflow in float32)"}[kind]
        cases.append(Case(f"T={T}, V={V}, {what}", {"logits": logits, "targets": rng.integers(0, V, T)}))
    return cases


def _loss_reference(inputs):
    return F.cross_entropy(_t(inputs["logits"]), torch.as_tensor(inputs["targets"])).numpy()


def _loss_variant(kind):
    def compute(inputs):
        z, y = inputs["logits"], np.asarray(inputs["targets"])
        dim = 0 if kind == "dim0" else 1
        logp = z - z.max(axis=dim, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(axis=dim, keepdims=True))
        if kind == "no_log_softmax":
            logp = z
        if kind == "softmax_no_log":
            logp = np.exp(logp)
        picked = -logp[np.arange(len(y)), y]
        return picked.sum() if kind == "sum" else picked.mean()
    return compute


LOSS = Exercise(
    function="rnn_loss",
    reference_name="torch.nn.functional.cross_entropy",
    make_cases=_loss_cases,
    reference=_loss_reference,
    call=lambda fn, inputs: _scalar(fn(_t(inputs["logits"]), torch.as_tensor(inputs["targets"]))),
    mistakes=[
        Mistake("softmax over the wrong dimension: the log-softmax normalises over time steps (dim=0) "
                "instead of over the vocabulary",
                "logits are (T, V): F.log_softmax(logits, dim=1) makes each row a distribution over characters.",
                _loss_variant("dim0")),
        Mistake("the NLL is summed over time steps instead of averaged",
                "F.nll_loss averages by default; the course's loss is the mean over the T steps.",
                _loss_variant("sum")),
        Mistake("log-softmax is missing: F.nll_loss was applied to raw logits",
                "nll_loss expects log-probabilities: F.nll_loss(F.log_softmax(logits, dim=1), targets).",
                _loss_variant("no_log_softmax")),
        Mistake("softmax instead of log-softmax before the NLL",
                "use F.log_softmax (probabilities are not log-probabilities).", _loss_variant("softmax_no_log")),
    ],
    hint="loss = F.nll_loss(F.log_softmax(logits, dim=1), targets), a scalar (the mean over time steps).",
)

# --------------------------------------------------------------------------- exercise 6: explicit gradients


def torch_rnn_forward(params, inputs, h0):
    """A correct RNN forward pass in torch; passed to the student's ``rnn_gradients`` as ``forward``."""
    h, logits = h0, []
    for x_t in inputs:
        h = torch.tanh(params["W_xh"] @ x_t + params["b_xh"] + params["W_hh"] @ h + params["b_hh"])
        logits.append(params["W_hy"] @ h + params["b_y"])
    return torch.stack(logits), h


def torch_rnn_loss(logits, targets):
    """The mean NLL of the log-softmax; passed to ``rnn_gradients`` as ``loss_fn``."""
    return F.nll_loss(F.log_softmax(logits, dim=1), targets)


def _grad_description(setting, inputs):
    p = inputs["params"]
    pieces = [(name, p[name].shape) for name in PARAM_NAMES]

    def describe(index):
        i = index[0]
        for name, shape in pieces:
            size = int(np.prod(shape))
            if i < size:
                where = np.unravel_index(i, shape)
                return f"grads[{name!r}][{', '.join(str(int(w)) for w in where)}]"
            i -= size
        return f"index {index[0]}"
    return (_describe_rnn(setting) + "; compared: the six gradients flattened in the order "
            + ", ".join(PARAM_NAMES)), describe


def _grad_call(fn, inputs):
    params = {k: _t(v).requires_grad_() for k, v in inputs["params"].items()}
    grads = fn(params, _t(inputs["inputs"]), torch.as_tensor(inputs["targets"]), _t(inputs["h0"]),
               forward=torch_rnn_forward, loss_fn=torch_rnn_loss)
    if not isinstance(grads, dict):
        return grads
    parts = []
    for name in PARAM_NAMES:
        g = _arr(grads[name])
        if not isinstance(g, np.ndarray):
            return grads[name]
        parts.append(g.ravel())
    return np.concatenate(parts)


def torch_rnn_gradients(inputs) -> np.ndarray:
    """Gradients of F.cross_entropy through torch.nn.RNN + nn.Linear, flattened in PARAM_NAMES order."""
    rnn, head = _loaded_torch_rnn(inputs["params"])
    out, _ = rnn(_t(inputs["inputs"])[:, None, :], _t(inputs["h0"])[None, None, :])
    loss = F.cross_entropy(head(out[:, 0]), torch.as_tensor(inputs["targets"]))
    loss.backward()
    order = [rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0, head.weight, head.bias]
    return np.concatenate([q.grad.numpy().ravel() for q in order])


def _grad_variant(kind):
    def compute(inputs):
        g = torch_rnn_gradients(inputs)
        if kind == "double":
            return 2 * g
        if kind == "negative":
            return -g
        if kind == "sum":
            return g * len(inputs["targets"])
        raise ValueError(kind)
    return compute


GRADIENTS = Exercise(
    function="rnn_gradients",
    reference_name="loss.backward() through torch.nn.RNN + nn.Linear + F.cross_entropy",
    make_cases=lambda hidden: _rnn_cases("rnn_gradients", hidden, _grad_description),
    reference=torch_rnn_gradients,
    call=_grad_call,
    mistakes=[
        Mistake("the gradients are doubled: .grad accumulated over two backward passes",
                "use torch.autograd.grad(loss, p, retain_graph=True)[0]: it returns the gradient "
                "without adding it to p.grad.", _grad_variant("double")),
        Mistake("the gradients have the wrong sign (you returned the update −lr·grad direction)",
                "return ∂loss/∂p itself; the optimizer subtracts it.", _grad_variant("negative")),
        Mistake("the gradients are T times too large: the loss was summed over time steps",
                "use loss_fn(logits, targets) as given (it averages over time).", _grad_variant("sum")),
    ],
    hint="logits, _ = forward(params, inputs, h0); loss = loss_fn(logits, targets); for each name: "
         "grads[name] = torch.autograd.grad(loss, params[name], retain_graph=True)[0].",
    exception_hints={"RuntimeError": "'Trying to backward through the graph a second time': each "
                                     "torch.autograd.grad call frees the graph unless retain_graph=True.",
                     "KeyError": f"return a dict with the keys {', '.join(PARAM_NAMES)}."},
)

# --------------------------------------------------------------------------- exercise 7: perplexity


def _perplexity_cases(hidden: bool) -> list[Case]:
    cases = _loss_cases(hidden)
    cases[0].description = cases[0].description.replace("the loss is log V by hand", "the perplexity is V by hand")
    return cases


def _perplexity_variant(kind):
    loss = _loss_variant("mean")
    loss_sum = _loss_variant("sum")

    def compute(inputs):
        if kind == "no_exp":
            return loss(inputs)
        if kind == "exp_sum":
            return np.exp(loss_sum(inputs))
        if kind == "base2":
            return 2.0 ** loss(inputs)
        raise ValueError(kind)
    return compute


PERPLEXITY = Exercise(
    function="perplexity",
    reference_name="torch.exp(torch.nn.functional.cross_entropy(logits, targets))",
    make_cases=_perplexity_cases,
    reference=lambda inputs: np.exp(_loss_reference(inputs)),
    call=lambda fn, inputs: _scalar(fn(_t(inputs["logits"]), torch.as_tensor(inputs["targets"]))),
    mistakes=[
        Mistake("the exponential is missing: you returned the mean NLL itself",
                "perplexity = exp(mean NLL).", _perplexity_variant("no_exp")),
        Mistake("exp of the summed NLL: perplexity uses the mean over time steps",
                "exp(F.cross_entropy(logits, targets)) (mean reduction).", _perplexity_variant("exp_sum")),
        Mistake("base 2 with a natural-log loss: 2 ** loss",
                "the NLL uses natural logarithms, so exponentiate with e: torch.exp(loss).",
                _perplexity_variant("base2")),
    ],
    hint="perplexity = exp(mean over t of −log p(target_t)); a uniform guess over V characters gives V.",
)

# --------------------------------------------------------------------------- exercise 8: LSTM cell


def lstm_cell_numpy(x, h, c, W_ih, W_hh, b_ih, b_hh, *, order="ifgo", candidate_sigmoid=False,
                    tanh_c=True, forget=True, bias_hh=True):
    """One LSTM step in torch's layout; ``order`` names the gate held by each of the 4 row blocks."""
    z = x @ W_ih.T + b_ih + h @ W_hh.T + (b_hh if bias_hh else 0)
    blocks = dict(zip(order, np.split(z, 4, axis=-1)))
    i, f, o = _sigmoid(blocks["i"]), _sigmoid(blocks["f"]), _sigmoid(blocks["o"])
    g = _sigmoid(blocks["g"]) if candidate_sigmoid else np.tanh(blocks["g"])
    c_new = (f * c if forget else 0) + i * g
    h_new = o * (np.tanh(c_new) if tanh_c else c_new)
    return h_new, c_new


_CELL_SETTINGS = [(1, 2, 3), (3, 4, 5), (2, 5, 3), (4, 3, 6)]   # (B, D, H)
_CELL_HIDDEN = [(5, 6, 4), (2, 1, 7)]


def _cell_weights(rng, D, H, scale=0.7):
    return {"W_ih": rng.normal(0, scale, (4 * H, D)), "W_hh": rng.normal(0, scale, (4 * H, H)),
            "b_ih": rng.normal(0, 0.5, 4 * H), "b_hh": rng.normal(0, 0.5, 4 * H)}


def _cell_cases(hidden: bool) -> list[Case]:
    settings = [(s, "") for s in _CELL_SETTINGS] + ([(s, "hidden") for s in _CELL_HIDDEN] if hidden else [])
    cases = []
    for number, ((B, D, H), salt) in enumerate(settings, start=1):
        rng = case_rng("lstm_cell", number, salt)
        inputs = {"x": rng.normal(size=(B, D)), "h": rng.normal(0, 0.7, (B, H)),
                  "c": rng.normal(0, 1.0, (B, H)), **_cell_weights(rng, D, H)}

        def describe(index):
            which, b, j = index
            return f"{'hc'[which]}[b={b}, j={j}]"
        cases.append(Case(f"B={B}, D={D}, H={H}, random x, h_prev, c_prev, weights and biases; "
                          "compared: (h, c) stacked", inputs, describe))
    return cases


def _cell_call(fn, inputs):
    return _stack(fn(_t(inputs["x"]), _t(inputs["h"]), _t(inputs["c"]), _t(inputs["W_ih"]),
                     _t(inputs["W_hh"]), _t(inputs["b_ih"]), _t(inputs["b_hh"])))


def torch_lstm_cell(inputs) -> np.ndarray:
    """torch.nn.LSTMCell with the case's weights: (h, c) stacked, float64."""
    D, H = inputs["x"].shape[1], inputs["h"].shape[1]
    with torch.random.fork_rng(devices=[]):
        cell = torch.nn.LSTMCell(D, H).double()
    with torch.no_grad():
        for name in ("W_ih", "W_hh", "b_ih", "b_hh"):
            getattr(cell, {"W_ih": "weight_ih", "W_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}[name]
                    ).copy_(_t(inputs[name]))
        h, c = cell(_t(inputs["x"]), (_t(inputs["h"]), _t(inputs["c"])))
    return np.stack([h.numpy(), c.numpy()])


def _cell_variant(**kw):
    def compute(inputs):
        return np.stack(lstm_cell_numpy(inputs["x"], inputs["h"], inputs["c"], inputs["W_ih"], inputs["W_hh"],
                                        inputs["b_ih"], inputs["b_hh"], **kw))
    return compute


_ORDER_HINT = ("torch stacks the four gate blocks as i, f, g, o (input, forget, candidate, output): "
               "i, f, g, o = gates.chunk(4, dim=-1).")

CELL = Exercise(
    function="lstm_cell",
    forbidden=("torch.nn.LSTMCell", "torch.nn.LSTM", "torch.lstm_cell", "torch.lstm"),
    reference_name="torch.nn.LSTMCell with your weights",
    make_cases=_cell_cases,
    reference=torch_lstm_cell,
    call=_cell_call,
    mistakes=[
        Mistake("LSTM gates in the wrong order: you read the blocks as f, i, g, o", _ORDER_HINT,
                _cell_variant(order="figo")),
        Mistake("LSTM gates in the wrong order: you read the blocks as i, f, o, g", _ORDER_HINT,
                _cell_variant(order="ifog")),
        Mistake("LSTM gates in the wrong order: you read the blocks as i, o, f, g", _ORDER_HINT,
                _cell_variant(order="iofg")),
        Mistake("sigmoid on the candidate g: it must be tanh (values in (−1, 1))",
                "i, f, o use sigmoid; g = tanh(...).", _cell_variant(candidate_sigmoid=True)),
        Mistake("tanh is missing in the hidden-state update: h = o ⊙ c",
                "h_t = o_t ⊙ tanh(c_t).", _cell_variant(tanh_c=False)),
        Mistake("cell state not carried: c_t = i ⊙ g drops f ⊙ c_{t−1}",
                "c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t.", _cell_variant(forget=False)),
        Mistake("a missing bias: b_hh is not added to the gate pre-activations",
                "gates = x @ W_ihᵀ + b_ih + h @ W_hhᵀ + b_hh.", _cell_variant(bias_hh=False)),
    ],
    hint="gates = x @ W_ih.T + b_ih + h_prev @ W_hh.T + b_hh; i, f, g, o = gates.chunk(4, dim=-1); "
         "c = σ(f)·c_prev + σ(i)·tanh(g); h = σ(o)·tanh(c).",
    exception_hints={"RuntimeError": "shapes: x (B, D), h_prev and c_prev (B, H), W_ih (4H, D), W_hh (4H, H); "
                                     "multiply x @ W_ih.T."},
)

# --------------------------------------------------------------------------- exercise 9: multi-layer LSTM


def torch_lstm_cell_fn(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
    """A correct LSTM cell in torch; passed to the student's ``lstm_forward`` as ``cell``."""
    i, f, g, o = (x @ W_ih.T + b_ih + h_prev @ W_hh.T + b_hh).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def lstm_numpy(x, layers, h0, c0, *, carry_c=True, reset_h=False, layers_read_x=False, shared_state=False):
    """A multi-layer LSTM over a batch (B, T, D); returns (output, h_n, c_n)."""
    B, T, _ = x.shape
    seq = x
    h_n, c_n = [], []
    for l, (W_ih, W_hh, b_ih, b_hh) in enumerate(layers):
        start = 0 if shared_state else l
        h, c = h0[start], c0[start]
        outs = []
        source = x if layers_read_x else seq
        for t in range(T):
            h_prev = np.zeros_like(h) if reset_h else h
            h, c_new = lstm_cell_numpy(source[:, t], h_prev, c, W_ih, W_hh, b_ih, b_hh)
            if carry_c:   # the mistake keeps c = c0[l]: `h, _ = cell(...)`
                c = c_new
            outs.append(h)
        seq = np.stack(outs, axis=1)
        h_n.append(h)
        c_n.append(c)
    return seq, np.stack(h_n), np.stack(c_n)


_LSTM_SETTINGS = [(1, 3, 2, 2, 1), (2, 5, 3, 3, 2), (3, 6, 2, 4, 2), (2, 7, 2, 3, 3)]   # (B, T, D, H, L)
_LSTM_HIDDEN = [(4, 8, 5, 5, 3), (3, 4, 1, 6, 2)]


def _lstm_inputs(exercise, number, setting, salt):
    B, T, D, H, L = setting
    rng = case_rng(exercise, number, salt)
    layers = [_cell_weights(rng, D if l == 0 else H, H, 0.6) for l in range(L)]
    return {"x": rng.normal(size=(B, T, D)), "layers": layers,
            "h0": rng.normal(0, 0.6, (L, B, H)), "c0": rng.normal(0, 1.0, (L, B, H)), "splits": _splits(T, 3)}


def _lstm_forward_cases(hidden: bool) -> list[Case]:
    settings = [(s, "") for s in _LSTM_SETTINGS] + ([(s, "hidden") for s in _LSTM_HIDDEN] if hidden else [])
    cases = []
    for number, (s, salt) in enumerate(settings, start=1):
        B, T, D, H, L = s
        inputs = _lstm_inputs("lstm_forward", number, s, salt)
        chunks = ", ".join(f"{a}..{b - 1}" for a, b in inputs["splits"])

        def describe(index, splits=inputs["splits"]):
            b, t, j = index
            call = next(k for k, (lo, hi) in enumerate(splits) if lo <= t < hi) + 1
            return f"output[b={b}, t={t}, j={j}] (call {call}" + (", started from the (h_n, c_n) of your "
                                                                   "previous call)" if call > 1 else ")")
        cases.append(Case(f"B={B}, T={T}, D={D}, H={H}, num_layers={L}, random h0 and c0; the sequence is fed "
                          f"in calls over time steps {chunks}, each starting from the (h_n, c_n) your previous "
                          "call returned; compared: output (B, T, H)", inputs, describe))
    return cases


def _lstm_forward_call(fn, inputs):
    layers = [tuple(_t(w[k]) for k in ("W_ih", "W_hh", "b_ih", "b_hh")) for w in inputs["layers"]]
    x, h, c = _t(inputs["x"]), _t(inputs["h0"]), _t(inputs["c0"])
    parts = []
    for a, b in inputs["splits"]:
        result = fn(x[:, a:b], layers, h, c, cell=torch_lstm_cell_fn)
        if not (isinstance(result, (tuple, list)) and len(result) == 2 and isinstance(result[1], (tuple, list))):
            raise TypeError("lstm_forward must return (output, (h_n, c_n)) like torch.nn.LSTM")
        out, (h, c) = result
        out = _arr(out)
        if not isinstance(out, np.ndarray) or out.ndim != 3:
            return out
        parts.append(out)
    return np.concatenate(parts, axis=1)


def torch_lstm(inputs) -> np.ndarray:
    """torch.nn.LSTM(batch_first=True) with the case's weights: the output (B, T, H), float64."""
    x, layers = inputs["x"], inputs["layers"]
    D, H, L = x.shape[2], inputs["h0"].shape[2], len(layers)
    with torch.random.fork_rng(devices=[]):
        lstm = torch.nn.LSTM(D, H, num_layers=L, batch_first=True).double()
    with torch.no_grad():
        for l, w in enumerate(layers):
            for mine, theirs in (("W_ih", "weight_ih"), ("W_hh", "weight_hh"), ("b_ih", "bias_ih"),
                                 ("b_hh", "bias_hh")):
                getattr(lstm, f"{theirs}_l{l}").copy_(_t(w[mine]))
        out, _ = lstm(_t(x), (_t(inputs["h0"]), _t(inputs["c0"])))
    return out.numpy()


def _lstm_variant(**kw):
    def compute(inputs):
        layers = [tuple(w[k] for k in ("W_ih", "W_hh", "b_ih", "b_hh")) for w in inputs["layers"]]
        h, c, parts = inputs["h0"], inputs["c0"], []
        for a, b in inputs["splits"]:
            out, h, c = lstm_numpy(inputs["x"][:, a:b], layers, h, c, **kw)
            parts.append(out)
        return np.concatenate(parts, axis=1)
    return compute


LSTM_FORWARD = Exercise(
    function="lstm_forward",
    forbidden=("torch.nn.LSTMCell", "torch.nn.LSTM", "torch.lstm_cell", "torch.lstm"),
    reference_name="torch.nn.LSTM(D, H, num_layers, batch_first=True) with your weights",
    make_cases=_lstm_forward_cases,
    reference=torch_lstm,
    call=_lstm_forward_call,
    mistakes=[
        Mistake("cell state not carried between steps: every step starts from the initial c0 "
                "(e.g. `h, _ = cell(...)` throws the new c away)",
                "keep both states: h, c = cell(x_t, h, c, ...) and feed the new c into the next step.",
                _lstm_variant(carry_c=False)),
        Mistake("h reset inside the loop: every step starts from h = 0 instead of h_{t−1}",
                "set h, c = h0[l], c0[l] once per layer, before the time loop.", _lstm_variant(reset_h=True)),
        Mistake("every layer reads the input x: layer l > 0 must read the outputs of layer l − 1",
                "after each layer, replace the sequence by the stacked h_t of that layer.",
                _lstm_variant(layers_read_x=True)),
        Mistake("every layer starts from layer 0's initial state: layer l must start from h0[l], c0[l]",
                "h0 and c0 are (num_layers, B, H): index them with the layer number.",
                _lstm_variant(shared_state=True)),
    ],
    hint="for each layer l: h, c = h0[l], c0[l]; for t: h, c = cell(seq[:, t], h, c, *layers[l]); "
         "seq = stack of h over t (dim=1); h_n, c_n stack the last h, c of each layer.",
    exception_hints={"RuntimeError": "shapes: x (B, T, D), h0 and c0 (num_layers, B, H); layer 0's W_ih is "
                                     "(4H, D), later layers' (4H, H); return h_n and c_n for all layers."},
)

# --------------------------------------------------------------------------- exercise 10: LSTMModel


_MODEL_SETTINGS = [(1, 4, 1, 1, 3, 5), (2, 5, 2, 1, 4, 6), (3, 6, 2, 2, 5, 3), (1, 3, 3, 1, 2, 4)]
_MODEL_HIDDEN = [(4, 7, 2, 3, 3, 8), (2, 2, 1, 2, 6, 2)]   # (input, hidden, layers, output, B, T)


def _model_cases(hidden: bool) -> list[Case]:
    settings = [(s, "") for s in _MODEL_SETTINGS] + ([(s, "hidden") for s in _MODEL_HIDDEN] if hidden else [])
    cases = []
    for number, ((D, H, L, O, B, T), salt) in enumerate(settings, start=1):
        rng = case_rng("LSTMModel", number, salt)
        lstm = {}
        for l in range(L):
            w = _cell_weights(rng, D if l == 0 else H, H, 0.6)
            lstm.update({f"weight_ih_l{l}": w["W_ih"], f"weight_hh_l{l}": w["W_hh"],
                         f"bias_ih_l{l}": w["b_ih"], f"bias_hh_l{l}": w["b_hh"]})
        fc = {"weight": rng.normal(0, 0.7, (O, H)), "bias": rng.normal(0, 0.3, O)}
        inputs = {"sizes": (D, H, L, O), "lstm": lstm, "fc": fc, "x": rng.normal(size=(B, T, D))}
        cases.append(Case(f"LSTMModel(input_size={D}, hidden_size={H}, num_layers={L}, output_size={O}) "
                          f"with random weights loaded into self.lstm and self.fc; x of shape (B={B}, T={T}, D={D})",
                          inputs, lambda index: f"prediction[b={index[0]}, k={index[1]}]"))
    return cases


def _model_call(cls, inputs):
    with torch.random.fork_rng(devices=[]):
        model = cls(*inputs["sizes"])
    for name, kind in (("lstm", torch.nn.LSTM), ("fc", torch.nn.Linear)):
        if not isinstance(getattr(model, name, None), kind):
            raise AttributeError(f"LSTMModel needs self.{name} = nn.{kind.__name__}(...) (found "
                                 f"{type(getattr(model, name, None)).__name__})")
    model = model.double()
    model.lstm.load_state_dict({k: _t(v) for k, v in inputs["lstm"].items()})
    model.fc.load_state_dict({k: _t(v) for k, v in inputs["fc"].items()})
    model.eval()
    with torch.no_grad():
        return _arr(model(_t(inputs["x"])))


def _model_variant(kind):
    def compute(inputs):
        D, H, L, O = inputs["sizes"]
        with torch.random.fork_rng(devices=[]):
            lstm = torch.nn.LSTM(D, H, num_layers=L, batch_first=(kind != "time_major")).double()
            fc = torch.nn.Linear(H, O).double()
        lstm.load_state_dict({k: _t(v) for k, v in inputs["lstm"].items()})
        fc.load_state_dict({k: _t(v) for k, v in inputs["fc"].items()})
        with torch.no_grad():
            out, (h_n, _) = lstm(_t(inputs["x"]))
            last = {"correct": lambda: out[:, -1], "time_major": lambda: out[:, -1], "first": lambda: out[:, 0],
                    "mean": lambda: out.mean(dim=1), "h_first_layer": lambda: h_n[0]}[kind]()
            return fc(last).numpy()
    return compute


MODEL = Exercise(
    function="LSTMModel",
    reference_name="nn.LSTM(batch_first=True) → output[:, -1, :] → nn.Linear, with your layers' weights",
    make_cases=_model_cases,
    reference=_model_variant("correct"),
    call=_model_call,
    mistakes=[
        Mistake("batch_first is missing: nn.LSTM read x (B, T, D) as (T, B, D), mixing the batch with time",
                "nn.LSTM(input_size, hidden_size, num_layers, batch_first=True).", _model_variant("time_major")),
        Mistake("the prediction uses the first time step output[:, 0, :] instead of the last",
                "the last time step has seen the whole window: output[:, -1, :].", _model_variant("first")),
        Mistake("the prediction uses the mean over time instead of the last time step",
                "use output[:, -1, :].", _model_variant("mean")),
        Mistake("the prediction uses h_n[0], the FIRST layer's final state; the top layer is h_n[-1]",
                "h_n is (num_layers, B, H): h_n[-1] equals output[:, -1, :].", _model_variant("h_first_layer")),
    ],
    hint="self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True); "
         "self.fc = nn.Linear(hidden_size, output_size); forward: out, (h_n, c_n) = self.lstm(x); "
         "return self.fc(out[:, -1, :]).",
    exception_hints={
        "TypeError": "nn.LSTM returns a tuple (output, (h_n, c_n)): unpack it before the Linear layer; this is "
                     "also why an LSTM cannot sit inside nn.Sequential.",
        "AttributeError": "name the layers self.lstm (nn.LSTM) and self.fc (nn.Linear); call super().__init__() first.",
        "RuntimeError": "check the sizes: nn.LSTM(input_size, hidden_size, num_layers, batch_first=True) and "
                        "nn.Linear(hidden_size, output_size)."},
)

# --------------------------------------------------------------------------- exercise 11: gradient norms


_NORM_SETTINGS = [("RNN", 1, 2, 4), ("RNN", 2, 3, 8), ("LSTM", 2, 3, 6), ("LSTM", 3, 4, 10)]   # (kind, D, H, T)
_NORM_HIDDEN = [("RNN", 3, 5, 12), ("LSTM", 1, 6, 15)]


def _norm_cases(hidden: bool) -> list[Case]:
    settings = [(s, "") for s in _NORM_SETTINGS] + ([(s, "hidden") for s in _NORM_HIDDEN] if hidden else [])
    cases = []
    for number, ((kind, D, H, T), salt) in enumerate(settings, start=1):
        rng = case_rng("gradient_norms", number, salt)
        gates = 4 if kind == "LSTM" else 1
        weights = {"weight_ih_l0": rng.normal(0, 0.7, (gates * H, D)),
                   "weight_hh_l0": rng.normal(0, 0.9 / np.sqrt(H), (gates * H, H)),
                   "bias_ih_l0": rng.normal(0, 0.3, gates * H), "bias_hh_l0": rng.normal(0, 0.3, gates * H)}
        cases.append(Case(f"nn.{kind}(input_size={D}, hidden_size={H}, batch_first=True) with random weights, "
                          f"x of shape (1, T={T}, D={D})",
                          {"kind": kind, "weights": weights, "x": rng.normal(size=(1, T, D))},
                          lambda index: f"norm for time step t={index[0]}"))
    return cases


def _norm_module(inputs):
    kind, w = inputs["kind"], inputs["weights"]
    H, D = w["weight_hh_l0"].shape[1], w["weight_ih_l0"].shape[1]
    with torch.random.fork_rng(devices=[]):
        module = getattr(torch.nn, kind)(D, H, batch_first=True).double()
    module.load_state_dict({k: _t(v) for k, v in w.items()})
    return module


def _norm_call(fn, inputs):
    return _arr(fn(_norm_module(inputs), _t(inputs["x"])))


def _norm_variant(kind):
    def compute(inputs):
        module = _norm_module(inputs)
        x = _t(inputs["x"]).requires_grad_()
        out = module(x)[0]
        objective = out.sum() if kind == "all_steps" else out[:, -1].sum()
        (g,) = torch.autograd.grad(objective, x)
        norms = g[0].norm(dim=-1)
        if kind == "squared":
            norms = norms ** 2
        if kind == "reversed":
            norms = norms.flip(0)
        return norms.detach().numpy()
    return compute


def _norm_reference(inputs):
    # the Jacobian of the last output w.r.t. the whole input, summed over the output units
    module = _norm_module(inputs)
    J = torch.autograd.functional.jacobian(lambda x: module(x)[0][0, -1], _t(inputs["x"]))   # (H, 1, T, D)
    return J.sum(dim=0)[0].norm(dim=-1).numpy()


NORMS = Exercise(
    function="gradient_norms",
    reference_name="the Jacobian of output[:, -1].sum() w.r.t. x (torch.autograd.functional.jacobian)",
    make_cases=_norm_cases,
    reference=_norm_reference,
    call=_norm_call,
    mistakes=[
        Mistake("the objective sums the outputs of ALL time steps, not only the last one",
                "L = output[:, -1, :].sum(): we ask how much the last step still depends on x_t.",
                _norm_variant("all_steps")),
        Mistake("squared norms: return ‖∂L/∂x_t‖, not its square", "use .norm(dim=-1).", _norm_variant("squared")),
        Mistake("the norms are in reverse time order: entry t must belong to x_t",
                "index the gradient as grad[0, t] for t = 0..T−1.", _norm_variant("reversed")),
    ],
    hint="x = x.clone().requires_grad_(); out = rnn(x)[0]; L = out[:, -1].sum(); "
         "g = torch.autograd.grad(L, x)[0]; return g[0].norm(dim=-1) (shape (T,)).",
)

EXERCISES = {e.function: e for e in (VOCAB, SEQUENCES, INIT, FORWARD, LOSS, GRADIENTS, PERPLEXITY, CELL,
                                     LSTM_FORWARD, MODEL, NORMS)}

# --------------------------------------------------------------------------- the checks


def check_build_vocab(build_vocab, hidden: bool = False) -> None:
    """Check ``build_vocab(text) -> (chars, char2idx, idx2char)``."""
    show(run_check(VOCAB, build_vocab, hidden))


def check_make_sequences(make_sequences, hidden: bool = False) -> None:
    """Check ``make_sequences(text, char2idx) -> (one-hot inputs, target indices)``."""
    show(run_check(SEQUENCES, make_sequences, hidden))


def check_init_rnn_params(init_rnn_params, hidden: bool = False) -> None:
    """Check the shapes and autograd flags of ``init_rnn_params(V, H)``."""
    show(run_check(INIT, init_rnn_params, hidden))


def check_rnn_forward(rnn_forward, hidden: bool = False) -> None:
    """Check ``rnn_forward(params, inputs, h0)`` against torch.nn.RNN + nn.Linear with the same weights."""
    show(run_check(FORWARD, rnn_forward, hidden))


def check_rnn_loss(rnn_loss, hidden: bool = False) -> None:
    """Check ``rnn_loss(logits, targets)`` against F.cross_entropy."""
    show(run_check(LOSS, rnn_loss, hidden))


def check_rnn_gradients(rnn_gradients, hidden: bool = False) -> None:
    """Check ``rnn_gradients(params, inputs, targets, h0, forward=..., loss_fn=...)`` against loss.backward()."""
    show(run_check(GRADIENTS, rnn_gradients, hidden))


def check_perplexity(perplexity, hidden: bool = False) -> None:
    """Check ``perplexity(logits, targets)`` against exp(F.cross_entropy)."""
    show(run_check(PERPLEXITY, perplexity, hidden))


def check_lstm_cell(lstm_cell, hidden: bool = False) -> None:
    """Check ``lstm_cell(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh)`` against torch.nn.LSTMCell."""
    show(run_check(CELL, lstm_cell, hidden))


def check_lstm_forward(lstm_forward, hidden: bool = False) -> None:
    """Check ``lstm_forward(x, layers, h0, c0, cell=...)`` against torch.nn.LSTM(batch_first=True)."""
    show(run_check(LSTM_FORWARD, lstm_forward, hidden))


def check_LSTMModel(LSTMModel, hidden: bool = False) -> None:  # noqa: N802, N803 - the student's class name
    """Check the class ``LSTMModel`` (its self.lstm / self.fc and its forward)."""
    show(run_check(MODEL, LSTMModel, hidden))


def check_gradient_norms(gradient_norms, hidden: bool = False) -> None:
    """Check ``gradient_norms(rnn, x)`` against the Jacobian of the last output."""
    show(run_check(NORMS, gradient_norms, hidden))
