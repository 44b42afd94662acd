"""Typical mistakes in the notebook "A CIFAR-100 classifier in PyTorch" (assignment cnn, notebook cnn_pipeline)."""
from . import SampleMistake

MISTAKES = [
    SampleMistake(student="cnn_pipeline_final_relu", notebook="cnn_pipeline", cell="CustomCNN",
                  replace=(("return self.fc3(x)                # logits: no activation on the final layer",
                            "return F.relu(self.fc3(x))"),),
                  diagnosis="activation on the final layer"),
    SampleMistake(student="cnn_pipeline_topk_no_expand", notebook="cnn_pipeline", cell="topk_accuracy",
                  replace=(("pred.eq(targets.view(-1, 1).expand_as(pred))", "pred.eq(targets)"),),
                  diagnosis="without .view(-1, 1).expand_as(pred)"),
    SampleMistake(student="cnn_pipeline_no_zero_grad", notebook="cnn_pipeline", cell="train_one_epoch",
                  replace=(("        optimizer.zero_grad()\n", ""),),
                  diagnosis="forgetting zero_grad"),
    SampleMistake(student="cnn_pipeline_no_eval", notebook="cnn_pipeline", cell="evaluate",
                  replace=(("    model.eval()\n", ""),),
                  diagnosis="model.eval() missing"),
    SampleMistake(student="cnn_pipeline_imagenet_norm", notebook="cnn_pipeline", cell="build_transforms",
                  replace=(("mean = [0.5071, 0.4867, 0.4408]", "mean = [0.485, 0.456, 0.406]"),
                           ("std = [0.2675, 0.2565, 0.2761]", "std = [0.229, 0.224, 0.225]")),
                  diagnosis="ImageNet's mean and std"),
]
