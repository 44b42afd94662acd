"""``LSTMModel(input_size, hidden_size, num_layers, output_size)``: an nn.Module with ``self.lstm`` and
``self.fc``; forward (B, T, D) -> (B, output_size) from the last time step.

Each case builds the student's class, loads random weights into its two layers and compares its
prediction with the same weights run the intended way, in eval mode and in train mode (the two predictions
stacked, named "eval mode" and "train mode": a dropout the exercise does not ask for shows in train mode only).
"""
from __future__ import annotations

import numpy as np
import torch

from utils.checks.adapters import float64_tensor
from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.seeding import case_rng
from utils.rnn.shared import lstm_weights, stacked

SETTINGS = [(1, 4, 1, 1, 3, 5), (2, 5, 2, 1, 4, 6), (3, 6, 2, 2, 5, 3), (1, 3, 3, 1, 2, 4)]
HIDDEN_SETTINGS = [(4, 7, 2, 3, 3, 8), (2, 2, 1, 2, 6, 2), (3, 4, 3, 2, 4, 4)]   # (input, hidden, layers, output, B, T)
MODES = ("eval mode", "train mode")


def _describe_index(index):
    return f"prediction[b={index[1]}, k={index[2]}] in {MODES[index[0]]}"


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for number, ((D, H, L, n_out, B, T), salt) in enumerate(visible_then_hidden(SETTINGS, HIDDEN_SETTINGS, hidden),
                                                         start=1):
        rng = case_rng("LSTMModel", number, salt)
        lstm = {}
        for layer in range(L):
            w = lstm_weights(rng, D if layer == 0 else H, H, 0.6)
            lstm.update({f"weight_ih_l{layer}": w["W_ih"], f"weight_hh_l{layer}": w["W_hh"],
                         f"bias_ih_l{layer}": w["b_ih"], f"bias_hh_l{layer}": w["b_hh"]})
        fc = {"weight": rng.normal(0, 0.7, (n_out, H)), "bias": rng.normal(0, 0.3, n_out)}
        inputs = {"sizes": (D, H, L, n_out), "lstm": lstm, "fc": fc, "x": rng.normal(size=(B, T, D))}
        cases.append(Case(f"LSTMModel(input_size={D}, hidden_size={H}, num_layers={L}, output_size={n_out}) "
                          f"with random weights loaded into self.lstm and self.fc; x of shape (B={B}, T={T}, D={D}); "
                          "run in eval mode and in train mode",
                          inputs, _describe_index))
    return cases


def _float64_state(weights: dict) -> dict:
    return {name: float64_tensor(value) for name, value in weights.items()}


def _call(cls, inputs):
    with torch.random.fork_rng(devices=[]):
        model = cls(*inputs["sizes"])
    for name, kind in (("lstm", torch.nn.LSTM), ("fc", torch.nn.Linear)):
        if not isinstance(getattr(model, name, None), kind):
            raise AttributeError(f"LSTMModel needs self.{name} = nn.{kind.__name__}(...) (found "
                                 f"{type(getattr(model, name, None)).__name__})")
    model = model.double()
    model.lstm.load_state_dict(_float64_state(inputs["lstm"]))
    model.fc.load_state_dict(_float64_state(inputs["fc"]))
    predictions = []
    for train in (False, True):
        model.train(train)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            predictions.append(model(float64_tensor(inputs["x"])))
    return stacked(predictions)


def _predicted_from(kind):
    """The prediction with the case's weights, read from the ``kind`` of LSTM output ("last" is intended)."""
    def compute(inputs):
        D, H, L, n_out = inputs["sizes"]
        with torch.random.fork_rng(devices=[]):
            lstm = torch.nn.LSTM(D, H, num_layers=L, batch_first=(kind != "time_major")).double()
            fc = torch.nn.Linear(H, n_out).double()
        lstm.load_state_dict(_float64_state(inputs["lstm"]))
        fc.load_state_dict(_float64_state(inputs["fc"]))
        with torch.no_grad():
            out, (h_n, c_n) = lstm(float64_tensor(inputs["x"]))
            if kind == "first":
                features = out[:, 0]
            elif kind == "mean":
                features = out.mean(dim=1)
            elif kind == "h_first_layer":
                features = h_n[0]
            elif kind == "cell_state":
                features = c_n[-1]
            else:   # "last", and "time_major", which reads the last step of the wrongly laid out output
                features = out[:, -1]
            prediction = fc(features).numpy()
            return np.stack([prediction, prediction])   # eval mode, train mode: no dropout, the same
    return compute


MISTAKES = [
    Mistake("batch_first is missing: nn.LSTM read x (B, T, D) as (T, B, D), mixing the batch with time",
            "x is (B, T, input_size): tell nn.LSTM that the batch comes first (Exercise 2.3 asks for it).",
            _predicted_from("time_major")),
    Mistake("the prediction uses the first time step of the output instead of the last",
            "the last time step is the one that has seen the whole window.", _predicted_from("first")),
    Mistake("the prediction uses the mean over time instead of the last time step",
            "read the output at the last time step only: it has seen the whole window.", _predicted_from("mean")),
    Mistake("the prediction uses h_n[0], the FIRST layer's final state; the top layer is the last one",
            "with several layers h_n is (num_layers, B, H) and only the top layer's final state equals the output "
            "at the last step.", _predicted_from("h_first_layer")),
    Mistake("the prediction uses the cell state c_n instead of the hidden state",
            "the head reads the hidden state (what nn.LSTM outputs), not the cell state.",
            _predicted_from("cell_state")),
]

MODEL = Exercise(
    function="LSTMModel",
    reference_name="nn.LSTM (batch first) → its output at the last time step → nn.Linear, with your layers' weights",
    make_cases=_cases,
    reference=_predicted_from("last"),
    call=_call,
    mistakes=MISTAKES,
    hint="Exercise 2.3 asks for exactly two layers, self.lstm (batch first, nothing else added) and self.fc; "
         "forward unpacks what self.lstm returns and feeds the top layer's output at the last time step to self.fc.",
    exception_hints={
        "TypeError": "nn.LSTM returns a tuple, the output sequence and the pair of final states: unpack it "
                     "before the Linear layer; this is "
                     "also why an LSTM cannot sit inside nn.Sequential.",
        "AttributeError": "name the layers self.lstm (nn.LSTM) and self.fc (nn.Linear); call super().__init__() first.",
        "RuntimeError": "check the sizes: self.lstm maps input_size to hidden_size with num_layers layers, self.fc "
                        "maps hidden_size to output_size."},
    section="Exercise 2.3",
    layout=Layout(axes=("example", "output"), parts=MODES),
    covers={
        "a single layer": lambda c: c.inputs["sizes"][2] == 1,
        "2 or more layers": lambda c: c.inputs["sizes"][2] >= 2,
        "3 layers": lambda c: c.inputs["sizes"][2] >= 3,
        "a batch of 2 or more": lambda c: c.inputs["x"].shape[0] >= 2,
        "a batch as long as the sequence (B = T)": lambda c: c.inputs["x"].shape[0] == c.inputs["x"].shape[1],
        "output_size of 2 or more": lambda c: c.inputs["sizes"][3] >= 2,
        "input_size of 2 or more": lambda c: c.inputs["sizes"][0] >= 2,
        "train mode and eval mode": lambda c: True,
    },
)


def check_LSTMModel(LSTMModel, hidden: bool = False) -> None:
    """Check the class ``LSTMModel`` (its self.lstm / self.fc and its forward)."""
    show(run_check(MODEL, LSTMModel, hidden))
