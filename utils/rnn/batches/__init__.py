"""Checks for the notebook ``rnn_batches`` of the RNN assignment: sequences of different lengths in one batch.

The notebook asks for (torch tensors in, torch tensors out):

* ``pad_batch(sequences, pad_value=0) -> (padded, lengths, mask)`` (:mod:`~utils.rnn.batches.pad_batch`);
* ``packed_last_hidden(lstm, padded, lengths) -> (B, H·num_directions)``, the final states of a packed batch
  (:mod:`~utils.rnn.batches.packed_last_hidden`);
* ``bidirectional_lstm(x, lengths, params_forward, params_backward, cell) -> (output, (h_n, c_n))`` from scratch,
  respecting each sequence's length (:mod:`~utils.rnn.batches.bidirectional_lstm`);
* the class ``Seq2Seq(src_vocab, tgt_vocab, emb_dim, hidden_size, pad_idx, bos_idx)``, an LSTM encoder–decoder
  trained with teacher forcing and a padding-masked loss (:mod:`~utils.rnn.batches.seq2seq`).

These modules run in the student's kernel (to call the student's code) and in the grader (to compute
references and name mistakes); they import torch at module level. References are torch's own:
``pad_sequence``, ``nn.LSTM`` run on each sequence alone or on a packed batch, ``nn.Embedding`` / ``nn.LSTM`` /
``nn.Linear`` with ``cross_entropy(ignore_index=...)``, in float64 and loaded with the case's weights; the known
mistakes are the same computations done wrongly. What they share is in :mod:`~utils.rnn.batches.shared` (which
builds on :mod:`utils.rnn.shared`).
"""
from utils.rnn.batches.bidirectional_lstm import BIDIRECTIONAL, check_bidirectional_lstm
from utils.rnn.batches.packed_last_hidden import LAST_HIDDEN, check_packed_last_hidden
from utils.rnn.batches.pad_batch import PAD, check_pad_batch
from utils.rnn.batches.seq2seq import SEQ2SEQ, check_Seq2Seq

EXERCISES = {e.function: e for e in (PAD, LAST_HIDDEN, BIDIRECTIONAL, SEQ2SEQ)}

__all__ = ["EXERCISES", "check_Seq2Seq", "check_bidirectional_lstm", "check_packed_last_hidden", "check_pad_batch"]
