"""MTLoRA (Agiza, Neseem, Reda, CVPR 2024): multi-task low-rank adaptation of a Swin backbone.

Task-agnostic ("shared") LoRA adapts attn.qkv, attn.proj, mlp.fc1 and mlp.fc2 of every block.
The last block of each stage also carries task-specific LoRA on attn.proj, mlp.fc1 and
mlp.fc2, and from there on every task has its own stream: the stage's PatchMerging maps it to
that task's decoder input, while the next stage continues from the shared stream only.

The layers, blocks and strategy are in this module (the folder's ``__init__`` maps the rest):

- ``MTLoRALinear``: a frozen linear layer with the shared low-rank delta and, in a last block,
  one delta per task: the layer math of every ``shared_mode``, merging and unmerging.
- ``MTLoRABlock``: timm's Swin block answering the shared stream and the task streams;
  ``MTLoRASharedBlock`` and ``MTLoRAMlp``: the other blocks and their MLP.
- ``MTLoRA``: the strategy: placement, ranks/scales/dropout per stage and per task, and what
  trains (MTLoRA+ with ``plus=True``).

Streams travel as a pair: the shared stream (B rows) and the task streams stacked
task-major along the batch (T*B rows), so every norm, activation, drop path and the
PatchMerging after the block runs once on all tasks, and nothing is ever concatenated. The
frozen product ``W x + b`` of a layer is computed once, from the shared input; the task
deltas of a layer are batched products for all tasks with hand-written backward passes
(``layers/task_lowrank.py``, and ``ops.py`` for the task MLPs); the window attention is
computed, and put back into the image layout, once (``layers/window_attention.py``). What
backward can cheaply redo is not kept: the task streams' MLP hidden layer, the dropped-out
inputs of the shared low-rank branches of qkv, fc1 and fc2 (from the LayerNorm or GELU input
their own backward keeps), and in the last blocks fc1's frozen product.
The strategy declares the task streams on the backbone (``backbone.streams``, the rules of
``layers/streams.py``): born in the last blocks, ending at the merges in the taps.

Parameter names follow the reference code (``lora_shared_A``, ``lora_tasks_A.<task>``, ...)
while the frozen weights keep timm's names, so a released checkpoint converts by renaming
(``convert.py``).
"""
import contextlib
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from timm.models.swin_transformer import SwinTransformerBlock
from torch import nn

from ...errors import StrategyError
from ...layers.dropout import LoRADropout
from ...layers.recompute import recompute_in_backward
from ...layers.task_lowrank import task_down, task_up
from ...layers.window_attention import window_attention
from ...registry import ADAPTERS
from ..base import AdapterStrategy, Patterns
from .convert import convert_loaded
from .ops import task_hidden_down

SHARED_MODES = ('matrix', 'matrixv2', 'addition', 'lora_only')
NUM_STAGES = 4


def _down_matrix(rank: int, features: int, like: torch.Tensor) -> nn.Parameter:
    """A (rank x in): kaiming-uniform like the reference (B starts at zero, so step 0 is the
    pretrained network)."""
    matrix = torch.empty(rank, features, device=like.device, dtype=like.dtype)
    nn.init.kaiming_uniform_(matrix, a=math.sqrt(5))
    return nn.Parameter(matrix)


def _up_matrix(features: int, rank: int, like: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(torch.zeros(features, rank, device=like.device, dtype=like.dtype))


def _scale(value: float, trainable: bool, like: torch.Tensor):
    return nn.Parameter(torch.tensor([float(value)], device=like.device, dtype=like.dtype)) \
        if trainable else float(value)


def _stack_ranks(matrices: List[torch.Tensor], rank_dim: int) -> torch.Tensor:
    """Stack per-task matrices; smaller ranks are zero-padded (in the stacked copy only, so
    no parameter is added) to the largest, which leaves every product unchanged."""
    rank = max(m.shape[rank_dim] for m in matrices)
    padded = []
    for m in matrices:
        missing = rank - m.shape[rank_dim]
        padded.append(F.pad(m, (0, missing) if rank_dim == 1 else (0, 0, 0, missing))
                      if missing else m)
    return torch.stack(padded)


class MTLoRALinear(nn.Linear):
    """An ``nn.Linear`` (the adapted layer's own frozen weight and bias) with MTLoRA's deltas.

    For the shared input x and optional task inputs x_t, with ``P = W x + b`` computed once:

        y   = P + s   B_s A_s dropout(x)                    (shared output)
        y_t = P + s_t B_t A_t u_t,   u_t = x_t if given, else dropout(x)

    'matrixv2' adds the shared delta to every y_t too; 'addition' has no shared matrices and
    ``y = P + LayerNorm(sum_t y_t)``. Without task branches the layer is plain LoRA and every
    mode is 'matrix' (as in the reference). ``forward_streams`` answers the task outputs
    too; ``forward`` answers the shared output.

    Args:
        linear: the layer to adapt; its weight and bias are adopted as they are.
        rank: shared rank r_s.
        task_ranks: ``{task: r_t}`` in stream order; None for a layer without task branches.
        scale: shared scale s (multiplies B A directly; it is not alpha / r).
        task_scales: ``{task: s_t}``; default s for every task.
        dropout: dropout on the shared input of the low-rank branches.
        shared_mode: 'matrix', 'matrixv2' or 'addition'.
        trainable_scales: learn s and s_t, starting from the given values.
    """

    def __init__(self, linear: nn.Linear, rank: int, task_ranks: Optional[Dict[str, int]] = None,
                 scale: float = 1.0, task_scales: Optional[Dict[str, float]] = None,
                 dropout: float = 0.0, shared_mode: str = 'matrix',
                 trainable_scales: bool = False):
        # built on 'meta' (nothing allocated), then given the adapted layer's tensors
        super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None,
                         device='meta')
        self.weight, self.bias = linear.weight, linear.bias
        if shared_mode not in SHARED_MODES[:3]:
            raise StrategyError(f'MTLoRALinear: shared_mode must be one of {SHARED_MODES[:3]}, '
                                f'got {shared_mode!r}', strategy='MTLoRA', option='shared_mode')
        self.tasks = list(task_ranks or {})
        self.shared_mode = shared_mode if self.tasks else 'matrix'
        weight = self.weight
        if self.shared_mode == 'addition':
            self.lora_norm = nn.LayerNorm(self.out_features, device=weight.device,
                                          dtype=weight.dtype)
        else:
            self.lora_shared_A = _down_matrix(rank, self.in_features, weight)
            self.lora_shared_B = _up_matrix(self.out_features, rank, weight)
            self.lora_shared_scale = _scale(scale, trainable_scales, weight)
        if self.tasks:
            task_scales = task_scales or {task: scale for task in self.tasks}
            # (key, value) pairs keep the stream order (ParameterDict sorts a plain dict)
            self.lora_tasks_A = nn.ParameterDict(
                (t, _down_matrix(r, self.in_features, weight)) for t, r in task_ranks.items())
            self.lora_tasks_B = nn.ParameterDict(
                (t, _up_matrix(self.out_features, r, weight)) for t, r in task_ranks.items())
            scales = {t: _scale(task_scales[t], trainable_scales, weight) for t in self.tasks}
            self.lora_task_scale = nn.ParameterDict(scales.items()) if trainable_scales \
                else scales
        self.lora_dropout = LoRADropout(dropout)
        self.merged = False
        self.train(linear.training)

    # ------------------------------------------------------------------ forward
    # Rows are flattened to 2-D once, so that the low-rank terms can be added in place into
    # the fresh output of the frozen product (no extra pass, no copy in backward).
    def forward(self, x: torch.Tensor, act: Optional[nn.Module] = None) -> torch.Tensor:
        """The shared output (``forward_streams`` also answers the task outputs). With
        ``act``, the layer reads ``act(x)`` (see ``shared_and_base``)."""
        if self.tasks:
            return self.forward_streams(x if act is None else act(x))[0]
        rows = x.reshape(-1, self.in_features)
        return self.shared_and_base(rows, act)[0].view(*x.shape[:-1], self.out_features)

    def forward_streams(self, x: torch.Tensor, x_tasks: Optional[torch.Tensor] = None
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The shared output (B, ..., out) and the task outputs, stacked task-major
        (T*B, ..., out).

        Args:
            x: the shared input (B, ..., in).
            x_tasks: the task inputs stacked task-major (T*B, ..., in), or None for
                ``u_t = dropout(x)``.
        """
        shared, base, dropped = self.shared_and_base(x.reshape(-1, self.in_features))
        inputs = dropped if x_tasks is None else x_tasks.reshape(len(self.tasks), -1,
                                                                  self.in_features)
        tasks = self.task_outputs(base, self.task_low(inputs))
        if self.shared_mode == 'addition':  # base is P, which no one keeps: in place
            shared = shared.add_(self.lora_norm(tasks.sum(0)))
        shape = (*x.shape[:-1], self.out_features)
        return shared.view(shape), tasks.view(-1, *shape[1:])

    def shared_and_base(self, rows: torch.Tensor, act: Optional[nn.Module] = None
                        ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(shared output, base of the task outputs, dropout(input))`` for 2-D rows. The
        base is ``P = W x + b`` ('matrix', 'addition') or the shared output ('matrixv2');
        in 'addition' the shared output is P until ``forward_streams`` completes it.

        With ``act`` (GELU, or a norm) the input is ``act(rows)``: backward then keeps
        ``rows`` (which act's own backward keeps anyway) and redoes the dropped-out input of
        the low-rank branch from them, instead of keeping that input: one (M, in) tensor
        less per layer."""
        inputs = rows if act is None else act(rows)
        frozen = F.linear(inputs, self.weight, self.bias)  # P (+ the shared delta if merged)
        dropped, redo = self.lora_dropout.draw(inputs)
        if self.shared_mode == 'addition' or self.merged:
            return frozen, frozen, dropped
        with contextlib.nullcontext() if act is None else \
                recompute_in_backward(dropped, lambda: redo(act(rows))):
            low = F.linear(dropped, self.lora_shared_A)
        up = (self.lora_shared_B * self.lora_shared_scale).t()  # scaling the smallest tensor
        # addmm(_) outside autocast: cast to the output's (autocast) dtype
        low, up = low.to(frozen.dtype), up.to(frozen.dtype)
        if self.tasks and self.shared_mode == 'matrix':  # the tasks read P: a new output
            return torch.addmm(frozen, low, up), frozen, dropped
        shared = frozen.addmm_(low, up)
        return shared, shared, dropped

    @property
    def task_down_matrix(self) -> torch.Tensor:
        """The tasks' A, stacked (T, r, in); smaller ranks zero-padded to the largest."""
        return _stack_ranks([self.lora_tasks_A[t] for t in self.tasks], rank_dim=0)

    @property
    def task_up_matrix(self) -> torch.Tensor:
        """The tasks' s_t B_t, stacked (T, out, r)."""
        return _stack_ranks([self.lora_tasks_B[t] * self.lora_task_scale[t]
                             for t in self.tasks], rank_dim=1)

    def task_low(self, inputs: torch.Tensor) -> torch.Tensor:
        """``A_t u_t`` of every task, (T, M, r), from inputs (T, M, in), one per task, or
        (M, in), the one input every task reads."""
        return task_down(inputs, self.task_down_matrix)

    def task_outputs(self, base: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        """``base + s_t B_t low_t`` of every task, (T, M, out)."""
        return task_up(base, low, self.task_up_matrix)

    # ------------------------------------------------------------------ merging
    def shared_delta_weight(self) -> torch.Tensor:
        """``s B_s A_s`` in the layout of ``weight``."""
        return self.lora_shared_scale * self.lora_shared_B @ self.lora_shared_A

    @property
    def foldable(self) -> bool:
        """Whether ``merge`` folds the shared delta into the weight. Not in 'addition' (no
        shared delta), nor in a 'matrix' layer with task branches: its task outputs need
        the frozen product ``W x + b`` itself, and its shared output is that product plus
        one low-rank term whether folded (then subtracted for the tasks) or not, so such a
        layer stays as it is: as fast, and exact without any subtraction."""
        return not self.tasks or self.shared_mode == 'matrixv2'

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the shared delta into the frozen weight where ``foldable``. Merged weights
        are for inference: the shared output then skips dropout."""
        if self.foldable and not self.merged:
            self.weight.add_(self.shared_delta_weight())
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.weight.sub_(self.shared_delta_weight())
            self.merged = False

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if self.shared_mode != 'addition':
            text += f', rank={self.lora_shared_A.shape[0]}'
        if self.tasks:
            ranks = {t: self.lora_tasks_A[t].shape[0] for t in self.tasks}
            text += f', task_ranks={ranks}, shared_mode={self.shared_mode!r}'
        return text


class MTLoRAMlp(Mlp):
    """timm's Mlp whose fc2 reads the GELU of fc1's output through ``act``, so that its
    low-rank branch keeps fc1's output (kept for GELU's backward anyway) instead of its
    own dropped-out copy of the hidden layer (see ``MTLoRALinear.shared_and_base``)."""

    @classmethod
    def adopt(cls, mlp: Mlp) -> Mlp:
        """Re-class a plain timm Mlp (GELU, no hidden norm or dropout) in place; any other
        is left as it is."""
        if (type(mlp) is Mlp and type(mlp.act) is nn.GELU and isinstance(mlp.norm, nn.Identity)
                and mlp.drop1.p == 0):
            mlp.__class__ = cls
        return mlp

    def forward(self, x: torch.Tensor, norm: Optional[nn.Module] = None) -> torch.Tensor:
        """The MLP of ``x``, or of ``norm(x)``: then fc1's low-rank branch redoes its input
        from ``x`` (which the norm's backward keeps anyway) rather than keeping it."""
        return self.drop2(self.fc2(self.fc1(x, act=norm), act=self.act))


class MTLoRASharedBlock(SwinTransformerBlock):
    """timm's Swin block with MTLoRALinear layers, computed so that the low-rank branches of
    qkv and fc1 keep nothing of their own for backward: each reads its LayerNorm's output
    through ``act``, redoing it from the norm's input (see ``MTLoRALinear.shared_and_base``).
    The same values as timm's block; the window attention is put back into the image layout
    before ``proj`` (which acts per token), so proj's LoRA dropout draws over the image
    layout instead of the window layout."""

    @classmethod
    def adopt(cls, block: SwinTransformerBlock) -> SwinTransformerBlock:
        """Re-class a timm block in place. Re-classing keeps every module, parameter name,
        buffer and setting (window, shift, mask, input size) exactly timm's, where building a
        new block would have to re-derive them."""
        block.__class__ = cls
        return block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn, mlp = self.attn, self.mlp
        x = x + self.drop_path1(attn.proj_drop(attn.proj(self._attention(x))))
        rows = x.reshape(x.shape[0], -1, x.shape[-1])
        out = mlp(rows, norm=self.norm2) if isinstance(mlp, MTLoRAMlp) \
            else mlp(self.norm2(rows))
        return x + self.drop_path2(out.view(x.shape))

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        """The window attention of ``norm1(x)`` before ``proj``, in the image layout; an
        MTLoRALinear qkv applies norm1 itself (see ``layers.window_attention``)."""
        return window_attention(self, x, isinstance(self.attn.qkv, MTLoRALinear))


class MTLoRABlock(MTLoRASharedBlock):
    """timm's Swin block answering the shared stream and the task streams, as the pair
    ``(shared (B, H, W, C), tasks (T*B, H, W, C), stacked task-major)``, by the reference's
    last-block algebra::

        a   = z + DP(proj(o)),      a_t = z + DP(proj_t(o))
        out = a + DP(fc2(GELU(fc1(LN2(a))))),  out_t = a_t + DP(fc2_t(GELU(fc1_t(LN2(a_t)))))

    where proj_t, fc1_t, fc2_t are the task outputs of the MTLoRALinear layers (their frozen
    product always from the shared input). The window attention o is computed once, and put
    back into the image layout once, before ``proj``: proj acts per token, so its task outputs
    need no window reversal of their own. The same LN2, GELU and drop path serve all streams;
    timm's DropPath draws per row, so every stream gets its own draw, as in the reference.
    """

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        attn = self.attn
        shared, tasks = attn.proj.forward_streams(self._attention(x))
        a = x + self.drop_path1(attn.proj_drop(shared))
        a_tasks = (x + self.drop_path1(attn.proj_drop(tasks)).view(-1, *x.shape)).flatten(0, 1)
        out, out_tasks = self._mlp(a, a_tasks)
        return a + self.drop_path2(out), a_tasks + self.drop_path2(out_tasks)

    def _mlp(self, a: torch.Tensor, a_tasks: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """LN2, fc1, GELU and fc2 of both streams. The task streams go from fc1's low-rank
        term to fc2's through ``task_hidden_down``, which keeps their hidden layer (the
        widest tensors of the block, T x 4C per token) out of memory, and the inputs of
        fc1's low-rank terms are redone from LN2's input in backward rather than kept.
        'addition' needs the task hidden layers themselves (their sum enters the shared
        stream), as does an MLP with a hidden norm or dropout: those take the layers'
        ``forward_streams``."""
        mlp, norm = self.mlp, self.norm2
        fc1, fc2 = mlp.fc1, mlp.fc2
        if (fc1.shared_mode == 'addition' or type(mlp.act) is not nn.GELU
                or not isinstance(mlp.norm, nn.Identity) or mlp.drop1.p > 0):
            hidden = fc1.forward_streams(norm(a), norm(a_tasks))
            hidden = [mlp.norm(mlp.drop1(mlp.act(h))) for h in hidden]
            return tuple(mlp.drop2(h) for h in fc2.forward_streams(*hidden))
        rows = a.reshape(-1, fc1.in_features)
        hidden, base, _ = fc1.shared_and_base(rows, norm)
        x_tasks = norm(a_tasks)
        with recompute_in_backward(x_tasks, lambda: norm(a_tasks)):
            low = fc1.task_low(x_tasks.view(len(fc1.tasks), -1, fc1.in_features))
        # In 'matrix' mode the base is fc1's frozen product alone (4C wide), which nothing
        # else keeps: backward redoes it, one frozen product more, instead of keeping it
        with recompute_in_backward(base, lambda: F.linear(norm(rows), fc1.weight, fc1.bias)) \
                if fc1.shared_mode == 'matrix' else contextlib.nullcontext():
            low = task_hidden_down(base, low, fc1.task_up_matrix, fc2.task_down_matrix,
                                   mlp.act.approximate)
        out, base, _ = fc2.shared_and_base(hidden, mlp.act)
        out_tasks = fc2.task_outputs(base, low)
        return mlp.drop2(out.view(a.shape)), mlp.drop2(out_tasks.view(a_tasks.shape))


def _per_stage(option: str, value, valid, kind: str) -> List:
    """One value for every stage, or a list with one per stage."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * NUM_STAGES
    if len(values) != NUM_STAGES or not all(valid(v) for v in values):
        raise StrategyError(f'MTLoRA: {option} must be {kind} or a list of {NUM_STAGES} '
                            f'(one per stage), got {value!r}', strategy='MTLoRA', option=option)
    return values


def _is_rank(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_dropout(value) -> bool:
    return _is_number(value) and 0 <= value < 1


@ADAPTERS.register_module()
class MTLoRA(AdapterStrategy):
    """MTLoRA, and MTLoRA+ with ``plus=True``, on a Swin V1 backbone, as the reference.

    Placement: shared LoRA on attn.qkv, attn.proj, mlp.fc1 and mlp.fc2 of every block; task
    LoRA on attn.proj, mlp.fc1 and mlp.fc2 of the last block of each stage, which hands every
    task of the model its own stream. MTLoRA+ adds a bias-free shared LoRA on the PatchMerging
    reductions (the merge after stage i takes stage i's rank, scale and dropout).

    Trained: every LoRA matrix (and learnable scale), every LayerNorm, the whole patch
    embedding, every relative-position-bias table and, in MTLoRA but not MTLoRA+, the
    PatchMerging reductions. The qkv, proj and fc biases stay frozen.

    Args:
        rank: shared rank r_s: one for all stages or a list of 4 (one per stage).
        task_rank: task rank r_t: a number, a list of 4, or ``{task: number or list of 4}``
            (covering every task of the model; other tasks are ignored).
        scale: shared scale s (it multiplies B A directly): a number or a list of 4.
        task_scale: task scale s_t, given like ``task_rank``; default ``scale``.
        dropout: dropout on the shared input of the low-rank branches: number or list of 4.
        shared_mode: 'matrix' (the paper's), 'matrixv2' (task outputs also get the shared
            delta), 'addition' (no shared matrices in the task layers; the shared output is
            P + LayerNorm(sum of the task outputs)) or 'lora_only' (no task branches: every
            task gets the shared pyramid).
        trainable_scales: learn s and s_t, starting from the given values.
        plus: MTLoRA+: LoRA on the PatchMerging reductions, which stay frozen.
        trainable: extra backbone parts to keep trainable (see ``AdapterStrategy``).
    """

    prefixes = ('lora_shared_', 'lora_tasks_', 'lora_task_scale', 'lora_norm')
    task_streams = True

    def __init__(self, rank=64, task_rank=4, scale=4.0, task_scale=None, dropout=0.05,
                 shared_mode: str = 'matrix', trainable_scales: bool = False,
                 plus: bool = False, trainable: Patterns = None):
        super().__init__(trainable=trainable)
        if shared_mode not in SHARED_MODES:
            raise StrategyError(f'MTLoRA: shared_mode must be one of {SHARED_MODES}, '
                                f'got {shared_mode!r}', strategy='MTLoRA', option='shared_mode')
        self.rank = _per_stage('rank', rank, _is_rank, 'a positive integer')
        self.scale = _per_stage('scale', scale, _is_number, 'a number')
        self.dropout = _per_stage('dropout', dropout, _is_dropout, 'a number in [0, 1)')
        self.task_rank = task_rank
        self.task_scale = scale if task_scale is None else task_scale
        self._per_task([])  # spell out config mistakes before any model exists
        self.shared_mode = shared_mode
        self.trainable_scales = trainable_scales
        self.plus = plus

    def apply(self, model: nn.Module) -> None:
        backbone = model.backbone
        stages = self._stages(backbone)
        tasks = [] if self.shared_mode == 'lora_only' else list(model.tasks)
        task_rank, task_scale = self._per_task(tasks)
        # task streams born in the last blocks, ending at the merges in the taps
        streams = backbone.streams.with_tasks(tasks, owner='MTLoRA') if tasks \
            else backbone.streams
        for i, stage in enumerate(stages):
            shared = dict(rank=self.rank[i], scale=self.scale[i], dropout=self.dropout[i],
                          trainable_scales=self.trainable_scales)
            for j, block in enumerate(stage.blocks):
                branches = {}
                if tasks and j == len(stage.blocks) - 1:
                    branches = dict(task_ranks={t: task_rank[t][i] for t in tasks},
                                    task_scales={t: task_scale[t][i] for t in tasks},
                                    shared_mode=self.shared_mode)
                block.attn.qkv = MTLoRALinear(block.attn.qkv, **shared)
                block.attn.proj = MTLoRALinear(block.attn.proj, **shared, **branches)
                block.mlp.fc1 = MTLoRALinear(block.mlp.fc1, **shared, **branches)
                block.mlp.fc2 = MTLoRALinear(block.mlp.fc2, **shared, **branches)
                if branches:
                    MTLoRABlock.adopt(block)
                else:
                    MTLoRASharedBlock.adopt(block)
                    MTLoRAMlp.adopt(block.mlp)
            if self.plus and i + 1 < len(stages):  # the merge after stage i (timm: i + 1)
                merge = stages[i + 1].downsample
                merge.reduction = MTLoRALinear(merge.reduction, **shared)
        backbone.streams = streams
        self.mark_trainable(backbone, self._trained_names(backbone))

    def convert_state_dict(self, state_dict: dict) -> Optional[dict]:
        """A released checkpoint of the reference code (its state dict, or the whole file)
        in adapterkit's keys (``convert.py``); None for any other state dict."""
        return convert_loaded(state_dict)

    def merged_extra_state_dict(self, model: nn.Module) -> Dict[str, torch.Tensor]:
        """What a merged model still needs besides the backbone's own weights, keyed by
        backbone names: the task branches (and, where ``merge`` left a layer unfolded, its
        shared matrices). A fresh model of the same config loads a merged backbone plus
        these exactly: its unloaded shared ``B`` matrices are zero."""
        state = {}
        for name, layer in model.backbone.named_modules():
            if isinstance(layer, MTLoRALinear) and layer.tasks:
                state.update({f'{name}.{key}': value.detach()
                              for key, value in layer.state_dict().items()
                              if key not in ('weight', 'bias')
                              and not (layer.merged and key.startswith('lora_shared_'))})
        return state

    # ------------------------------------------------------------------ helpers
    def _trained_names(self, backbone: nn.Module) -> List[str]:
        norms = {f'{module_name}.{name}' for module_name, module in backbone.named_modules()
                 if isinstance(module, nn.LayerNorm) for name, _ in module.named_parameters()}

        def trained(name: str) -> bool:
            return (any(part.startswith(self.prefixes) for part in name.split('.'))
                    or name in norms
                    or name.startswith('patch_embed.')
                    or name.endswith('.relative_position_bias_table')
                    or (not self.plus and name.endswith('.downsample.reduction.weight')))

        return [name for name, _ in backbone.named_parameters() if trained(name)]

    def _per_task(self, tasks: Sequence[str]):
        """``({task: [rank per stage]}, {task: [scale per stage]})`` for ``tasks``."""
        resolved = []
        for option, value, valid, kind in (
                ('task_rank', self.task_rank, _is_rank, 'a positive integer'),
                ('task_scale', self.task_scale, _is_number, 'a number')):
            if isinstance(value, dict):
                per_task = {task: _per_stage(f'{option}.{task}', stages, valid, kind)
                            for task, stages in value.items()}
                missing = [task for task in tasks if task not in per_task]
                if missing:
                    raise StrategyError(f'MTLoRA: {option} has no entry for task {missing[0]!r} '
                                        f'(it must cover every task of the model: {list(tasks)})',
                                        strategy='MTLoRA', option=option, task=missing[0])
            else:
                stages = _per_stage(option, value, valid, kind)
                per_task = {task: stages for task in tasks}
            resolved.append(per_task)
        return resolved

    @staticmethod
    def _stages(backbone: nn.Module):
        stages = getattr(backbone, 'layers', None)
        if (stages is None or len(stages) != NUM_STAGES
                or not all(isinstance(block, SwinTransformerBlock)
                           for stage in stages for block in stage.blocks)):
            raise StrategyError(f'MTLoRA adapts a 4-stage timm Swin V1 backbone (SwinBackbone), '
                                f'not {type(backbone).__name__}', strategy='MTLoRA')
        for name, module in backbone.named_modules():
            if name.endswith(('attn.qkv', 'attn.proj', 'mlp.fc1', 'mlp.fc2')) \
                    and type(module) is not nn.Linear:
                raise StrategyError(f'MTLoRA: backbone layer {name} is already adapted '
                                    f'({type(module).__name__}); MTLoRA adapts plain nn.Linear',
                                    strategy='MTLoRA')
        return stages

    def adapted_layers(self, model: nn.Module) -> List[MTLoRALinear]:
        return [m for m in model.backbone.modules() if isinstance(m, MTLoRALinear)]

    def __repr__(self) -> str:
        return (f'MTLoRA(rank={self.rank}, task_rank={self.task_rank!r}, '
                f'shared_mode={self.shared_mode!r}, plus={self.plus})')
