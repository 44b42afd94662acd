"""Sample submissions for the ``cnn_efficient`` notebook of the ``cnn`` assignment.

Each one edits a single solution cell; the latency demo uses ``DepthwiseSeparableConv`` and ``count_macs`` but
nothing graded depends on another answer.
"""
from . import in_notebook

mistake = in_notebook("cnn_efficient")

MISTAKES = [
    mistake("cnn_eff_full_depthwise", "DepthwiseSeparableConv",
            ("dilation=dilation, groups=in_channels, bias=False)", "dilation=dilation, bias=False)"),
            diagnosis="groups missing in the depthwise convolution"),
    mistake("cnn_eff_projection_activation", "InvertedResidual",
            ("out = self.project_bn(self.project_conv(self.se(out)))",
             "out = F.silu(self.project_bn(self.project_conv(self.se(out))))"),
            diagnosis="an activation after the projection"),
    mistake("cnn_eff_macs_groups", "count_macs",
            ("outputs * (m.in_channels // m.groups)", "outputs * m.in_channels"),
            diagnosis="groups ignored"),
]
