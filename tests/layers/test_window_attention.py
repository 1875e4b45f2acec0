"""layers/window_attention.py: Swin's window attention stopped before proj equals timm's.

float64 throughout: the two sides sum the same few terms (16 channels, 16 tokens a window) in
orders that may differ, so they agree to float64 rounding (tests/tolerance.py), far below any
real difference."""
import pytest
import torch
from timm.models.swin_transformer import SwinTransformerBlock
from tolerance import assert_identities, assert_identity

from adapterkit.layers.window_attention import window_attention


def block(resolution, shift, fused):
    torch.manual_seed(0)
    swin = SwinTransformerBlock(dim=16, input_resolution=resolution, num_heads=2,
                                window_size=4, shift_size=shift).double().eval()
    with torch.no_grad():
        swin.attn.relative_position_bias_table.normal_()  # timm starts it near zero
    swin.attn.fused_attn = fused
    return swin


@pytest.mark.parametrize('fused', [True, False])
@pytest.mark.parametrize('resolution, shift', [((8, 8), 0), ((8, 8), 2), ((6, 10), 2)])
def test_proj_of_it_is_timms_attention_values_and_gradients(resolution, shift, fused):
    swin = block(resolution, shift, fused)
    x = torch.randn(2, *resolution, 16, dtype=torch.float64, requires_grad=True)
    table = swin.attn.relative_position_bias_table
    ours = swin.attn.proj(window_attention(swin, x))
    timms = swin._attn(swin.norm1(x))
    assert_identity(ours, timms, 'output')
    weight = torch.randn_like(ours)
    got = torch.autograd.grad((ours * weight).sum(), (x, table))
    want = torch.autograd.grad((timms * weight).sum(), (x, table))
    assert_identities(got, want, 'gradient')


def test_streams_stacked_along_the_batch_are_attended_each_on_its_own():
    swin = block((8, 8), 2, fused=False)
    streams = torch.randn(3 * 2, 8, 8, 16, dtype=torch.float64)  # 3 streams of batch 2
    together = window_attention(swin, streams)
    for t in range(3):
        rows = slice(2 * t, 2 * t + 2)
        assert_identity(together[rows], window_attention(swin, streams[rows]), f'stream {t}')
