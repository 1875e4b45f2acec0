"""Swin Transformer V1 backbone built from timm, answering one feature pyramid per task.

Module and state-dict names equal timm's (``patch_embed.*``, ``layers.{i}.blocks.{j}.*``,
``layers.{i}.downsample.*``) so adapter target patterns and checkpoints line up. The
classifier head and the final LayerNorm are dropped: the four taps never use them.
"""
import inspect
import os.path as osp
from typing import List, Optional, Tuple

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from torch.utils.checkpoint import checkpoint
from timm.models.swin_transformer import PatchMerging, SwinTransformer, checkpoint_filter_fn

from adapterkit.compat import load_checkpoint_file
from adapterkit.errors import (CheckpointError, ConfigError, MissingFileError, StrategyError,
                               UnknownNameError)
from adapterkit.layouts import MICROSOFT_MERGE_KEY, layout
from adapterkit.models.checkpoint import check_keys
from adapterkit.layers.projected_map import ProjectedMap
from adapterkit.layers.recompute import recompute_in_backward
from adapterkit.layers.streams import StreamPolicy, Streams, stack
from adapterkit.registry import MODELS

# What `pretrained` takes, for the line that refuses anything else.
_PRETRAINED = ("Swin weights in Microsoft's or timm's layout (.pth or .safetensors, bare or "
               "under 'model'/'state_dict'), or an adapterkit checkpoint or merged export")


def _unwrap(state_dict):
    """The bare backbone tensor dict: unwrap 'model'/'state_dict'; from a whole-model
    checkpoint (keys under 'backbone.' next to heads/decoders) keep the backbone part."""
    for wrapper in ('model', 'state_dict'):
        if isinstance(state_dict.get(wrapper), dict):
            state_dict = state_dict[wrapper]
    prefix = 'backbone.'
    if any(k.startswith(prefix) for k in state_dict):
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    return state_dict


def _not_swin_weights(raw) -> Optional[str]:
    """Why a loaded checkpoint cannot give a backbone its pretrained weights, or None."""
    found = layout(raw) if isinstance(raw, dict) else None
    if found == 'mtlora-reference':
        return ('an MTLoRA reference checkpoint (give it to load_from or `adapterkit test` '
                'with an MTLoRA config)')
    if found == 'adapterkit' and (raw.get('meta') or {}).get('adapterkit_format') == \
            'adapter-only':
        return 'an adapter-only file holds no backbone weights (give it to `adapterkit test`)'
    return 'no known layout' if found is None else None



def _gather(x: torch.Tensor) -> torch.Tensor:
    """The 2x2 neighbourhoods of ``x`` (B, H, W, C) side by side, (B, H/2, W/2, 4C), in
    timm's PatchMerging order (odd sizes padded)."""
    batch, height, width, channels = x.shape
    if height % 2 or width % 2:  # F.pad copies even when it pads nothing (as timm calls it)
        x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
    return x.reshape(batch, x.shape[1] // 2, 2, x.shape[2] // 2, 2, channels) \
        .permute(0, 1, 3, 4, 2, 5).flatten(3)


def _merge(merge: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm's PatchMerging of ``x`` (B, H, W, C), but whatever keeps the normalized map
    for backward (a trainable or adapted reduction) redoes it from LN's input, which LN keeps
    anyway: one map of the merge's input size less in memory, for one LayerNorm more."""
    if type(merge) is not PatchMerging or not torch.is_grad_enabled():
        return merge(x)
    x = _gather(x)
    normed = merge.norm(x)
    with recompute_in_backward(normed, lambda: merge.norm(x)):
        return merge.reduction(normed)


def _projected_merges(merge: nn.Module, x: torch.Tensor, count: int
                      ) -> Optional[List[ProjectedMap]]:
    """timm's PatchMerging of ``count`` streams stacked along the batch, one
    ``ProjectedMap`` per stream: its normalized map and the (plain, bias-free) reduction
    still to apply, each recomputing its map from LN's input in backward (as ``_merge``).
    None for another kind of merge (an adapted reduction)."""
    reduction = getattr(merge, 'reduction', None)
    if type(merge) is not PatchMerging or type(reduction) is not nn.Linear \
            or reduction.bias is not None:
        return None
    x = _gather(x)
    redo = torch.is_grad_enabled()
    # chunk, not slices: backward then joins the streams' gradients in one copy
    return [ProjectedMap(normed, reduction.weight,
                         (lambda stream=stream: merge.norm(stream)) if redo else None)
            for normed, stream in zip(merge.norm(x).chunk(count), x.chunk(count))]


def _nchw(tap):
    # An NCHW view of the NHWC tokens (channels-last memory, as the reference hands its
    # decoders the maps): no copy, and convolution heads run faster on it.
    return tap if isinstance(tap, ProjectedMap) else tap.permute(0, 3, 1, 2)


def _run_block(block: nn.Module, state: Streams) -> Streams:
    """One block on the state: a block that takes streams gets the whole state; any other
    the main stream's tensor, and it answers a tensor or the pair ``(shared, tasks)``."""
    if getattr(block, 'takes_streams', False):
        return block(state)
    if state.tokens or (state.shared is not None and state.tasks is not None):
        carried = list(state.tokens) or ['a shared and task streams']
        raise StrategyError(f'SwinBackbone: a {type(block).__name__} takes one tensor, but the '
                            f'streams carry {", ".join(carried)}: the strategy that adds them '
                            f'must adapt every block to take the streams (takes_streams)')
    out = block(state.main)
    if isinstance(out, tuple):  # born here: the shared stream and the task streams
        return Streams(*out)
    return state.with_main(out)


@MODELS.register_module()
class SwinBackbone(BaseModule):
    """A timm Swin V1 whose taps are the decoder inputs of MTLoRA.

    Taps: after stage 0's merge (1/8), after stage 1's merge (1/16), after stage 2's merge
    (1/32) and the stage 3 output (1/32), all NCHW, without a final LayerNorm.

    Args:
        arch: any timm Swin V1 model name.
        img_size: input size the model is built for (windows and masks depend on it).
        drop_path_rate: stochastic depth rate.
        pretrained: path to a local checkpoint in Microsoft's or timm's key layout, a torch
            or a safetensors file whatever its suffix (read by content); loaded by
            ``init_weights()``.
        with_cp: activation checkpointing of every Swin block (see
            ``set_grad_checkpointing``).
        fused_attn: window attention through ``F.scaled_dot_product_attention`` (a fused
            kernel where torch has one for the call: faster, and no attention matrix kept
            for backward); False: timm's explicit softmax(q k^T + bias) v.
        init_cfg: mmengine init config.
        **timm_kwargs: passed to ``timm.create_model`` (depths, embed_dim, num_heads,
            window_size, ...).
    """

    answers_projected_maps = True  # forward(..., projected=True): see there

    def __init__(self, arch='swin_tiny_patch4_window7_224', img_size=448, drop_path_rate=0.0,
                 pretrained=None, with_cp=False, fused_attn=True, init_cfg=None,
                 **timm_kwargs):
        super().__init__(init_cfg=init_cfg)
        self.arch = arch
        self.img_size = img_size
        self.drop_path_rate = drop_path_rate
        self.pretrained = pretrained
        self.timm_kwargs = dict(timm_kwargs)

        model = timm.create_model(arch, pretrained=False, img_size=img_size, num_classes=0,
                                  drop_path_rate=drop_path_rate, **timm_kwargs)
        if not isinstance(model, SwinTransformer):
            raise ConfigError(f'SwinBackbone needs a timm Swin V1 model, got {arch!r} '
                              f'({type(model).__name__})', option='arch')
        if len(model.layers) != 4:
            raise ConfigError(f'SwinBackbone needs 4 stages, {arch!r} was built with '
                              f'{len(model.layers)}', option='arch')
        # Keep timm's own modules at the top level so names stay timm's; head and final
        # norm are left behind with the throwaway model.
        self.patch_embed = model.patch_embed
        self.layers = model.layers
        for stage in self.layers:  # timm leaves it off for Swin unless told globally
            for block in stage.blocks:
                block.attn.fused_attn = fused_attn

        info = model.feature_info
        self._out_channels = [info[1]['num_chs'], info[2]['num_chs'], info[3]['num_chs'],
                              info[3]['num_chs']]
        self._out_strides = [info[1]['reduction'], info[2]['reduction'],
                             info[3]['reduction'], info[3]['reduction']]
        # The keys a pretrained file must provide. Strategies inject after construction and
        # before init_weights() loads the file; their layers keep the wrapped layers' names
        # and only add new parameters, which a pretrained file does not have.
        self._pretrained_keys = frozenset(self.state_dict())
        # The rules of the streams (layers/streams.py), set by a strategy that gives the tasks
        # streams of their own (MTLoRA, PerTask) or carries tokens (VPT); by default one
        # shared stream.
        self.streams = StreamPolicy()
        self.set_grad_checkpointing(with_cp)

    @classmethod
    def accepted_options(cls) -> List[str]:
        """Its own options, then those of timm's ``SwinTransformer`` (``**timm_kwargs``)
        but the classifier's, which a backbone leaves out (see registry.check_options)."""
        own = list(inspect.signature(cls.__init__).parameters)[1:-1]
        timm_options = list(inspect.signature(SwinTransformer.__init__).parameters)[1:]
        return own + [o for o in timm_options if o not in own + ['num_classes', 'global_pool']]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute every block's activations in the backward pass instead of keeping
        them: less memory for about a third more compute (timm's per-stage switch)."""
        for stage in self.layers:
            stage.grad_checkpointing = enable

    @property
    def stream_tasks(self) -> Optional[List[str]]:
        """The tasks of the task streams, in their stacking order; None: one shared stream."""
        return None if self.streams.tasks is None else list(self.streams.tasks)

    @property
    def out_channels(self):
        """Channels of the four taps: [2C, 4C, 8C, 8C]."""
        return list(self._out_channels)

    @property
    def out_strides(self):
        """Strides of the four taps: [8, 16, 32, 32]."""
        return list(self._out_strides)

    def forward_features(self, x):
        """The shared pyramid: four NCHW maps."""
        taps = self._taps(x)
        if any(shared is None for shared, _ in taps):
            raise StrategyError('SwinBackbone: no shared pyramid: every task has a stream of its '
                                'own from the start; call forward(x, tasks)')
        return [_nchw(shared) for shared, _ in taps]

    def forward(self, x, tasks, projected=False):
        """Return ``{task: [4 maps]}``. Without task streams every task gets the same list
        object; with them (``stream_tasks``) each task gets the maps of its own stream where
        it has one. ``projected``: a task stream's merges may come as ``ProjectedMap`` (for
        heads that read them), with the merge's reduction not yet applied."""
        taps = self._taps(x, projected)
        if self.streams.tasks is None:
            shared = [_nchw(shared) for shared, _ in taps]
            return {task: shared for task in tasks}
        unknown = [task for task in tasks if task not in self.streams.tasks]
        if unknown:
            raise UnknownNameError(f'SwinBackbone: no stream for task {unknown[0]!r}; the '
                                   f'backbone was adapted for {self.stream_tasks}',
                                   task=unknown[0])
        pyramids = {}
        for task in tasks:
            index = self.streams.tasks.index(task)
            pyramids[task] = [_nchw(shared if per_task is None else per_task[index])
                              for shared, per_task in taps]
        return pyramids

    def _taps(self, x, projected=False):
        """The four taps, each the pair ``(shared, per_task)``: the shared stream's map (None
        once every task has a stream of its own) and one map per stream task (None before
        the tasks part ways).

        The units run in order on a ``Streams`` state, by the rules of ``self.streams``
        (``layers/streams.py``): the task streams start by stacking before the unit the
        policy names, or are answered by blocks (MTLoRA's pair ``(shared, tasks)``). A merge
        maps every stream (PatchMerging is per sample) and the tokens by their rules; task
        streams cross into the next stage where the policy says so, otherwise the next
        stage continues from the shared stream and they end in the taps. Maps are NHWC
        tensors, or ``ProjectedMap`` where ``projected`` allows it (task streams that end
        at the merge)."""
        state = self._enter('patch_embed', Streams(shared=x))
        state = state.with_main(self.patch_embed(state.main))
        for name, start in self.streams.token_starts.items():
            state = state.with_tokens(**{name: start(self, state.main)})
        taps = []
        for i, stage in enumerate(self.layers):
            if i:  # timm's merge opens stage i: its output is "after stage i-1's merge"
                state, tap = self._cross(stage.downsample, f'layers.{i}.downsample', state,
                                         projected)
                taps.append(tap)
            for j, block in enumerate(stage.blocks):
                state = self._enter(f'layers.{i}.blocks.{j}', state)
                if stage.grad_checkpointing and torch.is_grad_enabled():
                    # non-reentrant, so that adapters inside frozen blocks still get their
                    # gradients when the input (a frozen patch embedding's output) needs none
                    state = checkpoint(_run_block, block, state, use_reentrant=False)
                else:
                    state = _run_block(block, state)
        taps.append((state.shared, self._split(state.tasks)))
        return taps

    def _enter(self, unit: str, state: Streams) -> Streams:
        """The state before ``unit``: stacked into the task streams where they start."""
        if unit == self.streams.start and state.tasks is None:
            return stack(state, self.streams.count)
        return state

    def _cross(self, merge: nn.Module, unit: str, state: Streams, projected: bool
               ) -> Tuple[Streams, tuple]:
        """The state after the stage merge ``merge`` (named ``unit``), and its tap."""
        state = self._enter(unit, state)
        policy = self.streams
        shared = None if state.shared is None else _merge(merge, state.shared)
        tasks = per_task = None
        if state.tasks is not None and policy.through_stages:
            tasks = _merge(merge, state.tasks)
            per_task = self._split(tasks)
        elif state.tasks is not None:  # they end here, in the taps
            per_task = projected and _projected_merges(merge, state.tasks, policy.count)
            per_task = per_task or self._split(_merge(merge, state.tasks))
        tokens = {name: policy.token_merges[name](merge, value)
                  for name, value in state.tokens.items()}
        state = Streams(shared, tasks).with_tokens(
            **{name: value for name, value in tokens.items() if value is not None})
        return state, (shared, per_task)

    def _split(self, tasks: Optional[torch.Tensor]):
        # chunk, not slices: backward then joins the streams' gradients in one copy
        return None if tasks is None else tasks.chunk(self.streams.count)

    def init_weights(self):
        first_call = not self._is_init
        super().init_weights()
        # The pretrained file overrides init_cfg; loaded once, like mmengine's own init.
        if self.pretrained and first_call:
            self.load_pretrained(self.pretrained)

    # ------------------------------------------------------------ checkpoints
    def convert_state_dict(self, state_dict):
        """Turn a Swin checkpoint's state dict (Microsoft's or timm's layout, optionally under
        'model'/'state_dict' and/or a 'backbone.' prefix) into this backbone's key layout.

        Microsoft's layout is converted by timm's ``checkpoint_filter_fn``: it moves the
        merge of stage i to ``layers.{i+1}.downsample``, drops the recomputed buffers
        (relative_position_index, attn_mask) and resizes relative position bias tables and
        the patch-embed kernel when they differ from this model. It only reads
        ``patch_embed.proj.weight`` and attention submodules, which this backbone has under
        timm's names, so the backbone itself is passed as its ``model``.
        """
        state_dict = _unwrap(state_dict)
        # A bias table of a block this model lacks would crash the filter's submodule
        # lookup; keep it aside so the strict check reports it as unexpected instead.
        modules = dict(self.named_modules())
        orphans = {k: v for k, v in state_dict.items()
                   if k.endswith('relative_position_bias_table')
                   and k.rsplit('.', 1)[0] not in modules}
        kept = {k: v for k, v in state_dict.items() if k not in orphans}
        converted = checkpoint_filter_fn(kept, self)
        converted.update(orphans)
        # classifier head and final norm are not part of the backbone
        return {k: v for k, v in converted.items() if not k.startswith(('head.', 'norm.'))}

    def load_pretrained(self, path):
        """Load a local checkpoint strictly; one clear error line if it does not fit."""
        path = str(path)
        if not osp.isfile(path):
            raise MissingFileError(f'pretrained checkpoint not found: {path}', file=path)
        raw = load_checkpoint_file(path, map_location='cpu')  # by content, not suffix
        refusal = _not_swin_weights(raw)
        if refusal:
            raise CheckpointError(f'{path}: not Swin weights: {refusal}; '
                                  f'model.backbone.pretrained takes {_PRETRAINED}', file=path)
        flat = _unwrap(raw)
        state_dict = self.convert_state_dict(flat)

        own = {k: v for k, v in self.state_dict().items() if k in self._pretrained_keys}
        check_keys(path, state_dict, own, f'SwinBackbone({self.arch!r})')

        self.load_state_dict(state_dict, strict=False)
        name = 'Microsoft' if MICROSOFT_MERGE_KEY in flat else 'timm'
        MMLogger.get_current_instance().info(
            f'SwinBackbone: loaded {len(state_dict)} tensors from {path} ({name} layout)')
