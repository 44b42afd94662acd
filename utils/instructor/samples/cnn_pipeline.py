"""Typical mistakes in the notebook "A CIFAR-100 classifier in PyTorch" (assignment cnn, notebook cnn_pipeline)."""
from . import in_notebook

mistake = in_notebook("cnn_pipeline")

MISTAKES = [
    mistake("cnn_pipeline_final_relu", "CustomCNN",
            ("return self.fc3(x)                # logits: no activation on the final layer",
             "return F.relu(self.fc3(x))"),
            diagnosis="activation on the final layer"),
    mistake("cnn_pipeline_topk_no_expand", "topk_accuracy",
            ("pred.eq(targets.view(-1, 1).expand_as(pred))", "pred.eq(targets)"),
            diagnosis="without being made a column"),
    mistake("cnn_pipeline_no_zero_grad", "train_one_epoch",
            ("        optimizer.zero_grad()\n", ""),
            diagnosis="forgetting zero_grad"),
    mistake("cnn_pipeline_no_eval", "evaluate",
            ("    model.eval()\n", ""),
            diagnosis="model.eval() missing"),
    mistake("cnn_pipeline_imagenet_norm", "build_transforms",
            ("mean = [0.5071, 0.4867, 0.4408]", "mean = [0.485, 0.456, 0.406]"),
            ("std = [0.2675, 0.2565, 0.2761]", "std = [0.229, 0.224, 0.225]"),
            diagnosis="ImageNet's mean and std"),
]
