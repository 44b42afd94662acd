"""Sample submissions for the ``cnn_architectures`` notebook of the ``cnn`` assignment.

Each one edits a single solution cell; no other exercise depends on the edited code (the SE-ResNet-18
exercise builds on ``SEBlock``, so no sample edits ``SEBlock``).
"""
from . import in_notebook

mistake = in_notebook("cnn_architectures")

MISTAKES = [
    mistake("cnn_lenet_avgpool", "LeNet5",
            ("self.pool = nn.MaxPool2d(kernel_size=2, stride=2)", "self.pool = nn.AvgPool2d(kernel_size=2, stride=2)"),
            diagnosis="LeNet with average pooling instead of max pooling"),
    mistake("cnn_resblock_relu_before_add", "BasicBlock",
            ("return F.relu(out + identity)", "return F.relu(out) + identity"),
            diagnosis="ReLU before the addition instead of after it"),
    mistake("cnn_resblock_no_projection", "BasicBlock",
            ("if stride != 1 or in_channels != out_channels:", "if in_channels != out_channels:"),
            diagnosis="no projection shortcut when the shape changes"),
    mistake("cnn_classifier_final_relu", "CNNClassifier",
            ("return self.classifier(x)", "return F.relu(self.classifier(x))"),
            diagnosis="activation on the final classifier layer"),
    mistake("cnn_gradflow_mean_abs", "block_gradient_norms",
            ("g.norm().item()", "g.abs().mean().item()"),
            diagnosis="mean of |gradient| instead of the L2 norm"),
]
