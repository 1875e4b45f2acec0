"""ProjectedMap: a map handed over before its last linear map, multiplied out on demand."""
import adapterkit  # noqa: F401
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope
from tolerance import assert_identity

from adapterkit.layers.projected_map import ProjectedMap, materialize
from adapterkit.registry import MODELS


def randn(*shape, **options):
    return torch.randn(*shape, dtype=torch.float64, **options)  # see tests/tolerance.py


def test_a_projected_map_is_its_product_and_takes_a_further_linear_map():
    torch.manual_seed(0)
    inputs, weight = randn(2, 5, 6, 8), randn(4, 8)
    projected = ProjectedMap(inputs, weight)
    want = (inputs @ weight.T).permute(0, 3, 1, 2)
    assert projected.shape == want.shape == (2, 4, 5, 6)
    assert_identity(projected.materialize(), want)
    conv = randn(3, 4, 1, 1)
    assert_identity(projected.project(conv.flatten(1)), F.conv2d(want, conv))
    plain = randn(2, 4, 5, 6)
    assert materialize([plain, projected])[0] is plain


def test_redo_recomputes_the_inputs_instead_of_keeping_them():
    source = randn(3, 4, 4, 8, requires_grad=True)
    weight = randn(5, 8, requires_grad=True)
    calls = []

    def redo():
        calls.append(1)
        return source.detach() * 2

    inputs = source * 2
    out = ProjectedMap(inputs, weight, redo).project()
    out.sum().backward()
    assert calls == [1]  # weight's gradient needed the inputs: they came from redo
    assert_identity(weight.grad, (2 * source.detach()).sum((0, 1, 2)).expand(5, 8))


class _PlainHead(torch.nn.Module):
    """A head that knows nothing of ProjectedMap."""

    def __init__(self, in_channels, num_outputs):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels[0], num_outputs, 1)

    def forward(self, feats):
        assert all(isinstance(f, torch.Tensor) for f in feats)
        return self.conv(feats[0])


def test_heads_that_do_not_read_projected_maps_get_them_multiplied_out():
    init_default_scope('adapterkit')
    if 'PlainTestHead' not in MODELS.module_dict:
        MODELS.register_module('PlainTestHead', module=_PlainHead)
    swin = dict(type='SwinBackbone', img_size=64, embed_dim=16, depths=(2, 2, 2, 2),
                num_heads=(1, 2, 2, 4), window_size=4)
    model = MODELS.build(dict(type='MultiTaskModel', tasks=['semseg', 'sal'], backbone=swin,
                              head=dict(type='PlainTestHead'),
                              heads=dict(sal=dict(type='HRNetHead')),
                              adapter=dict(type='MTLoRA', rank=4)))
    assert model._projected_maps
    logits = model(torch.randn(1, 3, 64, 64))
    assert logits['semseg'].shape == (1, 21, 64, 64) and logits['sal'].shape == (1, 1, 64, 64)
