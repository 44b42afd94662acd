"""Sample submissions with typical mistakes for the RNN assignment (notebook ``rnn``)."""
from . import SampleMistake

MISTAKES = [
    SampleMistake(student="rnn_unsorted_vocab", notebook="rnn", cell="build_vocab",
                  replace=(("chars = sorted(set(text))", "chars = list(dict.fromkeys(text))"),),
                  diagnosis="vocabulary not sorted"),
    SampleMistake(student="rnn_swapped_sequences", notebook="rnn", cell="make_sequences",
                  replace=(("input_seq = text[:-1]\n    target_seq = text[1:]",
                            "input_seq = text[1:]\n    target_seq = text[:-1]"),),
                  diagnosis="input and target sequences are swapped"),
    SampleMistake(student="rnn_tanh_output", notebook="rnn", cell="rnn_forward",
                  replace=(("s_t = W_hy @ h + b_y", "s_t = torch.tanh(W_hy @ h + b_y)"),),
                  diagnosis="tanh on the output"),
    SampleMistake(student="rnn_softmax_dim", notebook="rnn", cell="rnn_loss",
                  replace=(("F.log_softmax(logits, dim=1)", "F.log_softmax(logits, dim=0)"),),
                  diagnosis="softmax over the wrong dimension"),
    SampleMistake(student="rnn_gate_order", notebook="rnn", cell="lstm_cell",
                  replace=(("i, f, g, o = gates.chunk(4, dim=-1)", "f, i, g, o = gates.chunk(4, dim=-1)"),),
                  diagnosis="LSTM gates in the wrong order"),
    SampleMistake(student="rnn_cell_state", notebook="rnn", cell="lstm_forward",
                  replace=(("h, c = cell(seq[:, t], h, c, W_ih, W_hh, b_ih, b_hh)",
                            "h, _ = cell(seq[:, t], h, c, W_ih, W_hh, b_ih, b_hh)"),),
                  diagnosis="cell state not carried between steps"),
]
