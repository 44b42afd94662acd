"""Sample submissions with typical mistakes for the RNN assignment (notebook ``rnn``)."""
from . import in_notebook

mistake = in_notebook("rnn")

MISTAKES = [
    mistake("rnn_unsorted_vocab", "build_vocab",
            ("chars = sorted(set(text))", "chars = list(dict.fromkeys(text))"),
            diagnosis="vocabulary not sorted"),
    mistake("rnn_swapped_sequences", "make_sequences",
            ("input_seq = text[:-1]\n    target_seq = text[1:]", "input_seq = text[1:]\n    target_seq = text[:-1]"),
            diagnosis="input and target sequences are swapped"),
    mistake("rnn_tanh_output", "rnn_forward",
            ("s_t = W_hy @ h + b_y", "s_t = torch.tanh(W_hy @ h + b_y)"),
            diagnosis="tanh on the output"),
    mistake("rnn_softmax_dim", "rnn_loss",
            ("F.log_softmax(logits, dim=1)", "F.log_softmax(logits, dim=0)"),
            diagnosis="softmax over the wrong dimension"),
    mistake("rnn_gate_order", "lstm_cell",
            ("i, f, g, o = gates.chunk(4, dim=-1)", "f, i, g, o = gates.chunk(4, dim=-1)"),
            diagnosis="LSTM gates in the wrong order"),
    mistake("rnn_cell_state", "lstm_forward",
            ("h, c = cell(seq[:, t], h, c, W_ih, W_hh, b_ih, b_hh)",
             "h, _ = cell(seq[:, t], h, c, W_ih, W_hh, b_ih, b_hh)"),
            diagnosis="cell state not carried between steps"),
]
