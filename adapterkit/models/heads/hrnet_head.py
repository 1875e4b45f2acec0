"""The HRNet-style per-task head of the MTLoRA paper."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from adapterkit.errors import ConfigError
from adapterkit.layers.projected_map import ProjectedMap
from adapterkit.layers.recompute import recompute_in_backward
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

    reads_projected_maps = True  # its downsamplers are linear: see ProjectedMap

    def __init__(self, in_channels, num_outputs, channels=(18, 36, 72, 144), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if len(in_channels) != len(channels):
            raise ConfigError(f'HRNetHead: {len(in_channels)} in_channels for '
                              f'{len(channels)} channels', option='in_channels')
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
        # a bias-free 1x1 conv is a linear map of the channels
        maps = [feat.project(conv.weight.flatten(1)) if isinstance(feat, ProjectedMap)
                else conv(feat) for conv, feat in zip(self.downsample, feats)]
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
        # one (maps, weights) pair per resolution; maps[0]'s, at the output size, comes
        # first and takes the bias
        groups = [(torch.cat([m for m, _ in group], dim=1), torch.cat([w for _, w in group],
                                                                       dim=1))
                  for group in by_size.values()]

        def fuse():
            hidden = None
            for group_maps, group_weights in groups:
                part = F.conv2d(group_maps, group_weights,
                                first.bias if hidden is None else None)
                if part.shape[-2:] != size:
                    part = F.interpolate(part, size=size, mode='bilinear', align_corners=False)
                hidden = part if hidden is None else hidden.add_(part)
            return hidden

        hidden = fuse()
        norm, _, classify = self.last_layer[1:]
        if not (norm.training and norm.track_running_stats and norm.momentum is not None):
            return self.last_layer[1:](hidden)
        norm.num_batches_tracked.add_(1)
        # the map groups are kept for the first conv's gradient anyway: backward redoes
        # `hidden` from them rather than keeping it (27 MB a task at 448 px)
        with recompute_in_backward(hidden, fuse):
            return _BatchNormReLUConv.apply(hidden, norm.weight, norm.bias, classify.weight,
                                            classify.bias, norm.running_mean,
                                            norm.running_var, norm.momentum, norm.eps)


class _BatchNormReLUConv(torch.autograd.Function):
    """``conv1x1(relu(batch_norm(hidden)))`` in training mode (batch statistics, running
    statistics updated as ``nn.BatchNorm2d`` does), keeping only ``hidden`` for backward:
    the activated map, as large as ``hidden``, is recomputed there in one elementwise pass
    instead of being kept."""

    @staticmethod
    def forward(ctx, hidden, gamma, beta, weight, bias, running_mean, running_var, momentum,
                eps):
        # in the dtype of `hidden` (autocast's, under autocast), as the modules would run
        with torch.autocast(hidden.device.type, enabled=False):
            normed, mean, invstd = torch.native_batch_norm(hidden, gamma, beta, running_mean,
                                                           running_var, True, momentum, eps)
            ctx.save_for_backward(hidden, gamma, beta, weight, mean, invstd)
            ctx.eps = eps
            return F.conv2d(normed.relu_(), weight.to(hidden.dtype), bias.to(hidden.dtype))

    @staticmethod
    def backward(ctx, grad_out):
        hidden, gamma, beta, weight, mean, invstd = ctx.saved_tensors
        channel = (1, -1, 1, 1)
        with torch.autocast(hidden.device.type, enabled=False):
            # relu(gamma (hidden - mean) invstd + beta) as one multiply-add and one relu pass
            scale = invstd * gamma
            activated = torch.addcmul((beta - mean * scale).view(channel), hidden,
                                      scale.view(channel)).relu_().to(hidden.dtype)
            grad_act, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
                grad_out.to(hidden.dtype), activated, weight.to(hidden.dtype),
                [weight.shape[0]], [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
                [True, ctx.needs_input_grad[3], ctx.needs_input_grad[4]])
            # ReLU's backward (no gradient where it gave 0), in one fused pass
            grad_act = torch.ops.aten.threshold_backward(grad_act, activated, 0)
            grad_hidden, grad_gamma, grad_beta = torch.ops.aten.native_batch_norm_backward(
                grad_act, hidden, gamma, None, None, mean, invstd, True, ctx.eps, [True] * 3)
        return (grad_hidden, grad_gamma, grad_beta,
                None if grad_weight is None else grad_weight.to(weight.dtype),
                None if grad_bias is None else grad_bias.to(weight.dtype), None, None, None, None)
