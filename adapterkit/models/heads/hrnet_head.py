"""The HRNet-style per-task head of the MTLoRA paper."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from adapterkit.registry import MODELS


@MODELS.register_module()
class HRNetHead(BaseModule):
    """Per-task 1x1 downsamplers, fusion at scale 1 and a 1x1 conv classifier.

    Each of the four input maps is reduced by a bias-free 1x1 conv to ``channels[k]``;
    scales 2..4 are bilinearly upsampled to scale 1 and concatenated; ``last_layer`` maps
    the concatenation (``sum(channels)``) through a 4x wider hidden layer to the outputs.
    Logits come at the resolution of ``feats[0]``.

    Args:
        in_channels: channels of the four input maps.
        num_outputs: output channels of the task.
        channels: channels of the four maps after the downsamplers.
    """

    def __init__(self, in_channels, num_outputs, channels=(18, 36, 72, 144), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if len(in_channels) != len(channels):
            raise ValueError(f'HRNetHead: {len(in_channels)} in_channels for '
                             f'{len(channels)} channels')
        self.downsample = nn.ModuleList(
            nn.Conv2d(cin, cout, kernel_size=1, bias=False)
            for cin, cout in zip(in_channels, channels))
        fused = sum(channels)
        self.last_layer = nn.Sequential(
            nn.Conv2d(fused, 4 * fused, kernel_size=1, bias=True),
            nn.BatchNorm2d(4 * fused),
            nn.ReLU(inplace=True),
            nn.Conv2d(4 * fused, num_outputs, kernel_size=1, bias=True),
        )

    def forward(self, feats):
        maps = [conv(feat) for conv, feat in zip(self.downsample, feats)]
        size = maps[0].shape[-2:]
        # The first 1x1 conv of last_layer, on cat(maps upsampled to `size`), is linear, and
        # so is bilinear upsampling: each map group of one resolution is mapped to the
        # hidden width first and upsampled after, the same sum at a fraction of the cost
        # (about 7x fewer products at 448 px, where three maps are 2x and 4x smaller).
        first = self.last_layer[0]
        weights = first.weight.split([m.shape[1] for m in maps], dim=1)
        by_size = {}
        for m, weight in zip(maps, weights):
            by_size.setdefault(tuple(m.shape[-2:]), []).append((m, weight))
        hidden = None
        for group_size, group in by_size.items():
            part = F.conv2d(torch.cat([m for m, _ in group], dim=1),
                            torch.cat([w for _, w in group], dim=1))
            if group_size != tuple(size):
                part = F.interpolate(part, size=size, mode='bilinear', align_corners=False)
            hidden = part if hidden is None else hidden.add_(part)
        hidden = hidden.add_(first.bias.view(-1, 1, 1))
        return self.last_layer[1:](hidden)
