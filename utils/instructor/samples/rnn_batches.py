"""Sample submissions with typical mistakes for the RNN assignment (notebook ``rnn_batches``)."""
from . import in_notebook

mistake = in_notebook("rnn_batches")

MISTAKES = [
    mistake("rnn_batches_unpacked_h_n", "packed_last_hidden",
            ("_, (h_n, _) = lstm(packed)", "_, (h_n, _) = lstm(padded)"),
            diagnosis="h_n of the unpacked batch has read every padded step"),
    mistake("rnn_batches_directions_swapped", "bidirectional_lstm",
            ("output = torch.cat(outputs, dim=2)", "output = torch.cat(outputs[::-1], dim=2)"),
            diagnosis="the two directions are concatenated in the wrong order"),
    mistake("rnn_batches_unshifted_target", "Seq2Seq",
            ("decoder_input = torch.cat([bos, tgt[:, :-1]], dim=1)", "decoder_input = tgt"),
            diagnosis="the decoder is fed the target itself, not shifted right"),
]
