"""layers/window_attention.py: Swin's window attention stopped before proj equals timm's,
and with prefix tokens equals the explicit per-window concatenation.

float64 throughout: the two sides sum the same few terms (16 channels, 16 tokens a window) in
orders that may differ, so they agree to float64 rounding (tests/tolerance.py), far below any
real difference."""
import pytest
import torch
from timm.models.swin_transformer import SwinTransformerBlock, window_partition
from tolerance import assert_identities, assert_identity

from adapterkit.layers.window_attention import attend_windows, to_image, window_attention


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


# ---------------------------------------------------------------- prefix tokens
def explicit_prefix_attention(swin, x, prefix):
    """Every window of image b as the explicit sequence [norm1(prefix_b), its tokens], one
    window at a time: qkv, softmax(q k^T scale + bias) v with the bias and the shift mask
    zero in the prefix rows and columns. Answers (window outputs, prefix outputs, raw prefix
    logits), windows batch-major as timm partitions them."""
    attn, (window, _) = swin.attn, swin.window_size
    batch, height, width, channels = x.shape
    shift = swin.shift_size[0]
    image = torch.roll(swin.norm1(x), (-shift, -shift), (1, 2)) if shift else swin.norm1(x)
    pad_h, pad_w = (-height) % window, (-width) % window
    image = torch.nn.functional.pad(image, (0, 0, 0, pad_w, 0, pad_h))
    windows = window_partition(image, (window, window)).reshape(-1, window * window, channels)
    per_image, tokens, count = len(windows) // batch, window * window, prefix.shape[1]
    heads = attn.num_heads
    bias = attn.relative_position_bias_table[attn.relative_position_index.reshape(-1)]
    bias = bias.reshape(tokens, tokens, heads).permute(2, 0, 1)
    out_windows, out_prefix, raw = [], [], []
    for b in range(batch):
        for w in range(per_image):
            sequence = torch.cat([swin.norm1(prefix[b]), windows[b * per_image + w]])
            qkv = sequence @ attn.qkv.weight.T + attn.qkv.bias
            q, k, v = qkv.reshape(len(sequence), 3, heads, -1).permute(1, 2, 0, 3)
            full = torch.zeros(heads, len(sequence), len(sequence), dtype=x.dtype)
            full[:, count:, count:] = bias
            if swin.attn_mask is not None:
                full[:, count:, count:] += swin.attn_mask[w]
            logits = (q * attn.scale) @ k.transpose(-2, -1) + full
            out = (logits.softmax(-1) @ v).transpose(0, 1).reshape(len(sequence), channels)
            out_windows.append(out[count:])
            out_prefix.append(out[:count])
            raw.append(q[:, :count] @ k[:, count:].transpose(-2, -1))
    return torch.stack(out_windows), torch.stack(out_prefix), torch.stack(raw)


@pytest.mark.parametrize('fused', [True, False])
@pytest.mark.parametrize('resolution, shift', [((8, 8), 0), ((8, 8), 2), ((6, 10), 2)])
def test_prefix_tokens_are_prepended_to_every_window_of_their_own_image(
        resolution, shift, fused):
    swin = block(resolution, shift, fused)
    x = torch.randn(2, *resolution, 16, dtype=torch.float64)
    prefix = torch.randn(2, 3, 16, dtype=torch.float64)  # each image its own
    got = attend_windows(swin, x, prefix=prefix, prefix_logits=True)
    want = explicit_prefix_attention(swin, x, prefix)
    for what, ours, theirs in zip(('windows', 'prefix', 'prefix logits'), got, want):
        assert_identity(ours, theirs, what)


def test_without_prefix_the_window_layout_is_timms_before_proj():
    swin = block((8, 8), 2, fused=True)
    x = torch.randn(2, 8, 8, 16, dtype=torch.float64)
    attended = attend_windows(swin, x)
    assert attended.prefix is None and attended.prefix_logits is None
    assert_identity(swin.attn.proj(to_image(swin, attended.windows, 8, 8)),
                    swin._attn(swin.norm1(x)), 'output')
