"""Typical mistakes in the notebook "Training craft: metrics, clipping, early stopping, fine-tuning"
(assignment cnn, notebook cnn_training)."""
from . import in_notebook

mistake = in_notebook("cnn_training")

MISTAKES = [
    mistake("cnn_training_confusion_transposed", "confusion_matrix",
            ("np.add.at(counts, (y_true, y_pred), 1)", "np.add.at(counts, (y_pred, y_true), 1)"),
            diagnosis="the matrix is transposed"),
    mistake("cnn_training_clip_per_parameter", "clip_gradients",
            ("    factor = min(1.0, max_norm / (total + 1e-6))\n    for g in grads:\n        g.mul_(factor)",
             "    for g in grads:\n        g.mul_(min(1.0, max_norm / (float(g.norm()) + 1e-6)))"),
            diagnosis="clipped by its own norm"),
    mistake("cnn_training_early_stopping_alias", "EarlyStopping",
            ("            torch.save(model.state_dict(), self.path)",
             "            torch.save(model.state_dict(), self.path)\n            self.best_state = model.state_dict()"),
            ("        model.load_state_dict(torch.load(self.path, weights_only=True))",
             "        model.load_state_dict(self.best_state)"),
            diagnosis="restore() puts back the last epoch's weights"),
]
