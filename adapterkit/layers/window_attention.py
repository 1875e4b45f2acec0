"""Swin's window attention stopped before its output projection, in the image layout.

timm's ``SwinTransformerBlock._attn`` goes from the normalized tokens to the output of
``attn.proj``, in one piece. A method that adapts ``proj`` per stream (MTLoRA's task
branches; per-task streams or prompts of later methods) needs the attention output ``o``
before ``proj``: ``proj`` acts per token, so ``o`` put back into the image layout once can
feed any number of projections. ``window_attention`` computes exactly timm's values: cyclic
shift, padding, window partition, qkv, relative position bias and shift mask, softmax
attention (torch's fused kernel where it applies), window reversal and the reverse shift.
Any batch works, so streams stacked along the batch (T*B rows) run in one call.
"""
import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformerBlock, window_partition, window_reverse


def window_attention(block: SwinTransformerBlock, x: torch.Tensor,
                     qkv_applies_norm: bool = False) -> torch.Tensor:
    """The window attention of ``block.norm1(x)`` before ``block.attn.proj``, (B, H, W, C).

    Args:
        block: a timm Swin V1 block (its norm1, attn, window, shift and attention mask).
        x: the block's input tokens (B, H, W, C).
        qkv_applies_norm: ``block.attn.qkv`` takes ``act=`` and applies it to its input
            itself (a layer that then redoes the norm in backward instead of keeping its
            output). LayerNorm acts per token, so it commutes with the shift and the
            partition: where no padding is needed norm1 is handed to qkv instead of applied
            first (timm pads after the norm, so padded tokens must be zeros).
    """
    batch, height, width, channels = x.shape
    shift, window = block.shift_size, block.window_size
    pad_h, pad_w = (-height) % window[0], (-width) % window[1]
    attn = block.attn
    norm_in_qkv = qkv_applies_norm and not (pad_h or pad_w)
    if not norm_in_qkv:
        x = block.norm1(x)
    if any(shift):
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    windows = window_partition(x, window).view(-1, block.window_area, channels)
    qkv = attn.qkv(windows, act=block.norm1) if norm_in_qkv else attn.qkv(windows)
    # (B * windows, N, 3C) -> q, k, v: (B * windows, heads, N, head_dim); 4-D, so that
    # torch's fused kernels take them (a 5-D call falls back to the unfused math)
    q, k, v = qkv.unflatten(-1, (3, attn.num_heads, -1)).permute(2, 0, 3, 1, 4).unbind(0)
    bias = attn._get_rel_pos_bias()  # (1, heads, N, N)
    mask = block.get_attn_mask(x) if block.dynamic_mask else block.attn_mask
    if mask is not None:  # (windows, N, N), 0 or -100 across shifted regions
        bias = bias + mask.unsqueeze(1)  # (windows, heads, N, N)
    # torch's CPU kernel takes no gradient for the bias: its fallback there is this
    # explicit form plus a check for fully masked rows, which Swin never has
    if attn.fused_attn and (q.device.type != 'cpu' or not (torch.is_grad_enabled()
                                                           and bias.requires_grad)):
        o = F.scaled_dot_product_attention(  # a 4-D call needs the bias per window
            q, k, v, attn_mask=bias if mask is None else bias.repeat(batch, 1, 1, 1),
            scale=attn.scale, dropout_p=attn.attn_drop.p if block.training else 0.0)
    else:  # timm's explicit form, the bias broadcast over the batch
        scores = ((q * attn.scale) @ k.transpose(-2, -1)).unflatten(0, (batch, -1)) + bias
        o = attn.attn_drop(scores.softmax(-1)).flatten(0, 1) @ v
    o = window_reverse(o.transpose(1, 2).reshape(-1, *window, channels), window,
                       x.shape[1], x.shape[2])[:, :height, :width]
    if any(shift):
        o = torch.roll(o, shifts=shift, dims=(1, 2))
    return o
