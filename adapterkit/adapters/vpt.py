"""VPT (Jia et al., ECCV 2022): visual prompt tuning, learned prompt tokens that the attention
of every window reads, in the paper's Swin variant (its authors' code, KMnP/vpt).

- Shallow: P prompt tokens (P, C_0) enter once, at the first block. Deep: every block has
  its own (P, C_i), which replace the ones that arrive.
- In a block the prompts of an image go through ``norm1`` and ``attn.qkv`` and are prepended
  to every window of that image (``layers/window_attention.py``): they see every token of
  the window and every token sees them; the relative position bias and the shift mask are
  zero-padded for them. Their output is the mean over the image's own windows of their
  outputs in each window; ``proj``, the residuals and the MLP (with ``norm2``) apply to them
  as to the image tokens, with one drop-path draw per sample for both.
- Between stages, shallow prompts are tiled to 4C (the 2x2 neighbourhood of a prompt is
  four copies of it) and go through the merge's norm and reduction with the image tokens;
  deep prompts are dropped there (the next stage's first block replaces them). The taps
  never contain prompts.
- The prompts ride with the backbone's main stream as the token ``'vpt'`` of the streams
  (``layers/streams.py``): under ``PerTask`` every task stream carries its own.

Trains the prompt tokens only. Not mergeable: prompts are extra tokens, not a weight change.

Decisions where the paper leaves it open, and where we depart from the authors' code:

- Per image: the authors' code expands the prompts window-major (row w*B + b) while Swin's
  windows are batch-major (row b*nW + w), and averages the prompt outputs in the same
  window-major groups, so for a batch of more than one image a window reads another image's
  prompts and an image's prompt output averages other images' windows (harmless where every
  image's prompts are equal: deep prompts as they enter, shallow ones in the first block).
  Here each image's windows get that image's prompts and its prompt output is the mean over
  its own windows.
- Init: uniform(-v, v), v = sqrt(6 / (fan + C_0)) with fan = in_chans * patch^2 (the Xavier
  bound of the patch embedding's kernel), the same v for every stage's prompts, as the
  authors'; ``init='zeros'`` as an option.
- Dropout on the prompts each time they enter a block: one draw per element (per sample);
  the authors draw deep prompts' dropout once for the whole batch.
- Drop path: the backbone's setting, as for every strategy (the authors' training puts the
  whole backbone in eval mode, so no drop path).
"""
import math
from typing import Optional, Tuple

import torch
from timm.models.swin_transformer import SwinTransformerBlock
from torch import nn

from ..errors import StrategyError
from ..layers.streams import Streams
from ..layers.window_attention import attend_windows, to_image
from ..registry import ADAPTERS
from .base import AdapterStrategy, Patterns

#: The streams' token the prompts ride as.
TOKEN = 'vpt'
INITS = ('uniform', 'zeros')
_HOOKED = ('VPT: {}.attn has forward hooks (an Adapter?); VPT computes the attention itself '
           'and would skip them: the two cannot be combined')


class VPTPrompt(nn.Module):
    """P learned tokens of one width; ``forward(x)`` answers them for every row of ``x``,
    (rows, P, C), through dropout."""

    def __init__(self, num_tokens: int, dim: int, dropout: float, bound: Optional[float],
                 like: torch.Tensor):
        super().__init__()
        self.tokens = nn.Parameter(torch.zeros(num_tokens, dim, device=like.device,
                                               dtype=like.dtype))
        if bound is not None:
            nn.init.uniform_(self.tokens, -bound, bound)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.tokens.expand(len(x), -1, -1))


def _drop_paths(drop: nn.Module, *branches: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """timm's DropPath of every branch, one draw per sample for all of them."""
    prob = getattr(drop, 'drop_prob', 0.0)
    if not drop.training or not prob:
        return branches
    keep = branches[0].new_empty(len(branches[0])).bernoulli_(1 - prob)
    if drop.scale_by_keep:
        keep.div_(1 - prob)
    return tuple(b * keep.view(-1, *[1] * (b.dim() - 1)) for b in branches)


class VPTBlock(SwinTransformerBlock):
    """timm's Swin block with prompt tokens (see the module docstring); it takes and answers
    the streams state, the prompts as its token ``'vpt'``."""

    takes_streams = True

    @classmethod
    def adopt(cls, block: SwinTransformerBlock) -> 'VPTBlock':
        """Re-class a timm block in place (its modules, names and settings stay timm's)."""
        block.__class__ = cls
        return block

    def forward(self, state: Streams) -> Streams:
        if self.attn._forward_hooks:  # added after VPT: they would be skipped
            raise StrategyError(_HOOKED.format(type(self).__name__), strategy='VPT')
        x = state.main
        batch, height, width, channels = x.shape
        prompts = self.vpt_prompt(x) if hasattr(self, 'vpt_prompt') else state.tokens[TOKEN]
        attended = attend_windows(self, x, prefix=prompts)
        image = to_image(self, attended.windows, height, width)
        pooled = attended.prefix.view(batch, -1, *prompts.shape[1:]).mean(1)
        attn = self.attn
        image, pooled = _drop_paths(self.drop_path1, *(attn.proj_drop(attn.proj(t))
                                                       for t in (image, pooled)))
        x, prompts = x + image, prompts + pooled
        rows = x.reshape(batch, -1, channels)
        out, pooled = _drop_paths(self.drop_path2, *(self.mlp(self.norm2(t))
                                                     for t in (rows, prompts)))
        return state.with_main(x + out.view(x.shape)).with_tokens(**{TOKEN: prompts + pooled})


def _merge_prompts(merge: nn.Module, prompts: torch.Tensor) -> torch.Tensor:
    """Shallow prompts through a stage merge: tiled to 4C, the merge's norm and reduction."""
    return merge.reduction(merge.norm(prompts.repeat(1, 1, 4)))


def _drop_prompts(merge: nn.Module, prompts: torch.Tensor) -> None:
    """Deep prompts end with their stage: the next stage's first block has its own."""
    return None


@ADAPTERS.register_module()
class VPT(AdapterStrategy):
    """VPT-shallow or VPT-deep on a timm Swin V1 backbone.

    Args:
        num_tokens: prompt tokens P per block (deep) or in all (shallow).
        deep: every block its own prompts (VPT-deep); False: one set at the first block
            (VPT-shallow).
        dropout: dropout on the prompt tokens each time they enter a block.
        init: 'uniform' (the authors': U(-v, v) with the Xavier bound of the patch
            embedding's fan) or 'zeros'.
        trainable: extra backbone parts to keep trainable (see ``AdapterStrategy``).
    """

    mergeable = False
    not_mergeable_reason = ('prompts are extra tokens that every window attends to, not a '
                            'change of the weights')
    prefixes = ('vpt_',)

    def __init__(self, num_tokens: int = 50, deep: bool = True, dropout: float = 0.0,
                 init: str = 'uniform', trainable: Patterns = None):
        super().__init__(trainable=trainable)
        if not isinstance(num_tokens, int) or isinstance(num_tokens, bool) or num_tokens < 1:
            raise StrategyError(f'VPT: num_tokens must be a positive integer, got '
                                f'{num_tokens!r}', strategy='VPT', option='num_tokens')
        if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise StrategyError(f'VPT: dropout must be a number in [0, 1), got {dropout!r}',
                                strategy='VPT', option='dropout')
        if init not in INITS:
            raise StrategyError(f'VPT: init must be one of {INITS}, got {init!r}',
                                strategy='VPT', option='init')
        self.num_tokens, self.deep, self.dropout, self.init = num_tokens, deep, dropout, init

    def apply(self, model: nn.Module) -> None:
        backbone = model.backbone
        blocks = self._blocks(backbone)
        streams = backbone.streams.with_token(
            TOKEN, merge=_drop_prompts if self.deep else _merge_prompts, owner='VPT')
        kernel = backbone.patch_embed.proj.weight  # (C_0, in_chans, p, p)
        bound = math.sqrt(6 / (kernel[0].numel() + len(kernel))) \
            if self.init == 'uniform' else None
        for index, (name, block) in enumerate(blocks.items()):
            VPTBlock.adopt(block)
            if self.deep or index == 0:
                block.vpt_prompt = VPTPrompt(self.num_tokens, block.dim, self.dropout, bound,
                                             kernel)
                self.mark_trainable(backbone, [f'{name}.vpt_prompt.tokens'])
        backbone.streams = streams

    @staticmethod
    def _blocks(backbone: nn.Module):
        """``{name: block}`` of every block, checked before any changes."""
        blocks = {}
        for i, stage in enumerate(getattr(backbone, 'layers', None) or []):
            blocks.update((f'layers.{i}.blocks.{j}', b) for j, b in enumerate(stage.blocks))
        if not blocks or not hasattr(backbone, 'streams'):
            raise StrategyError(f'VPT adapts a timm Swin V1 backbone (SwinBackbone), not '
                                f'{type(backbone).__name__}', strategy='VPT')
        for name, block in blocks.items():
            if isinstance(block, VPTBlock):
                raise StrategyError(f'VPT: block {name} has prompts already; apply VPT once',
                                    strategy='VPT')
            if type(block) is not SwinTransformerBlock:
                raise StrategyError(f'VPT: block {name} is a {type(block).__name__}; VPT '
                                    f"adapts timm's Swin blocks", strategy='VPT')
            if block.attn._forward_hooks or block.attn._forward_pre_hooks:
                raise StrategyError(_HOOKED.format(name), strategy='VPT')
        return blocks

    def __repr__(self) -> str:
        return (f'VPT(num_tokens={self.num_tokens}, deep={self.deep}, '
                f'dropout={self.dropout}, init={self.init!r})')
