"""Checks for the RNN assignment: a character-level RNN by hand, then LSTMs.

The notebook asks for (torch tensors in, torch tensors or numpy out):

* ``build_vocab(text) -> (chars, char2idx, idx2char)`` and ``make_sequences(text, char2idx) -> (inputs, targets)``
  (:mod:`~utils.rnn.build_vocab`, :mod:`~utils.rnn.make_sequences`);
* ``init_rnn_params(V, H) -> dict`` of leaf tensors W_xh, W_hh, b_xh, b_hh, W_hy, b_y
  (:mod:`~utils.rnn.init_rnn_params`);
* ``rnn_forward(params, inputs, h0) -> (logits, h_T)`` and ``rnn_gradients(params, inputs, targets, h0, forward,
  loss_fn) -> dict`` (:mod:`~utils.rnn.rnn_forward_and_gradients`);
* ``rnn_loss(logits, targets) -> scalar`` and ``perplexity(logits, targets) -> float``
  (:mod:`~utils.rnn.rnn_loss_and_perplexity`);
* ``lstm_cell(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh) -> (h, c)`` (:mod:`~utils.rnn.lstm_cell`) and
  ``lstm_forward(x, layers, h0, c0, cell) -> (output, (h_n, c_n))`` (:mod:`~utils.rnn.lstm_forward`);
* the class ``LSTMModel(input_size, hidden_size, num_layers, output_size)`` (:mod:`~utils.rnn.lstm_model`);
* ``gradient_norms(rnn, x) -> (T,)`` (:mod:`~utils.rnn.gradient_norms`).

The second notebook, ``rnn_batches`` (padding, packing, a bidirectional LSTM, seq2seq), has its checks in
:mod:`utils.rnn.batches`.

These modules run in the student's kernel (to call the student's code) and in the grader (to compute
references and name mistakes). This notebook is written in torch and graded with torch available, so
the modules import it at module level. References are real torch modules (``nn.RNN`` + ``nn.Linear``,
``nn.LSTMCell``, ``nn.LSTM``, ``F.cross_entropy``) loaded with the case's weights, in float64; the
known mistakes are the same computations done wrongly, most of them in NumPy. What several exercises
share is in :mod:`~utils.rnn.shared`.
"""
from utils.rnn.build_vocab import VOCAB, check_build_vocab
from utils.rnn.gradient_norms import NORMS, check_gradient_norms
from utils.rnn.init_rnn_params import INIT, check_init_rnn_params
from utils.rnn.lstm_cell import CELL, check_lstm_cell
from utils.rnn.lstm_forward import LSTM_FORWARD, check_lstm_forward
from utils.rnn.lstm_model import MODEL, check_LSTMModel
from utils.rnn.make_sequences import SEQUENCES, check_make_sequences
from utils.rnn.rnn_forward_and_gradients import FORWARD, GRADIENTS, check_rnn_forward, check_rnn_gradients
from utils.rnn.rnn_loss_and_perplexity import LOSS, PERPLEXITY, check_perplexity, check_rnn_loss

EXERCISES = {e.function: e for e in (VOCAB, SEQUENCES, INIT, FORWARD, LOSS, GRADIENTS, PERPLEXITY, CELL,
                                     LSTM_FORWARD, MODEL, NORMS)}

__all__ = ["EXERCISES", "check_LSTMModel", "check_build_vocab", "check_gradient_norms", "check_init_rnn_params",
           "check_lstm_cell", "check_lstm_forward", "check_make_sequences", "check_perplexity", "check_rnn_forward",
           "check_rnn_gradients", "check_rnn_loss"]
