"""Swin's window attention stopped before its output projection, optionally with prefix tokens.

timm's ``SwinTransformerBlock._attn`` goes from the normalized tokens to the output of
``attn.proj``, in one piece. A method that adapts ``proj`` per stream (MTLoRA's task
branches; per-task streams or prompts of later methods) needs the attention output ``o``
before ``proj``: ``proj`` acts per token, so ``o`` put back into the image layout once can
feed any number of projections. ``window_attention`` computes exactly timm's values: cyclic
shift, padding, window partition, qkv, relative position bias and shift mask, softmax
attention (torch's fused kernel where it applies), window reversal and the reverse shift.
Any batch works, so streams stacked along the batch (T*B rows) run in one call.

Prompt methods (VPT, TADFormer) prepend *prefix tokens* to every window: ``attend_windows``
takes them as (B, P, C), one set per image, and answers the attention output in the window
layout with the prefix tokens' own outputs per window and, on request, the raw logits of the
prefix queries against the window tokens; ``to_image`` puts window outputs back into the
image layout. With prefix tokens:

- the block's ``norm1`` and ``attn.qkv`` apply to them as to the window tokens, once per
  image (their q, k and v are the same in every window of the image);
- every window of image b attends over [the P prefix tokens of image b, its N tokens]:
  prefix tokens see every token of the window and each other, every token sees them;
- the relative position bias and the shift mask touch the window tokens only: both are
  zero-padded in the prefix rows and columns.
"""
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformerBlock, window_partition, window_reverse


class Attended(NamedTuple):
    """The window attention of a block before ``proj`` (``attend_windows``)."""

    #: (B * windows, N, C): the window tokens' outputs, windows in timm's order (batch-major:
    #: row b * windows + w), in the shifted and padded frame
    windows: torch.Tensor
    #: (B * windows, P, C): the prefix tokens' outputs in each window, or None
    prefix: Optional[torch.Tensor] = None
    #: (B * windows, heads, P, N): q_prefix . k_window, unscaled, without bias or mask, or None
    prefix_logits: Optional[torch.Tensor] = None


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
    attended = attend_windows(block, x, qkv_applies_norm=qkv_applies_norm)
    return to_image(block, attended.windows, x.shape[1], x.shape[2])


def attend_windows(block: SwinTransformerBlock, x: torch.Tensor,
                   prefix: Optional[torch.Tensor] = None, prefix_logits: bool = False,
                   qkv_applies_norm: bool = False) -> Attended:
    """The window attention of ``block.norm1(x)`` before ``proj``, in the window layout.

    Args:
        block, x, qkv_applies_norm: as ``window_attention``.
        prefix: tokens (B, P, C) before ``norm1``, prepended to every window of their image
            (see the module docstring); None for plain window attention.
        prefix_logits: also answer the raw logits of the prefix queries.
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
    q, k, v = _heads(attn, attn.qkv(windows, act=block.norm1) if norm_in_qkv
                     else attn.qkv(windows))
    bias = attn._get_rel_pos_bias()  # (1, heads, N, N)
    mask = block.get_attn_mask(x) if block.dynamic_mask else block.attn_mask
    if mask is not None:  # (windows, N, N), 0 or -100 across shifted regions
        bias = bias + mask.unsqueeze(1)  # (windows, heads, N, N)
    count = 0 if prefix is None else prefix.shape[1]
    logits = None
    if count:
        per_window = len(windows) // batch
        q_p, k_p, v_p = (t.unsqueeze(1).expand(-1, per_window, -1, -1, -1).flatten(0, 1)
                         for t in _heads(attn, attn.qkv(block.norm1(prefix))))
        # each (B * windows, heads, P, d): an image's prefix in each of its windows
        if prefix_logits:
            logits = q_p @ k.transpose(-2, -1)
        q, k, v = (torch.cat(pair, dim=2) for pair in ((q_p, q), (k_p, k), (v_p, v)))
        bias = F.pad(bias, (count, 0, count, 0))  # nothing for prefix rows and columns
    o = _attention(block, q, k, v, bias, batch, mask is not None)
    o = o.transpose(1, 2).reshape(len(windows), -1, channels)
    return Attended(o[:, count:], o[:, :count] if count else None, logits)


def to_image(block: SwinTransformerBlock, windows: torch.Tensor, height: int, width: int
             ) -> torch.Tensor:
    """Window outputs (B * windows, N, C) of ``attend_windows`` back in the image layout
    (B, H, W, C): windows reversed, padding cut, the shift undone."""
    shift, window = block.shift_size, block.window_size
    pad_h, pad_w = (-height) % window[0], (-width) % window[1]
    o = window_reverse(windows.reshape(-1, *window, windows.shape[-1]), window,
                       height + pad_h, width + pad_w)[:, :height, :width]
    if any(shift):
        o = torch.roll(o, shifts=shift, dims=(1, 2))
    return o


def _heads(attn, qkv: torch.Tensor):
    """q, k, v of qkv (M, L, 3C): each (M, heads, L, head_dim); 4-D, so that torch's fused
    kernels take them (a 5-D call falls back to the unfused math)."""
    return qkv.unflatten(-1, (3, attn.num_heads, -1)).permute(2, 0, 3, 1, 4).unbind(0)


def _attention(block, q, k, v, bias, batch: int, per_window: bool) -> torch.Tensor:
    """softmax(q k^T scale + bias) v, (M, heads, L, head_dim); ``bias`` (1 or windows,
    heads, L, L), per window when ``per_window``."""
    attn = block.attn
    # torch's CPU kernel takes no gradient for the bias: its fallback there is this
    # explicit form plus a check for fully masked rows, which Swin never has
    if attn.fused_attn and (q.device.type != 'cpu' or not (torch.is_grad_enabled()
                                                           and bias.requires_grad)):
        return F.scaled_dot_product_attention(  # a 4-D call needs the bias per window
            q, k, v, attn_mask=bias.repeat(batch, 1, 1, 1) if per_window else bias,
            scale=attn.scale, dropout_p=attn.attn_drop.p if block.training else 0.0)
    # timm's explicit form, the bias broadcast over the batch
    scores = ((q * attn.scale) @ k.transpose(-2, -1)).unflatten(0, (batch, -1)) + bias
    return attn.attn_drop(scores.softmax(-1)).flatten(0, 1) @ v
