"""Sample submissions for the ``cnn_architectures`` notebook of the ``cnn`` assignment.

Each one edits a single solution cell; no other exercise depends on the edited code (the SE-ResNet-18
exercise builds on ``SEBlock``, so no sample edits ``SEBlock``).
"""
from . import SampleMistake

MISTAKES = [
    SampleMistake(
        student="cnn_lenet_avgpool", notebook="cnn_architectures", cell="LeNet5",
        replace=(("self.pool = nn.MaxPool2d(kernel_size=2, stride=2)",
                  "self.pool = nn.AvgPool2d(kernel_size=2, stride=2)"),),
        diagnosis="LeNet with average pooling instead of max pooling"),
    SampleMistake(
        student="cnn_resblock_relu_before_add", notebook="cnn_architectures", cell="BasicBlock",
        replace=(("return F.relu(out + identity)", "return F.relu(out) + identity"),),
        diagnosis="ReLU before the addition instead of after it"),
    SampleMistake(
        student="cnn_resblock_no_projection", notebook="cnn_architectures", cell="BasicBlock",
        replace=(("if stride != 1 or in_channels != out_channels:", "if in_channels != out_channels:"),),
        diagnosis="no projection shortcut when the shape changes"),
    SampleMistake(
        student="cnn_classifier_final_relu", notebook="cnn_architectures", cell="CNNClassifier",
        replace=(("return self.classifier(x)", "return F.relu(self.classifier(x))"),),
        diagnosis="activation on the final classifier layer"),
    SampleMistake(
        student="cnn_gradflow_mean_abs", notebook="cnn_architectures", cell="block_gradient_norms",
        replace=(("g.norm().item()", "g.abs().mean().item()"),),
        diagnosis="mean of |gradient| instead of the L2 norm"),
]
