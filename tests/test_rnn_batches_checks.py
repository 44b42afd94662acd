"""Tests for the checks in utils/rnn/batches/ (notebook rnn_batches): correct variants pass (loops, vectorised,
float32, other valid formulations); realistic mistakes, written as a student would, are rejected with their
catalogued names; the rules the notebook states are enforced with their own messages; odd returns get clear
messages; a mistake outside the catalogue is described; the sample mistakes apply."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from check_failures import fails_with, mistake_name
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence

from notebook_solutions import NotebookSolutions
from utils.checks.feedback import NotImplementedYet
from utils.instructor.samples.rnn_batches import MISTAKES as SAMPLES
from utils.rnn import batches as RB

NOTEBOOK = Path(__file__).resolve().parents[1] / "source" / "rnn" / "rnn_batches.ipynb"
CHECKS = {name: getattr(RB, f"check_{name}") for name in RB.EXERCISES}
NB = NotebookSolutions(NOTEBOOK, imports=True)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sol():
    return NB.run()


def _mistake_name(function: str, keyword: str) -> str:
    return mistake_name(RB.EXERCISES, function, keyword)


def _fails_with(function: str, student, text: str, hidden: bool = False) -> str:
    return fails_with(CHECKS[function], student, text, hidden=hidden)


def _named(function: str, student, keyword: str) -> str:
    return _fails_with(function, student, "Likely cause: " + _mistake_name(function, keyword))


# --------------------------------------------------------------------------- (a) the solution and correct variants

def test_the_solutions_pass(sol, capsys):
    for name in CHECKS:
        CHECKS[name](sol[name], hidden=True)
    assert capsys.readouterr().out.count("✓") == len(CHECKS)


def test_pad_batch_variants_pass():
    def with_pad_sequence(sequences, pad_value=0):
        lengths = torch.tensor([len(s) for s in sequences])
        padded = pad_sequence(sequences, batch_first=True, padding_value=pad_value)
        return padded, lengths, torch.arange(padded.shape[1]) < lengths[:, None]

    def numpy_float32(sequences, pad_value=0):
        arrays = [s.numpy() for s in sequences]
        T = max(len(a) for a in arrays)
        dtype = arrays[0].dtype if arrays[0].dtype.kind in "iu" else np.float32
        padded = np.full((len(arrays), T, *arrays[0].shape[1:]), pad_value, dtype=dtype)
        mask = np.zeros((len(arrays), T), dtype=bool)
        for b, a in enumerate(arrays):
            padded[b, :len(a)], mask[b, :len(a)] = a, True
        return padded, np.array([len(a) for a in arrays]), mask

    RB.check_pad_batch(with_pad_sequence, hidden=True)
    RB.check_pad_batch(numpy_float32, hidden=True)


def test_packed_last_hidden_variants_pass():
    def sorted_by_hand(lstm, padded, lengths):
        order = torch.argsort(lengths, descending=True)
        packed = pack_padded_sequence(padded[order], lengths[order], batch_first=True)
        _, (h_n, _) = lstm(packed)
        dirs = 2 if lstm.bidirectional else 1
        top = h_n.view(lstm.num_layers, dirs, len(lengths), lstm.hidden_size)[-1]     # (dirs, B, H)
        result = top.permute(1, 0, 2).reshape(len(lengths), -1)
        return result[torch.argsort(order)]

    def from_the_outputs(lstm, padded, lengths):   # forward half at the last real step, backward half at step 0
        packed = pack_padded_sequence(padded.float(), lengths, batch_first=True, enforce_sorted=False)
        output, _ = pad_packed_sequence(copy.deepcopy(lstm).float()(packed)[0], batch_first=True)
        H = lstm.hidden_size
        last = output[torch.arange(len(lengths)), lengths - 1, :H]
        return torch.cat([last, output[:, 0, H:]], dim=1) if lstm.bidirectional else last

    RB.check_packed_last_hidden(sorted_by_hand, hidden=True)
    RB.check_packed_last_hidden(from_the_outputs, hidden=True)


def _per_sequence_bidirectional(x, lengths, params_forward, params_backward, cell, dtype=None):
    """Each sequence on its own, cut to its length, the backward direction on the flipped sequence."""
    if dtype is not None:
        x = x.to(dtype)
        params_forward = tuple(p.to(dtype) for p in params_forward)
        params_backward = tuple(p.to(dtype) for p in params_backward)
    B, T, _ = x.shape
    H = params_forward[1].shape[1]
    output = torch.zeros(B, T, 2 * H, dtype=x.dtype)
    h_n, c_n = torch.zeros(2, B, H, dtype=x.dtype), torch.zeros(2, B, H, dtype=x.dtype)
    for b in range(B):
        n = int(lengths[b])
        for direction, params in enumerate((params_forward, params_backward)):
            seq = x[b:b + 1, :n] if direction == 0 else x[b:b + 1, :n].flip(1)
            h = c = torch.zeros(1, H, dtype=x.dtype)
            states = []
            for t in range(n):
                h, c = cell(seq[:, t], h, c, *params)
                states.append(h[0])
            states = torch.stack(states) if direction == 0 else torch.stack(states).flip(0)
            output[b, :n, direction * H:(direction + 1) * H] = states
            h_n[direction, b], c_n[direction, b] = h[0], c[0]
    return output, (h_n, c_n)


def test_bidirectional_lstm_variants_pass():
    RB.check_bidirectional_lstm(_per_sequence_bidirectional, hidden=True)
    RB.check_bidirectional_lstm(lambda *a, cell: _per_sequence_bidirectional(*a, cell, dtype=torch.float32),
                                hidden=True)


class _PackedDecoder(nn.Module):
    """Another valid Seq2Seq: sorts the source by hand, packs the decoder's input too, and a hand-written loss."""

    def __init__(self, src_vocab, tgt_vocab, emb_dim, hidden_size, pad_idx=0, bos_idx=1):
        super().__init__()
        self.pad_idx, self.bos_idx = pad_idx, bos_idx
        self.src_embed = nn.Embedding(src_vocab, emb_dim)
        self.encoder = nn.LSTM(emb_dim, hidden_size, batch_first=True)
        self.tgt_embed = nn.Embedding(tgt_vocab, emb_dim)
        self.decoder = nn.LSTM(emb_dim, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, tgt_vocab)

    def encode(self, src, src_lengths):
        order = torch.argsort(src_lengths, descending=True)
        packed = pack_padded_sequence(self.src_embed(src[order]), src_lengths[order], batch_first=True)
        _, (h, c) = self.encoder(packed)
        back = torch.argsort(order)
        return h[:, back], c[:, back]

    def decode(self, tokens, state):
        hidden, state = self.decoder(self.tgt_embed(tokens), state)
        return self.out(hidden), state

    def forward(self, src, src_lengths, tgt):
        decoder_input = F.pad(tgt[:, :-1], (1, 0), value=self.bos_idx)
        lengths = (tgt != self.pad_idx).sum(dim=1)
        packed = pack_padded_sequence(self.tgt_embed(decoder_input), lengths, batch_first=True, enforce_sorted=False)
        hidden, _ = self.decoder(packed, self.encode(src, src_lengths))
        hidden, _ = pad_packed_sequence(hidden, batch_first=True, total_length=tgt.shape[1])
        return self.out(hidden)

    def loss(self, logits, tgt):
        log_probs = logits.log_softmax(dim=-1).gather(2, tgt.clamp(min=0)[..., None])[..., 0]
        mask = (tgt != self.pad_idx).to(logits.dtype)
        return -(log_probs * mask).sum() / mask.sum()


def test_seq2seq_variants_pass():
    RB.check_Seq2Seq(_PackedDecoder, hidden=True)


# --------------------------------------------------------------------------- (b) realistic mistakes are named

def test_pad_batch_mistakes_are_named(sol):
    def left_padded(sequences, pad_value=0):
        padded, lengths, mask = sol["pad_batch"](sequences, pad_value)
        flipped = pad_sequence([s.flip(0) for s in sequences], batch_first=True, padding_value=pad_value).flip(1)
        return flipped, lengths, mask.flip(1)

    def key_padding_mask(sequences, pad_value=0):
        padded, lengths, mask = sol["pad_batch"](sequences, pad_value)
        return padded, lengths, ~mask

    def mask_from_values(sequences, pad_value=0):   # the study guide's `sequence != pad_token`
        padded, _, _ = sol["pad_batch"](sequences, pad_value)
        mask = padded != pad_value
        mask = mask.reshape(*mask.shape[:2], -1).any(dim=2)
        return padded, mask.sum(dim=1), mask

    _named("pad_batch", left_padded, "front")
    _named("pad_batch", key_padding_mask, "inverted")
    _named("pad_batch", mask_from_values, "comparing values")


def test_packed_last_hidden_mistakes_are_named():
    def last_column(lstm, padded, lengths):
        return lstm(padded)[0][:, -1]

    def sorted_not_restored(lstm, padded, lengths):
        order = torch.argsort(lengths, descending=True)
        _, (h_n, _) = lstm(pack_padded_sequence(padded[order], lengths[order], batch_first=True))
        return torch.cat([h_n[-2], h_n[-1]], 1) if lstm.bidirectional else h_n[-1]

    def first_layer(lstm, padded, lengths):
        _, (h_n, _) = lstm(pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=False))
        return torch.cat([h_n[0], h_n[1]], 1) if lstm.bidirectional else h_n[0]

    def viewed(lstm, padded, lengths):
        _, (h_n, _) = lstm(pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=False))
        dirs = 2 if lstm.bidirectional else 1
        return h_n[-dirs:].reshape(len(lengths), -1)

    _named("packed_last_hidden", last_column, "output[:, −1]")
    _named("packed_last_hidden", sorted_not_restored, "sorted order")
    _named("packed_last_hidden", first_layer, "first layer")
    _named("packed_last_hidden", viewed, "reshaped")


def test_forgetting_enforce_sorted_raises_with_a_hint():
    def default_packing(lstm, padded, lengths):
        _, (h_n, _) = lstm(pack_padded_sequence(padded, lengths, batch_first=True))
        return h_n[-1]

    message = _fails_with("packed_last_hidden", default_packing, "raised RuntimeError")
    assert "enforce_sorted=False" in message


def test_bidirectional_lstm_mistakes_are_named(sol):
    def flipped_whole_batch(x, lengths, params_forward, params_backward, cell):   # the study guide's x[:, ::-1]
        output, (h_n, c_n) = sol["bidirectional_lstm"](x, lengths, params_forward, params_backward, cell)
        B, T, _ = x.shape
        H = params_backward[1].shape[1]
        h = c = x.new_zeros(B, H)
        real = torch.arange(T)[None, :] < lengths[:, None]
        backward = x.new_zeros(B, T, H)
        for t in range(T - 1, -1, -1):
            h, c = cell(x[:, t], h, c, *params_backward)
            backward[:, t] = torch.where(real[:, t:t + 1], h, 0.0)
        output = torch.cat([output[..., :H], backward], dim=2)
        return output, (torch.stack([h_n[0], h]), torch.stack([c_n[0], c]))

    def padded_outputs_kept(x, lengths, params_forward, params_backward, cell):
        B, T, _ = x.shape
        real = torch.arange(T)[None, :] < lengths[:, None]
        halves, hs, cs = [], [], []
        for params, steps in ((params_forward, range(T)), (params_backward, range(T - 1, -1, -1))):
            H = params[1].shape[1]
            h = c = x.new_zeros(B, H)
            out = x.new_zeros(B, T, H)
            for t in steps:
                h_new, c_new = cell(x[:, t], h, c, *params)
                h, c = torch.where(real[:, t:t + 1], h_new, h), torch.where(real[:, t:t + 1], c_new, c)
                out[:, t] = h
            halves.append(out)
            hs.append(h)
            cs.append(c)
        return torch.cat(halves, 2), (torch.stack(hs), torch.stack(cs))

    _named("bidirectional_lstm", flipped_whole_batch, "backward direction starts at T_max")
    _named("bidirectional_lstm", padded_outputs_kept, "not zero")


def test_seq2seq_mistakes_are_named(sol):
    Good = sol["Seq2Seq"]

    class PaddingCounted(Good):
        def loss(self, logits, tgt):
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))

    class ZeroStart(Good):
        def decode(self, tokens, state):
            hidden, state = self.decoder(self.tgt_embed(tokens))
            return self.out(hidden), state

    class MaskedMean(Good):
        def loss(self, logits, tgt):
            per_token = F.cross_entropy(logits.transpose(1, 2), tgt, reduction="none")
            return (per_token * (tgt != self.pad_idx)).mean()

    _named("Seq2Seq", PaddingCounted, "counts the padded")
    _named("Seq2Seq", ZeroStart, "zero state")
    _named("Seq2Seq", MaskedMean, "divides by all")


# --------------------------------------------------------------------------- (c) rules the notebook states

def test_pad_batch_rules(sol):
    def time_first(sequences, pad_value=0):
        padded, lengths, mask = sol["pad_batch"](sequences, pad_value)
        return padded.transpose(0, 1), lengths, mask

    def float_tokens(sequences, pad_value=0):
        padded, lengths, mask = sol["pad_batch"](sequences, pad_value)
        return padded.float(), lengths, mask

    def float_mask(sequences, pad_value=0):   # the study guide's `.float()` mask
        padded, lengths, mask = sol["pad_batch"](sequences, pad_value)
        return padded, lengths, mask.float()

    def in_place(sequences, pad_value=0):
        result = sol["pad_batch"](sequences, pad_value)
        sequences[0][0] = pad_value + 1
        return result

    assert "time first" in _fails_with("pad_batch", time_first, "Rule: padded is batch first")
    _fails_with("pad_batch", float_tokens, "token ids stay integers")
    _fails_with("pad_batch", float_mask, "mask has dtype float32")
    _fails_with("pad_batch", in_place, "sequences[0] was changed in place")


def test_packed_last_hidden_leaves_the_lstm_alone(sol):
    def switches_to_eval(lstm, padded, lengths):
        lstm.eval()
        return sol["packed_last_hidden"](lstm, padded, lengths)

    _fails_with("packed_last_hidden", switches_to_eval, "lstm was left in eval mode")


def test_bidirectional_lstm_is_from_scratch_and_keeps_its_shapes(sol):
    def with_nn_lstm(x, lengths, params_forward, params_backward, cell):
        lstm = nn.LSTM(x.shape[2], params_forward[1].shape[1], batch_first=True, bidirectional=True).double()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        output, state = lstm(packed)
        return pad_packed_sequence(output, batch_first=True)[0], state

    def time_major_states(x, lengths, params_forward, params_backward, cell):
        output, (h_n, c_n) = sol["bidirectional_lstm"](x, lengths, params_forward, params_backward, cell)
        return output, (h_n.permute(1, 0, 2), c_n)

    _fails_with("bidirectional_lstm", with_nn_lstm, "torch.nn.LSTM")
    _fails_with("bidirectional_lstm", time_major_states, "h_n has shape")


# --------------------------------------------------------------------------- (d) odd returns and unknown mistakes

def test_odd_returns_get_clear_messages(sol):
    _fails_with("pad_batch", lambda sequences, pad_value=0: None, "must return (padded, lengths, mask)")
    _fails_with("bidirectional_lstm", lambda *a, cell: a[0], "must return (output, (h_n, c_n))")

    class NoLayers(nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()

    _fails_with("Seq2Seq", NoLayers, "Seq2Seq needs self.src_embed")

    class PerExampleLoss(sol["Seq2Seq"]):
        def loss(self, logits, tgt):
            return F.cross_entropy(logits.transpose(1, 2), tgt, ignore_index=self.pad_idx, reduction="none")

    _fails_with("Seq2Seq", PerExampleLoss, "Rule: loss(logits, tgt) returns a scalar")


def test_stubs_are_not_implemented():
    def stub(*args, **kwargs):
        raise NotImplementedError()

    for name in ("pad_batch", "packed_last_hidden", "bidirectional_lstm", "Seq2Seq"):
        with pytest.raises(NotImplementedYet):
            CHECKS[name](stub)


def test_unknown_mistakes_are_described_not_misnamed(sol):
    def backward_half_negated(x, lengths, params_forward, params_backward, cell):
        output, state = sol["bidirectional_lstm"](x, lengths, params_forward, params_backward, cell)
        H = params_forward[1].shape[1]
        return torch.cat([output[..., :H], -output[..., H:]], dim=2), state

    message = _fails_with("bidirectional_lstm", backward_half_negated, "backward half of output")
    assert "Likely cause" not in message

    class HalfLoss(sol["Seq2Seq"]):
        def loss(self, logits, tgt):
            return super().loss(logits, tgt) / 2

    message = _fails_with("Seq2Seq", HalfLoss, "loss(scores, tgt)")
    assert "Likely cause" not in message


# --------------------------------------------------------------------------- sample mistakes

def test_samples_apply_and_are_diagnosed(capsys):
    assert len(SAMPLES) >= 3 and len({s.student for s in SAMPLES}) == len(SAMPLES)
    for sample in SAMPLES:
        assert sample.student.startswith("rnn_batches_") and sample.notebook == NOTEBOOK.stem
        namespace = NB.run(NB.apply(sample))
        _fails_with(sample.cell, namespace[sample.cell], sample.diagnosis)
        for other in CHECKS:   # the mistake costs that exercise's points only
            if other != sample.cell:
                CHECKS[other](namespace[other])
    capsys.readouterr()
