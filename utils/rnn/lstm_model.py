"""``LSTMModel(input_size, hidden_size, num_layers, output_size)``: an nn.Module with ``self.lstm`` and
``self.fc``; forward (B, T, D) -> (B, output_size) from the last time step.

Each case builds the student's class, loads random weights into its two layers and compares its
prediction with the same weights run the intended way.
"""
from __future__ import annotations

import torch

from utils.checks.adapters import float64_tensor
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.seeding import case_rng
from utils.rnn.shared import array_or_value, lstm_weights

SETTINGS = [(1, 4, 1, 1, 3, 5), (2, 5, 2, 1, 4, 6), (3, 6, 2, 2, 5, 3), (1, 3, 3, 1, 2, 4)]
HIDDEN_SETTINGS = [(4, 7, 2, 3, 3, 8), (2, 2, 1, 2, 6, 2)]   # (input, hidden, layers, output, B, T)


def _describe_index(index):
    return f"prediction[b={index[0]}, k={index[1]}]"


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
                          f"with random weights loaded into self.lstm and self.fc; x of shape (B={B}, T={T}, D={D})",
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
    model.eval()
    with torch.no_grad():
        return array_or_value(model(float64_tensor(inputs["x"])))


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
            out, (h_n, _) = lstm(float64_tensor(inputs["x"]))
            if kind == "first":
                features = out[:, 0]
            elif kind == "mean":
                features = out.mean(dim=1)
            elif kind == "h_first_layer":
                features = h_n[0]
            else:   # "last", and "time_major", which reads the last step of the wrongly laid out output
                features = out[:, -1]
            return fc(features).numpy()
    return compute


MISTAKES = [
    Mistake("batch_first is missing: nn.LSTM read x (B, T, D) as (T, B, D), mixing the batch with time",
            "nn.LSTM(input_size, hidden_size, num_layers, batch_first=True).", _predicted_from("time_major")),
    Mistake("the prediction uses the first time step output[:, 0, :] instead of the last",
            "the last time step has seen the whole window: output[:, -1, :].", _predicted_from("first")),
    Mistake("the prediction uses the mean over time instead of the last time step",
            "use output[:, -1, :].", _predicted_from("mean")),
    Mistake("the prediction uses h_n[0], the FIRST layer's final state; the top layer is h_n[-1]",
            "h_n is (num_layers, B, H): h_n[-1] equals output[:, -1, :].", _predicted_from("h_first_layer")),
]

MODEL = Exercise(
    function="LSTMModel",
    reference_name="nn.LSTM(batch_first=True) → output[:, -1, :] → nn.Linear, with your layers' weights",
    make_cases=_cases,
    reference=_predicted_from("last"),
    call=_call,
    mistakes=MISTAKES,
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


def check_LSTMModel(LSTMModel, hidden: bool = False) -> None:
    """Check the class ``LSTMModel`` (its self.lstm / self.fc and its forward)."""
    show(run_check(MODEL, LSTMModel, hidden))
