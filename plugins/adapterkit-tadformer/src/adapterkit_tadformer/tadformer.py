"""TADFormer (Baek et al., CVPR 2025, "Task-Adaptive Dynamic TransFormer for Efficient
Multi-Task Learning"), as its authors' code (Min100KM/TADFormer@1f53b9f) computes it.

- Task prompts: one learned token per task enters after the patch embedding and rides with
  the shared stream (the streams' token ``'tadformer'``) through every block; each stage's
  merge maps it C -> 2C with a learned ``tad_prompts_up``.
- Every block: shared low-rank deltas on attn.qkv, attn.proj, mlp.fc1, mlp.fc2 (``TADLinear``,
  for prompts and image tokens alike). The prompts are prepended to every attention window
  (``attend_windows``), averaged over the windows after proj, and updated by the MLP:
  ``P' = P + MLP(LN2(P_attn))``, with no attention residual (the last block of the last
  stage answers ``P_attn``, which nothing reads).
- The last block of each stage (task-adaptive, "TA"): the raw logits of prompt t against the
  window tokens, per head, condition the attention output o of the window,
  ``m_t = GELU(q_t . k) * o`` (channel c reads head c // d) and ``u_t = LN_p(o + m_t)``;
  proj, fc1 and fc2 answer one output per task, ``W x_shared + b + s B F_t(A u_t)``, with the
  layer's own A, B and a task filter F_t (per window at proj, on the stage map at fc1 and
  fc2). Task streams are born there; their stage output is ``g skip_t + (1 - g) out_t``,
  ``g = sigmoid(tad_gate)``, where ``skip_t`` reads m_t's channel-major memory as
  (tokens, channels), as the authors' code does (``skip_layout='reference'``; 'fixed'
  transposes). The merge maps the task streams to their decoders; the next stage continues
  from the shared stream.

Trained: the shared deltas, filters, prompts, prompt norms, gates and up-projections, every
LayerNorm, the patch embedding and the relative-position tables; the merges' reductions and
the blocks' frozen linears stay frozen. Training-time details and every difference from the
paper are in the plugin's README.
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformerBlock
from torch import nn

from adapterkit.adapters import AdapterStrategy
from adapterkit.adapters.base import Patterns
from adapterkit.errors import StrategyError
from adapterkit.layers.streams import Streams
from adapterkit.layers.window_attention import attend_windows, to_image

from .convert import convert_loaded
from .layers import DynamicFilter, StaticFilters, TADLinear

#: The streams' token the task prompts ride as.
TOKEN = 'tadformer'
FILTERS = ('static', 'dynamic')
SKIPS = ('gated', 'mean', 'none')
SKIP_LAYOUTS = ('reference', 'fixed')
NUM_STAGES = 4


def _start_prompts(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The task prompts for every image of the batch, (B, T, C_0)."""
    return backbone.tad_prompts.expand(len(x), -1, -1)


def _up_prompts(merge: nn.Module, prompts: torch.Tensor) -> torch.Tensor:
    """A stage merge maps the prompts C -> 2C with its own learned projection."""
    return merge.tad_prompts_up(prompts)


class TADBlock(SwinTransformerBlock):
    """timm's Swin block with task prompts and, in the last block of a stage, the task
    streams (see the module docstring); it takes and answers the streams state."""

    takes_streams = True

    @classmethod
    def adopt(cls, block: SwinTransformerBlock, task_adaptive: bool, update_prompts: bool,
              skip: str, skip_layout: str) -> 'TADBlock':
        """Re-class a timm block in place (its modules, names and settings stay timm's)."""
        block.__class__ = cls
        block.task_adaptive, block.update_prompts = task_adaptive, update_prompts
        block.skip, block.skip_layout = skip, skip_layout
        return block

    def forward(self, state: Streams) -> Streams:
        x, prompts = state.main, state.tokens[TOKEN]
        batch, height, width, channels = x.shape
        attn, mlp = self.attn, self.mlp
        attended = attend_windows(self, x, prefix=prompts, prefix_logits=self.task_adaptive)
        shared, base, dropped = attn.proj.streams(attended.windows)
        a = x + self.drop_path1(attn.proj_drop(to_image(self, shared, height, width)))
        normed = self.norm2(a)
        shared, fc1_base, _ = mlp.fc1.streams(normed)
        hidden = self._hidden(shared)
        shared, fc2_base, _ = mlp.fc2.streams(hidden)
        out = a + self.drop_path2(mlp.drop2(shared))

        pooled = attn.proj(attended.prefix).view(batch, -1, *prompts.shape[1:]).mean(1)
        if self.update_prompts:  # no attention residual: the MLP reads the attention output
            pooled = prompts + self.drop_path2(mlp(self.norm2(pooled)))
        state = state.with_main(out).with_tokens(**{TOKEN: pooled})
        if not self.task_adaptive:
            return state
        tasks = self._tasks(x, attended.prefix_logits, dropped, (base, fc1_base, fc2_base))
        return Streams(out, tasks, state.tokens)

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        mlp = self.mlp
        return mlp.norm(mlp.drop1(mlp.act(x)))

    def _tasks(self, x, logits, o, bases) -> torch.Tensor:
        """The task streams (T*B, H, W, C) of a task-adaptive block.

        Args:
            x: the block's input (B, H, W, C).
            logits: the raw prompt logits (B*nW, heads, T, N).
            o: the window attention output through proj's dropout (B*nW, N, C).
            bases: ``W x + b`` of proj, fc1 and fc2 from their shared (undropped) inputs.
        """
        attn, mlp = self.attn, self.mlp
        batch, height, width, channels = x.shape
        count = logits.shape[2]
        proj_base, fc1_base, fc2_base = bases
        # m_t[b, c, n] = GELU(q_t . k_n) of head c // d, times o[b, n, c]: channel-major
        gates = F.gelu(logits).permute(2, 0, 1, 3)  # (T, B*nW, heads, N)
        gates = gates.repeat_interleave(channels // attn.num_heads, 2)
        modulated = gates * o.transpose(1, 2)  # (T, B*nW, C, N)
        inputs = attn.proj.tad_prompt_norm(o + modulated.transpose(-1, -2))
        window = self.window_size
        proj = attn.proj.task_outputs(proj_base, inputs, *window)  # per window
        rows = len(proj) * batch
        a = x + self.drop_path1(attn.proj_drop(
            to_image(self, proj.flatten(0, 1), height, width))).view(count, *x.shape)
        a = a.flatten(0, 1)  # (T*B, H, W, C)

        fc1, fc2 = mlp.fc1, mlp.fc2
        maps = (batch, height * width)
        task_in = self.norm2(a).view(count, *maps, channels)
        hidden = self._hidden(fc1.task_outputs(fc1_base.view(*maps, -1), task_in, height, width))
        f2 = mlp.drop2(fc2.task_outputs(fc2_base.view(*maps, -1), hidden, height, width))
        out = a + self.drop_path2(f2.view(rows, height, width, channels))
        if self.skip == 'none':
            return out
        skip = modulated.reshape(-1, window[0] * window[1], channels) \
            if self.skip_layout == 'reference' else modulated.transpose(-1, -2).flatten(0, 1)
        skip = to_image(self, skip, height, width)
        if self.skip == 'mean':
            return (skip + out) / 2
        gate = torch.sigmoid(self.tad_gate)
        return gate * skip + (1 - gate) * out


def _per_stage(option: str, value, valid, kind: str) -> List:
    """One value for every stage, or a list with one per stage."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * NUM_STAGES
    if len(values) != NUM_STAGES or not all(valid(v) for v in values):
        raise StrategyError(f'TADFormer: {option} must be {kind} or a list of {NUM_STAGES} '
                            f'(one per stage), got {value!r}', strategy='TADFormer',
                            option=option)
    return values


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _choice(option: str, value, choices) -> str:
    if value not in choices:
        raise StrategyError(f'TADFormer: {option} must be one of {choices}, got {value!r}',
                            strategy='TADFormer', option=option)
    return value


class TADFormer(AdapterStrategy):
    """TADFormer on a 4-stage timm Swin V1 backbone (see the module docstring).

    Args:
        rank: r of every TADLinear: one for all stages or a list of 4.
        scale: s (it multiplies B A directly): a number or a list of 4.
        dropout: dropout on the input of the shared low-rank branches: number or list of 4.
        filter: 'static' (a learned depthwise 3x3 per task: the released code) or 'dynamic'
            (an input-conditioned kernel: the paper's Dynamic Task Filter).
        skip: the stage-wise skip of the task streams: 'gated' (learned gate), 'mean' (gate
            fixed at 1/2) or 'none' (the reference's ABLATION flags (True, True),
            (True, False), (False, -)).
        skip_layout: 'reference' (the skip reads the channel-major modulated map as
            tokens x channels, as the authors' code does) or 'fixed' (transposed).
        trainable: extra backbone parts to keep trainable (see ``AdapterStrategy``).
    """

    prefixes = ('tad_',)
    task_streams = True

    def __init__(self, rank=16, scale=4.0, dropout=0.05, filter: str = 'static',
                 skip: str = 'gated', skip_layout: str = 'reference',
                 trainable: Patterns = None):
        super().__init__(trainable=trainable)
        self.rank = _per_stage('rank', rank, lambda v: isinstance(v, int)
                               and not isinstance(v, bool) and v > 0, 'a positive integer')
        self.scale = _per_stage('scale', scale, _is_number, 'a number')
        self.dropout = _per_stage('dropout', dropout, lambda v: _is_number(v) and 0 <= v < 1,
                                  'a number in [0, 1)')
        self.filter = _choice('filter', filter, FILTERS)
        self.skip = _choice('skip', skip, SKIPS)
        self.skip_layout = _choice('skip_layout', skip_layout, SKIP_LAYOUTS)
        self.tasks: List[str] = []

    def apply(self, model: nn.Module) -> None:
        backbone = model.backbone
        stages = self._stages(backbone)
        tasks = list(model.tasks)
        self.tasks = tasks  # the order of the prompts, for converting checkpoints
        streams = backbone.streams.with_tasks(tasks, owner='TADFormer').with_token(
            TOKEN, merge=_up_prompts, start=_start_prompts, owner='TADFormer')
        like = backbone.patch_embed.proj.weight
        prompts = torch.ones(len(tasks), stages[0].blocks[0].dim, device=like.device,
                             dtype=like.dtype)
        backbone.tad_prompts = nn.Parameter(nn.init.trunc_normal_(prompts, mean=1.0, std=1.0))
        for i, stage in enumerate(stages):
            options = dict(rank=self.rank[i], scale=self.scale[i], dropout=self.dropout[i])
            for j, block in enumerate(stage.blocks):
                last = j == len(stage.blocks) - 1
                self._adapt_block(block, tasks, options, last)
                TADBlock.adopt(block, last, not (last and i == len(stages) - 1), self.skip,
                               self.skip_layout)
            if i:  # timm's merge opening stage i maps stage i-1's prompts
                merge = stage.downsample
                up = nn.Linear(merge.reduction.in_features // 4, merge.reduction.out_features,
                               bias=False, device=like.device, dtype=like.dtype)
                nn.init.trunc_normal_(up.weight, std=0.02)
                merge.tad_prompts_up = up
        backbone.streams = streams
        self.mark_trainable(backbone, self._trained_names(backbone))

    def _adapt_block(self, block: nn.Module, tasks: List[str], options: dict,
                     task_adaptive: bool) -> None:
        attn, mlp = block.attn, block.mlp
        like = attn.qkv.weight
        rank = options['rank']

        def task_filter():
            if not task_adaptive:
                return None
            return DynamicFilter(rank, like) if self.filter == 'dynamic' \
                else StaticFilters(tasks, rank, like)
        attn.qkv = TADLinear(attn.qkv, **options)
        attn.proj = TADLinear(attn.proj, **options, task_filter=task_filter())
        mlp.fc1 = TADLinear(mlp.fc1, **options, task_filter=task_filter())
        mlp.fc2 = TADLinear(mlp.fc2, **options, task_filter=task_filter())
        # every block has one, as in the reference; only the task-adaptive ones use it
        attn.proj.tad_prompt_norm = nn.LayerNorm(block.dim, device=like.device,
                                                 dtype=like.dtype)
        if task_adaptive and self.skip == 'gated':
            block.tad_gate = nn.Parameter(torch.zeros(1, device=like.device, dtype=like.dtype))

    def convert_state_dict(self, state_dict: dict) -> Optional[dict]:
        """A checkpoint of the authors' code (its state dict, or the whole file) in this
        model's keys (``convert.py``); None for any other state dict."""
        return convert_loaded(state_dict, self.filter, self.tasks)

    def adapted_layers(self, model: nn.Module) -> List[TADLinear]:
        return [m for m in model.backbone.modules() if isinstance(m, TADLinear)]

    def merged_extra_state_dict(self, model: nn.Module):
        """What a merged model needs besides the backbone's own weights: every parameter of
        TADFormer's own (prompts, norms, gates, filters, up-projections) and the low-rank
        matrices of the layers ``merge`` left unfolded (those with a task branch)."""
        state = {}
        folded = {name for name, layer in model.backbone.named_modules()
                  if isinstance(layer, TADLinear) and layer.merged}
        for name, value in model.backbone.named_parameters():
            module, _, local = name.rpartition('.')
            if local.startswith('tad_lora_') and module in folded:
                continue
            if any(part.startswith(self.prefixes) for part in name.split('.')):
                state[name] = value.detach()
        return state

    # ------------------------------------------------------------------ helpers
    def _trained_names(self, backbone: nn.Module) -> List[str]:
        norms = {f'{module_name}.{name}' for module_name, module in backbone.named_modules()
                 if isinstance(module, nn.LayerNorm) for name, _ in module.named_parameters()}
        return [name for name, _ in backbone.named_parameters()
                if any(part.startswith(self.prefixes) for part in name.split('.'))
                or name in norms or name.startswith('patch_embed.')
                or name.endswith('.relative_position_bias_table')]

    @staticmethod
    def _stages(backbone: nn.Module):
        stages = getattr(backbone, 'layers', None)
        if (stages is None or len(stages) != NUM_STAGES or not hasattr(backbone, 'streams')
                or not all(type(block) is SwinTransformerBlock
                           for stage in stages for block in stage.blocks)):
            raise StrategyError(f'TADFormer adapts a 4-stage timm Swin V1 backbone '
                                f'(SwinBackbone) with plain timm blocks, not '
                                f'{type(backbone).__name__} (applied twice, or after a '
                                f'strategy that replaces blocks?)', strategy='TADFormer')
        for name, module in backbone.named_modules():
            if name.endswith(('attn.qkv', 'attn.proj', 'mlp.fc1', 'mlp.fc2')) \
                    and type(module) is not nn.Linear:
                raise StrategyError(f'TADFormer: backbone layer {name} is already adapted '
                                    f'({type(module).__name__}); TADFormer adapts plain '
                                    f'nn.Linear', strategy='TADFormer')
            if name.endswith('attn') and (module._forward_hooks or module._forward_pre_hooks):
                raise StrategyError(f'TADFormer: {name} has forward hooks (an Adapter?); '
                                    f'TADFormer computes the attention itself and would skip '
                                    f'them', strategy='TADFormer')
        return stages

    def __repr__(self) -> str:
        return (f'TADFormer(rank={self.rank}, filter={self.filter!r}, skip={self.skip!r}, '
                f'skip_layout={self.skip_layout!r})')
