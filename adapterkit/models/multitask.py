"""MultiTaskModel: one backbone, one head per task, losses weighted per task.

The flow is one-directional: backbone -> {task: pyramid} -> heads[task] -> logits at
the input size -> tasks[task].loss / decode. Strategies (adapters) change only the
backbone; heads never know which strategy is active.
"""
import copy
from typing import Dict, List, Optional, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import nn

from ..adapters.base import AdapterStrategy, build_strategy
from ..errors import ConfigError, UnknownNameError
from ..layers.projected_map import materialize
from ..registry import MODELS
from .checkpoint import check_on_load
from ..tasks.base import build_tasks

ConfigType = Union[dict, None]


def build_adapters(adapter: Union[dict, List[dict], None]) -> List[AdapterStrategy]:
    """One strategy config, a list of them (applied in order), or None (= Full)."""
    if adapter is None:
        adapter = [dict(type='Full')]
    elif isinstance(adapter, (dict, AdapterStrategy)):
        adapter = [adapter]
    return [a if isinstance(a, AdapterStrategy) else build_strategy(a) for a in adapter]


@MODELS.register_module()
class MultiTaskModel(BaseModel):
    """Multi-task dense prediction with a (possibly adapted) shared backbone.

    Args:
        backbone: backbone config; it must expose ``out_channels`` and answer
            ``backbone(inputs, task_names) -> {task: [maps]}``.
        tasks: ``{name: task cfg}`` (e.g. ``dict(semseg=dict(loss_weight=1.0))``).
        head: head config used for every task (``in_channels`` and ``num_outputs`` are
            filled in per task).
        heads: optional per-task overrides of ``head`` (``{task: cfg}``).
        adapter: a strategy config or a list of them, applied in order; None = Full.
        train_heads: set False to freeze the heads too (e.g. to probe a backbone).
        channels_last: keep the 4-D weights (patch embedding, head convolutions) in NHWC
            memory order, cuDNN's fast layout for bf16/fp16 convolutions on GPUs; the
            backbone's tokens are NHWC already (see docs/distributed.md).
        torch_compile: True or ``torch.compile`` options: compile the backbone and every
            head in place (parameter names and checkpoints stay the same). mmengine's own
            ``cfg.compile`` compiles the whole train step, optimizer included, which
            TorchDynamo fails on in torch 2.14.
    """

    def __init__(self, backbone: dict, tasks: dict, head: dict,
                 heads: Optional[Dict[str, dict]] = None,
                 adapter: Union[dict, List[dict], None] = None,
                 train_heads: bool = True, channels_last: bool = False,
                 torch_compile: Union[bool, dict] = False,
                 data_preprocessor: ConfigType = None, init_cfg: ConfigType = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='MultiTaskDataPreprocessor')
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.tasks = build_tasks(tasks)
        self.backbone = MODELS.build(backbone)

        heads = heads or {}
        unknown = set(heads) - set(self.tasks)
        if unknown:
            raise UnknownNameError(f'heads: no such task {sorted(unknown)[0]!r}; '
                                   f'tasks are {list(self.tasks)}', task=sorted(unknown)[0])
        self.heads = nn.ModuleDict()
        for name, task in self.tasks.items():
            cfg = copy.deepcopy(heads.get(name, head))
            cfg.update(in_channels=list(self.backbone.out_channels), num_outputs=task.num_outputs)
            self.heads[name] = MODELS.build(cfg)

        # Remember the pretrained backbone's own parameters, so that accounting can tell
        # injected adapter parameters from unfrozen pretrained ones.
        self.backbone_base_params = frozenset(n for n, _ in self.backbone.named_parameters())
        self.adapters = build_adapters(adapter)
        self.backbone.requires_grad_(False)
        for strategy in self.adapters:
            strategy.adapt(self)
        self.heads.requires_grad_(train_heads)
        if channels_last:
            self.to(memory_format=torch.channels_last)
        # A backbone that can hand over maps whose last linear map is not yet applied does
        # so (see ProjectedMap); compiled modules exchange plain tensors only.
        self._projected_maps = (getattr(self.backbone, 'answers_projected_maps', False)
                                and not torch_compile)
        if torch_compile:
            options = {} if torch_compile is True else dict(torch_compile)
            for module in (self.backbone, *self.heads.values()):
                module.compile(**options)
        # A strategy may read checkpoints of its method's own layout (converted on the way
        # in: AdapterStrategy.convert_state_dict); then every load is strict (checkpoint.py).
        self.register_load_state_dict_pre_hook(_convert_on_load)
        self.register_load_state_dict_pre_hook(check_on_load)

    # ------------------------------------------------------------------ forward
    def forward(self, inputs: torch.Tensor, data_samples: Optional[dict] = None,
                mode: str = 'tensor'):
        logits = self.predict_logits(inputs)
        if mode == 'tensor':
            return logits
        if mode == 'loss':
            return self.loss(logits, data_samples)
        if mode == 'predict':
            return self.predict(logits, data_samples)
        raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', not {mode!r}")

    def predict_logits(self, inputs: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Raw logits per task at the input resolution."""
        names = list(self.tasks)
        pyramids = self.backbone(inputs, names, projected=True) if self._projected_maps \
            else self.backbone(inputs, names)
        size = inputs.shape[-2:]
        logits = {}
        for name in names:
            head = self.heads[name]
            maps = pyramids[name] if getattr(head, 'reads_projected_maps', False) \
                else materialize(pyramids[name])
            # Heads reading channels-last maps answer channels-last logits; upsampled so,
            # the per-pixel losses over channels run 2x slower: upsample from NCHW (small)
            logits[name] = F.interpolate(head(maps).contiguous(), size=size, mode='bilinear',
                                         align_corners=False)
        return logits

    def loss(self, logits: Dict[str, torch.Tensor], data_samples: dict) -> Dict[str, torch.Tensor]:
        gt = self._targets(data_samples)
        return {f'loss_{name}': task.loss_weight * task.loss(logits[name], gt[name])
                for name, task in self.tasks.items()}

    def predict(self, logits: Dict[str, torch.Tensor], data_samples: Optional[dict]) -> List[dict]:
        """One dict per image: ``{'pred': {task: tensor}, 'gt': {task: tensor}, 'img_id'}``."""
        preds = {name: task.decode(logits[name]) for name, task in self.tasks.items()}
        batch = next(iter(preds.values())).shape[0]
        samples = data_samples or {}
        gt = samples.get('gt') or {}
        img_ids = samples.get('img_id') or [None] * batch
        return [dict(pred={t: p[i] for t, p in preds.items()},
                     gt={t: g[i] for t, g in gt.items() if t in self.tasks},
                     img_id=img_ids[i])
                for i in range(batch)]

    def _targets(self, data_samples: Optional[dict]) -> Dict[str, torch.Tensor]:
        gt = (data_samples or {}).get('gt') or {}
        missing = [name for name in self.tasks if name not in gt]
        if missing:
            raise ConfigError(f'no ground truth for task {missing[0]!r} in the batch: does the '
                              f'dataset load it (dataset tasks must include every model task)?',
                              task=missing[0])
        return gt

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """torch's, under adapterkit's check of what is loaded (``checkpoint.check_on_load``),
        which a direct call with ``strict=False`` on a state of the program's own skips."""
        self.lenient_load = not strict
        try:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        finally:
            self.lenient_load = False

    # ----------------------------------------------------------- adapters
    def merge_adapters(self, task: Optional[str] = None) -> None:
        """Fold every strategy's deltas into the frozen weights; with ``task``, those that
        task computes (a per-task strategy's copies of that task). Refuses before changing
        anything when one of the strategies cannot merge."""
        if task is not None and task not in self.tasks:
            raise UnknownNameError(f'merge: no task {task!r}; tasks are {list(self.tasks)}',
                                   task=task)
        for strategy in self.adapters:
            if task is None:
                strategy.check_mergeable()
            else:
                strategy.check_mergeable(task)
        for strategy in self.adapters:
            if task is None:
                strategy.merge(self)
            else:
                strategy.merge_task(self, task)

    def unmerge_adapters(self) -> None:
        """Undo ``merge_adapters`` (exact to fp32 rounding)."""
        for strategy in reversed(self.adapters):
            strategy.unmerge(self)


def _convert_on_load(model: MultiTaskModel, state_dict: dict, prefix: str, *args) -> None:
    """``load_state_dict`` pre-hook: the model's part of ``state_dict`` goes through every
    strategy's ``convert_state_dict`` in order, and is replaced in place where one
    converted it."""
    mine = {key[len(prefix):]: value for key, value in state_dict.items()
            if isinstance(key, str) and key.startswith(prefix)}
    state = mine
    for strategy in model.adapters:
        converted = strategy.convert_state_dict(state)
        state = state if converted is None else converted
    if state is mine:
        return
    for key in mine:
        del state_dict[prefix + key]
    state_dict.update({prefix + key: value for key, value in state.items()})
