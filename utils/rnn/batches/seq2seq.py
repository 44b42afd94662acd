"""``Seq2Seq(src_vocab, tgt_vocab, emb_dim, hidden_size, pad_idx=0, bos_idx=1)``: an LSTM encoder–decoder.

Layers named ``src_embed`` (nn.Embedding), ``encoder`` (nn.LSTM, batch first), ``tgt_embed`` (nn.Embedding),
``decoder`` (nn.LSTM, batch first) and ``out`` (nn.Linear); methods ``encode(src, src_lengths) -> (h, c)``, the
encoder's final state (each (1, B, H)) read from the packed source; ``decode(tokens, state) -> (logits, state)``;
``forward(src, src_lengths, tgt) -> logits (B, T_tgt, tgt_vocab)`` with teacher forcing (the decoder starts from
the encoder's state and reads BOS followed by tgt[:, :-1]); ``loss(logits, tgt)``: the mean cross-entropy over
the real (non-pad) target tokens.

Each case builds the student's class, loads random weights into its five layers and compares, with the same
weights in nn.Embedding / nn.LSTM / nn.Linear built at check time: forward's logits, the logits of ``encode``
then ``decode`` fed one teacher-forced token at a time (the way greedy decoding uses them), and the loss of
random scores. Logits at padded target positions are not compared (they are set to 0 on both sides: nothing is
learned from them). Compared as one array (B, 2·T_tgt + 1, tgt_vocab): forward's logits, the step-by-step
logits, then the loss in [0, 2·T_tgt, 0].
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from utils.checks.adapters import float64_tensor
from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import RuleBroken, kept_unchanged, require_shape
from utils.checks.seeding import case_rng
from utils.rnn.batches.shared import lstm_state_dict, step_mask, torch_lstm
from utils.rnn.shared import array_or_value, scalar_or_value

# (source lengths, target lengths, src_vocab, tgt_vocab, emb_dim, hidden_size, pad_idx, bos_idx)
SETTINGS = [((3, 5, 2), (4, 2, 3), 7, 6, 3, 4, 0, 1), ((1, 4, 4, 2), (2, 5, 1, 3), 5, 8, 2, 3, 0, 1),
            ((6, 2), (3, 3), 9, 5, 4, 2, 3, 2)]
HIDDEN_SETTINGS = [((2, 7, 3, 5, 1), (6, 1, 4, 2, 3), 10, 9, 4, 5, 0, 1), ((4, 4, 4), (2, 4, 3), 6, 6, 3, 3, 1, 0),
                   ((5, 3), (5, 5), 8, 7, 2, 4, 0, 1)]
LAYERS = (("src_embed", torch.nn.Embedding), ("encoder", torch.nn.LSTM), ("tgt_embed", torch.nn.Embedding),
          ("decoder", torch.nn.LSTM), ("out", torch.nn.Linear))
RULE = "forward, encode, decode and loss do not change the model's weights or mode (Exercise 4)"


def _tokens(rng, lengths, vocab: int, pad: int, avoid: tuple[int, ...]) -> np.ndarray:
    """(B, max(lengths)) random tokens (never ``avoid``) padded with ``pad``."""
    allowed = np.array([v for v in range(vocab) if v not in avoid])
    tokens = rng.choice(allowed, size=(len(lengths), max(lengths)))
    tokens[~step_mask(lengths, max(lengths))] = pad
    return tokens


def _inputs(number: int, setting, salt: str) -> dict:
    src_lengths, tgt_lengths, V_src, V_tgt, E, H, pad, bos = setting
    rng = case_rng("Seq2Seq", number, salt)
    return {
        "sizes": (V_src, V_tgt, E, H), "pad_idx": pad, "bos_idx": bos,
        "src_embed": {"weight": rng.normal(0, 1.0, (V_src, E))},
        "encoder": lstm_state_dict(rng, E, H, 1, False),
        "tgt_embed": {"weight": rng.normal(0, 1.0, (V_tgt, E))},
        "decoder": lstm_state_dict(rng, E, H, 1, False),
        "out": {"weight": rng.normal(0, 0.8, (V_tgt, H)), "bias": rng.normal(0, 0.3, V_tgt)},
        "src": _tokens(rng, src_lengths, V_src, pad, (pad,)), "src_lengths": np.array(src_lengths),
        "tgt": _tokens(rng, tgt_lengths, V_tgt, pad, (pad, bos)),
        "scores": rng.normal(0, 1.5, (len(tgt_lengths), max(tgt_lengths), V_tgt)),
    }


def _describe_index_for(T: int):
    def describe(index):
        b, t, k = index
        if t == 2 * T:
            return "loss(scores, tgt)"
        if t >= T:
            return f"logits[b={b}, t={t - T}, k={k}] from encode, then decode one token at a time"
        return f"logits[b={b}, t={t}, k={k}] from forward"
    return describe


def _regions(T: int, B: int, V: int) -> dict:
    def rows(lo, hi):
        m = np.zeros((B, 2 * T + 1, V), dtype=bool)
        m[:, lo:hi] = True
        return m
    return {"the logits of forward": rows(0, T), "the logits of decode one step at a time": rows(T, 2 * T),
            "the loss": rows(2 * T, 2 * T + 1)}


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for number, (setting, salt) in enumerate(visible_then_hidden(SETTINGS, HIDDEN_SETTINGS, hidden), start=1):
        src_lengths, tgt_lengths, V_src, V_tgt, E, H, pad, bos = setting
        inputs = _inputs(number, setting, salt)
        cases.append(Case(f"Seq2Seq(src_vocab={V_src}, tgt_vocab={V_tgt}, emb_dim={E}, hidden_size={H}, "
                          f"pad_idx={pad}, bos_idx={bos}) with random weights; B={len(src_lengths)}, source lengths "
                          f"{list(src_lengths)}, target lengths {list(tgt_lengths)}", inputs,
                          _describe_index_for(max(tgt_lengths)),
                          regions=_regions(max(tgt_lengths), len(src_lengths), V_tgt)))
    return cases


def _state(weights: dict) -> dict:
    return {name: float64_tensor(value) for name, value in weights.items()}


def _decoder_input(tgt: torch.Tensor, bos: int) -> torch.Tensor:
    return torch.cat([torch.full_like(tgt[:, :1], bos), tgt[:, :-1]], dim=1)


def _layout(logits, stepwise, loss, tgt, pad: int) -> np.ndarray:
    """Both logits (B, T, V) with padded target positions set to 0, then the loss, as (B, 2T + 1, V)."""
    real = (np.asarray(tgt) != pad)[:, :, None]
    B, T, V = np.shape(logits)
    extra = np.zeros((B, 1, V))
    extra[0, 0, 0] = loss
    return np.concatenate([np.where(real, logits, 0.0), np.where(real, stepwise, 0.0), extra], axis=1)


def _call(cls, inputs):
    V_src, V_tgt, E, H = inputs["sizes"]
    pad, bos = inputs["pad_idx"], inputs["bos_idx"]
    with torch.random.fork_rng(devices=[]):
        model = cls(V_src, V_tgt, E, H, pad_idx=pad, bos_idx=bos)
    for name, kind in LAYERS:
        if not isinstance(getattr(model, name, None), kind):
            raise AttributeError(f"Seq2Seq needs self.{name} = nn.{kind.__name__}(...) (found "
                                 f"{type(getattr(model, name, None)).__name__})")
    model = model.double()
    for name, _ in LAYERS:
        getattr(model, name).load_state_dict(_state(inputs[name]))
    src, lengths, tgt = torch.tensor(inputs["src"]), torch.tensor(inputs["src_lengths"]), torch.tensor(inputs["tgt"])
    B, T = tgt.shape
    with kept_unchanged({"model": model}, rule=RULE), torch.no_grad():
        logits = model(src, lengths, tgt)
        require_shape(logits, (B, T, V_tgt), what="the logits of forward",
                      rule="forward returns logits of shape (B, T_tgt, tgt_vocab) (Exercise 4)")
        state = model.encode(src, lengths)
        steps = []
        dec_in = _decoder_input(tgt, bos)
        for t in range(T):
            step_logits, state = model.decode(dec_in[:, t:t + 1], state)
            require_shape(step_logits, (B, 1, V_tgt), what="the logits of decode for one token per example",
                          rule="decode(tokens (B, T), state) returns logits (B, T, tgt_vocab) and the new state "
                               "(Exercise 4)")
            steps.append(array_or_value(step_logits))
        loss = scalar_or_value(model.loss(float64_tensor(inputs["scores"]), tgt))
    logits = array_or_value(logits)
    for part in (logits, *steps, loss):
        if not isinstance(part, np.ndarray):
            return part
    if loss.shape != ():
        raise RuleBroken("loss(logits, tgt) returns a scalar, the mean over the real target tokens (Exercise 4)",
                         f"loss returned a value of shape {loss.shape}")
    return _layout(logits, np.concatenate(steps, axis=1), float(loss), inputs["tgt"], pad)


def _computed_with(*, unshifted=False, pad_first=False, encoder_reads_padding=False, sorted_states=False,
                   zero_state=False, zero_cell=False, stale_state=False, loss="mean over real tokens"):
    """The intended answer built from nn.Embedding, nn.LSTM and nn.Linear with the case's weights; the switches
    reproduce known mistakes."""
    def compute(inputs):
        V_src, V_tgt, E, H = inputs["sizes"]
        pad, bos = inputs["pad_idx"], inputs["bos_idx"]
        with torch.random.fork_rng(devices=[]):
            src_embed, tgt_embed = torch.nn.Embedding(V_src, E).double(), torch.nn.Embedding(V_tgt, E).double()
            out = torch.nn.Linear(H, V_tgt).double()
        for module, name in ((src_embed, "src_embed"), (tgt_embed, "tgt_embed"), (out, "out")):
            module.load_state_dict(_state(inputs[name]))
        encoder, decoder = torch_lstm(inputs["encoder"]), torch_lstm(inputs["decoder"])
        src, lengths, tgt = (torch.tensor(inputs[k]) for k in ("src", "src_lengths", "tgt"))
        with torch.no_grad():
            if encoder_reads_padding:
                _, state = encoder(src_embed(src))
            elif sorted_states:   # sorted for packing, the states left in sorted order
                order = torch.argsort(lengths, descending=True, stable=True)
                packed = torch.nn.utils.rnn.pack_padded_sequence(src_embed(src[order]), lengths[order],
                                                                 batch_first=True)
                _, state = encoder(packed)
            else:
                packed = torch.nn.utils.rnn.pack_padded_sequence(src_embed(src), lengths, batch_first=True,
                                                                 enforce_sorted=False)
                _, state = encoder(packed)
            if zero_cell:   # encode hands over h with a zero c
                state = (state[0], torch.zeros_like(state[1]))
            zeros = (torch.zeros_like(state[0]), torch.zeros_like(state[1]))
            dec_in = tgt if unshifted else _decoder_input(tgt, pad if pad_first else bos)
            hidden, _ = decoder(tgt_embed(dec_in), zeros if zero_state else state)
            logits = out(hidden)
            steps, start = [], state
            for t in range(tgt.shape[1]):   # encode, then decode one teacher-forced token at a time
                hidden, new = decoder(tgt_embed(_decoder_input(tgt, bos)[:, t:t + 1]), zeros if zero_state else start)
                steps.append(out(hidden))
                start = start if stale_state else new
            stepwise = torch.cat(steps, dim=1)
            scores, flat = float64_tensor(inputs["scores"]), tgt.reshape(-1)
            per_token = F.cross_entropy(scores.reshape(-1, V_tgt), flat, reduction="none")
            real = (flat != pad).double()
            value = {"mean over real tokens": (per_token * real).sum() / real.sum(),
                     "mean over all positions": per_token.mean(),
                     "masked, mean over all positions": (per_token * real).sum() / len(flat),
                     "sum over real tokens": (per_token * real).sum()}[loss]
        return _layout(logits.numpy(), stepwise.numpy(), float(value), inputs["tgt"], pad)
    return compute


torch_seq2seq = _computed_with()

_SHIFT = ("at step t the decoder may read the target only up to step t − 1: its input is BOS followed by the target "
          "without its last token.")
MISTAKES = [
    Mistake("the decoder is fed the target itself, not shifted right: at step t it reads the token it must predict",
            _SHIFT, _computed_with(unshifted=True)),
    Mistake("the decoder's first input is the padding token instead of BOS",
            "every target sequence starts with bos_idx as the decoder's first input; pad_idx marks only steps "
            "after a sequence's end.", _computed_with(pad_first=True)),
    Mistake("the encoder ran over the padding: its final state has read every padded source step",
            "pack the embedded source with its lengths (enforce_sorted=False) so that each sequence's final state "
            "is taken at its own last step.", _computed_with(encoder_reads_padding=True)),
    Mistake("the source was sorted by length for packing and the encoder's states were left in sorted order",
            "example b of the decoder must start from example b's encoder state: let pack_padded_sequence sort and "
            "restore the order (enforce_sorted=False).", _computed_with(sorted_states=True)),
    Mistake("the decoder starts from a zero state: the encoder's final state never reaches it",
            "the encoder's (h, c) is the decoder's initial state: it is all the decoder knows about the source; "
            "decode must start from the state it is given.", _computed_with(zero_state=True)),
    Mistake("the decoder starts from the encoder's h with a zero cell state c",
            "an LSTM's state is the pair (h, c): hand both to the decoder.", _computed_with(zero_cell=True)),
    Mistake("decode returns the state it was given instead of the decoder's new state, so greedy decoding "
            "restarts from the encoder's state at every token",
            "decode hands back the state the decoder LSTM returns: the next call continues from there.",
            _computed_with(stale_state=True)),
    Mistake("the loss counts the padded target positions",
            "padded positions are not tokens to predict: leave them out of the loss (cross_entropy's ignore_index).",
            _computed_with(loss="mean over all positions")),
    Mistake("the loss zeroes the padded positions but divides by all B·T positions instead of the real tokens",
            "the mean runs over the real target tokens only: divide by their number.",
            _computed_with(loss="masked, mean over all positions")),
    Mistake("the loss is the sum over the real tokens, not their mean",
            "average over the real target tokens, as cross_entropy does by default.",
            _computed_with(loss="sum over real tokens")),
]

SEQ2SEQ = Exercise(
    function="Seq2Seq",
    reference_name="nn.Embedding → nn.LSTM on the packed source → nn.Embedding → nn.LSTM from its state → "
                   "nn.Linear, with your weights, and cross_entropy(ignore_index=pad_idx)",
    make_cases=_cases,
    reference=torch_seq2seq,
    call=_call,
    mistakes=MISTAKES,
    hint="go through the picture above Exercise 4: what the encoder reads (packed), which state the decoder starts "
         "from, what the decoder reads at each step (teacher forcing), what decode returns, and which positions "
         "the loss averages over.",
    exception_hints={
        "AttributeError": "name the layers self.src_embed, self.encoder, self.tgt_embed, self.decoder and self.out; "
                          "call super().__init__() first.",
        "RuntimeError": "pack_padded_sequence wants lengths on the CPU and, with unsorted lengths, "
                        "enforce_sorted=False; the decoder's state is (h, c), each (1, B, hidden_size); "
                        "cross_entropy wants logits (N, V) and targets (N,).",
        "TypeError": "nn.LSTM returns a pair, the output sequence and the final states (h_n, c_n): unpack it; "
                     "encode returns the pair (h, c) and "
                     "decode returns (logits, state)."},
    section="Exercise 4",
    layout=Layout(axes=("example", "step", "token")),
    covers={
        "a batch of 2 or more": lambda c: len(c.inputs["src_lengths"]) >= 2,
        "source lengths not sorted": lambda c: list(c.inputs["src_lengths"]) != sorted(c.inputs["src_lengths"],
                                                                                      reverse=True),
        "a source of length 1": lambda c: min(c.inputs["src_lengths"]) == 1,
        "equal source lengths": lambda c: len(set(c.inputs["src_lengths"])) == 1,
        "ragged target lengths": lambda c: bool(np.any(c.inputs["tgt"] == c.inputs["pad_idx"])),
        "a target of length 1": lambda c: bool(np.any((c.inputs["tgt"] != c.inputs["pad_idx"]).sum(1) == 1)),
        "pad_idx ≠ 0 and bos_idx ≠ 1": lambda c: c.inputs["pad_idx"] != 0 and c.inputs["bos_idx"] != 1,
        "source and target vocabularies of different sizes": lambda c: c.inputs["sizes"][0] != c.inputs["sizes"][1],
        "emb_dim ≠ hidden_size": lambda c: c.inputs["sizes"][2] != c.inputs["sizes"][3],
    },
)


def check_Seq2Seq(Seq2Seq, hidden: bool = False) -> None:
    """Check the class ``Seq2Seq`` (its layers, encode, decode, forward and loss)."""
    show(run_check(SEQ2SEQ, Seq2Seq, hidden))
