"""Per-task adaptation (the per-task setting of Polyhistor's benchmark, Liu et al., NeurIPS
2022): every task of the model gets its own copy of any strategy's parameters, over one
frozen backbone.

``PerTask(strategy)`` applies the wrapped strategy once, then gives each of the T tasks its
own copy of every tensor that strategy trains:

- a tensor it injects (LoRA's ``lora_A``, a prompt, an adapter's weight) becomes a stack
  (T, ...) under its own name; every task starts from the strategy's initial value;
- a pretrained tensor it unfreezes (BitFit's biases, a relative-position-bias table) stays
  frozen under its own name, where the pretrained file loads, and gets a trainable stack
  ``pertask_<name>`` beside it, a copy of it for every task whenever pretrained weights load.

Task streams: the backbone runs the tasks as streams stacked task-major along the batch
(``layers/streams.py``), from the first unit (patch embedding, block or merge) that holds a
per-task tensor - every unit before it computes the same for every task, so starting there
is exact - through every stage.

Forward: each module that holds per-task tensors (the outermost such: a pretrained module
holding one, or the module the strategy injected around it: a LoRA layer, an adapter, a
prompt) is re-classed so that it runs once for all tasks under ``torch.func.vmap`` over the
task dimension: its input viewed (T, rows, ...) and, for stream t, task t's slices swapped in
for its tensors. vmap folds the task dimension into the batch of the frozen products (one
call for all tasks) and turns the per-task ones into batched products; backward is plain
autograd on those batched calls. Within such a module:

- random draws are vmap's ``randomness='same'`` (LoRA dropout's C kernel still draws every
  stream's elements on its own, see ``layers/dropout.py``); drop path and every module
  outside it draw per row of the stacked batch as usual;
- scaled-dot-product attention runs torch's math backend (torch has no batching rule for
  its fused CPU kernel).

Task-batched forward: a class may run the T streams itself, faster than vmap can: it
names the tensors it takes per task in ``task_tensors`` and defines ``forward_tasks(tensors,
x, *args, **kwargs)``, x viewed (T, rows, ...), ``tensors`` {name: stack (T, ...)}; PerTask
calls it for a module of exactly that class (not a subclass, which may compute something
else) whose per-task tensors are exactly those, and vmap otherwise. ``LoRALinear`` does:
the frozen product once on all rows with its bias fused, the deltas as one GEMM per task
added into it in place (``layers/task_lowrank.py``).

Limits: a per-task tensor must be read only inside the forward of the module that holds it
(or of the injected module around it), whose first argument holds the stacked streams along
its first dimension. A module that reads another's tensors directly (a block variant reading
its attention's bias table) would see the frozen original: the backbone then stops at its
first forward with an error naming the module that was never called. Ops inside such a
module need vmap batching rules (or vmap's slower per-stream fallback), and custom autograd
Functions a ``vmap`` rule. Strategies that give the tasks streams of their own (MTLoRA) are
refused.

Merging: one backbone holds one task's weights: ``merge_task`` (``adapterkit export --merge
--task NAME``) folds the wrapped strategy's deltas with that task's copies and writes that
task's pretrained copies under their own names; a merge without a task is refused.
"""
import contextlib
from typing import Dict, List, Optional, Set, Tuple

import torch
from torch import nn
from torch.func import vmap
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._pytree import tree_map

from ..errors import NotMergeableError, StrategyError, UnknownNameError
from ..registry import ADAPTERS
from .base import AdapterStrategy, Patterns, build_strategy

PREFIX = 'pertask_'


class PerTaskModule:
    """Put in front of the class of a module that holds per-task tensors: its forward runs
    once for all task streams (see the module docstring). ``pertask_swaps`` pairs the
    relative name of each tensor the module's own code reads with that of its stack."""

    pertask_swaps: Tuple[Tuple[str, str], ...] = ()
    pertask_count = 0
    pertask_merged = False  # merged for one task: the plain forward
    pertask_called = False
    pertask_batched = False  # the module's class runs the streams itself (forward_tasks)

    def forward(self, x, *args, **kwargs):
        forward = super().forward
        if self.pertask_merged:
            return forward(x, *args, **kwargs)
        self.pertask_called = True
        stacks = {target: self.get_parameter(source) for target, source in self.pertask_swaps}
        if self.pertask_batched:
            out = self.forward_tasks(stacks, x.unflatten(0, (self.pertask_count, -1)),
                                     *args, **kwargs)
            return tree_map(lambda t: t.flatten(0, 1), out)

        def stream(tensors, rows):
            with swapped(self, tensors):
                return forward(rows, *args, **kwargs)
        with sdpa_kernel(SDPBackend.MATH):
            out = vmap(stream, randomness='same')(stacks, x.unflatten(0, (self.pertask_count, -1)))
        return tree_map(lambda t: t.flatten(0, 1), out)


_CLASSES: Dict[type, type] = {}


def _per_task_class(cls: type) -> type:
    """``cls`` with ``PerTaskModule`` in front, one class per ``cls``."""
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f'PerTask{cls.__name__}', (PerTaskModule, cls), {})
    return _CLASSES[cls]


@contextlib.contextmanager
def swapped(module: nn.Module, tensors: Dict[str, torch.Tensor]):
    """Within the context, the parameters named ``tensors`` (relative to ``module``) are
    those tensors."""
    saved = []
    try:
        for name, tensor in tensors.items():
            holder, _, leaf = name.rpartition('.')
            holder = module.get_submodule(holder)
            saved.append((holder, leaf, holder._parameters[leaf]))
            holder._parameters[leaf] = tensor
        yield
    finally:
        for holder, leaf, original in reversed(saved):
            holder._parameters[leaf] = original


def _copy_pretrained(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Load pre-hook of a module with per-task copies of its pretrained tensors: a state
    that gives a tensor but not its copies (the pretrained file) gives every task's copy."""
    for name, stack in module._parameters.items():
        source = prefix + name[len(PREFIX):]
        if name.startswith(PREFIX) and prefix + name not in state_dict and source in state_dict:
            value = state_dict[source]
            state_dict[prefix + name] = value.unsqueeze(0).expand(len(stack), *value.shape)


def _check_called(backbone: nn.Module, args, output) -> None:
    """Forward hook of the backbone: every per-task module ran (see the limits above)."""
    for name, module in backbone.named_modules():
        if isinstance(module, PerTaskModule) and not module.pertask_merged:
            if not module.pertask_called:
                raise StrategyError(f'PerTask: {name} holds per-task tensors but was never '
                                    f'called: another module reads its tensors directly, '
                                    f'which cannot be done per task', strategy='PerTask')
            module.pertask_called = False


def _units(backbone: nn.Module) -> List[str]:
    """The names of the backbone's units, in the order they run (``layers/streams.py``)."""
    units = ['patch_embed']
    for i, stage in enumerate(backbone.layers):
        units += [f'layers.{i}.downsample'] if i else []
        units += [f'layers.{i}.blocks.{j}' for j in range(len(stage.blocks))]
    return units


@ADAPTERS.register_module()
class PerTask(AdapterStrategy):
    """Every task of the model gets its own copy of the parameters of ``strategy``.

    Args:
        strategy: the strategy config to copy per task (any registered strategy, plugins'
            included, that gives the tasks no streams of their own).
        trainable: extra backbone parts to keep trainable, shared by the tasks (see
            ``AdapterStrategy``); the wrapped strategy's own ``trainable`` is per task.
    """

    mergeable = False
    prefixes = (PREFIX,)
    task_streams = True

    def __init__(self, strategy: dict, trainable: Patterns = None):
        super().__init__(trainable=trainable)
        if isinstance(strategy, AdapterStrategy):
            self.strategy = strategy
        elif isinstance(strategy, dict) and 'type' in strategy:
            self.strategy = build_strategy(dict(strategy))
        else:
            raise StrategyError(f'PerTask: strategy must be a strategy config '
                                f'(dict(type=...)), got {strategy!r}',
                                strategy='PerTask', option='strategy')
        name = type(self.strategy).__name__
        if self.strategy.task_streams:
            raise StrategyError(f'PerTask: {name} gives the tasks streams of their own; wrap a '
                                f'strategy with one set of parameters', strategy='PerTask',
                                option='strategy')
        # the names this strategy adds: its own stacks, and the wrapped strategy's
        self.prefixes = PerTask.prefixes + type(self.strategy).prefixes
        self.not_mergeable_reason = (
            f'every task has its own {name} weights: merge one task, with `adapterkit export '
            f'--merge --task TASK` or model.merge_adapters(task=TASK)')
        self.tasks: List[str] = []
        # {stack: the pretrained tensor it copies, or None for an injected one}
        self.stacks: Dict[str, Optional[str]] = {}
        self.merged_task: Optional[str] = None
        self._saved: Dict[str, torch.Tensor] = {}  # pretrained values while merged
        self._policy = None  # the backbone's stream rules while merged

    def apply(self, model: nn.Module) -> None:
        backbone = model.backbone
        if backbone.streams.tasks is not None:
            raise StrategyError(f'PerTask: the backbone has task streams already (for '
                                f'{list(backbone.streams.tasks)}); apply PerTask once',
                                strategy='PerTask')
        modules = {name for name, _ in backbone.named_modules()}
        trained_before = {n for n, p in backbone.named_parameters() if p.requires_grad}
        self.strategy.adapt(model)
        trained = self.strategy.trained_names
        shared = [name for name in trained if name in trained_before]
        if shared:
            raise StrategyError(f'PerTask: {shared[0]} is trained by an earlier strategy and '
                                f'per task by PerTask({type(self.strategy).__name__}): train '
                                f'it one way', strategy='PerTask')
        self.tasks = list(model.tasks)
        owners = self._owners(backbone, trained, modules)
        for name in trained:
            self._stack(backbone, name, name in model.backbone_base_params)
        for owner, names in owners.items():
            self._make_per_task(backbone, owner, names, model.backbone_base_params)
        if owners:
            start = next(unit for unit in _units(backbone) + [None]
                         if unit is None or any(o == unit or o.startswith(unit + '.')
                                                for o in owners))
            backbone.streams = backbone.streams.with_tasks(
                self.tasks, start=start or 'patch_embed', through_stages=True, owner='PerTask')
            backbone.register_forward_hook(_check_called)

    # ------------------------------------------------------------------ helpers
    def _stack(self, backbone: nn.Module, name: str, pretrained: bool) -> None:
        """Replace the trained tensor ``name`` by a stack, one copy per task (beside it, for
        a pretrained tensor), and mark the stack trainable."""
        holder_name, _, leaf = name.rpartition('.')
        holder = backbone.get_submodule(holder_name)
        tensor = holder._parameters[leaf]
        stack = nn.Parameter(tensor.detach().unsqueeze(0).repeat(
            len(self.tasks), *([1] * tensor.dim())))
        if pretrained:
            tensor.requires_grad_(False)
            if not any(key.startswith(PREFIX) for key in holder._parameters):
                holder.register_load_state_dict_pre_hook(_copy_pretrained)
            holder.register_parameter(PREFIX + leaf, stack)
            stack_name = f'{holder_name}.{PREFIX}{leaf}'.lstrip('.')
            self.stacks[stack_name] = name
        else:
            setattr(holder, leaf, stack)
            stack_name = name
            self.stacks[name] = None
        self.mark_trainable(backbone, [stack_name])

    @staticmethod
    def _owners(backbone: nn.Module, trained: List[str], modules: Set[str]
                ) -> Dict[str, List[str]]:
        """``{module: [trained tensor names]}``: the outermost modules that run per task.
        The owner of a tensor is the module the strategy injected around it, else the
        pretrained module holding it."""
        owner_of = {}
        for name in trained:
            parts = name.split('.')[:-1]
            owner = '.'.join(parts)
            for i in range(1, len(parts) + 1):
                if '.'.join(parts[:i]) not in modules:  # injected: it and what it holds
                    owner = '.'.join(parts[:i])
                    break
            if not owner:
                raise StrategyError(f'PerTask: the wrapped strategy trains {name}, a tensor of '
                                    f'the backbone itself; PerTask runs per task the modules '
                                    f'that hold such tensors', strategy='PerTask')
            owner_of[name] = owner
        outermost = {o for o in owner_of.values()
                     if not any(o.startswith(other + '.') for other in owner_of.values())}
        owners: Dict[str, List[str]] = {}
        for name, owner in owner_of.items():
            top = next(o for o in outermost if owner == o or owner.startswith(o + '.'))
            owners.setdefault(top, []).append(name)
        return owners

    def _make_per_task(self, backbone: nn.Module, owner: str, names: List[str],
                       base: frozenset) -> None:
        module = backbone.get_submodule(owner)
        swaps = []
        for name in names:
            relative = name[len(owner) + 1:]
            holder, _, leaf = relative.rpartition('.')
            source = f'{holder}.{PREFIX}{leaf}'.lstrip('.') if name in base else relative
            swaps.append((relative, source))
        own = vars(type(module))  # not inherited: a subclass may compute something else
        module.pertask_batched = ('forward_tasks' in own and
                                  set(own.get('task_tensors', ())) == {t for t, _ in swaps})
        module.__class__ = _per_task_class(type(module))
        module.pertask_swaps = tuple(swaps)
        module.pertask_count = len(self.tasks)

    # ------------------------------------------------------------------ merging
    def check_mergeable(self, task: Optional[str] = None) -> None:
        if task is None:
            super().check_mergeable()
        self.strategy.check_mergeable()
        if task not in self.tasks:
            raise UnknownNameError(f'PerTask: no task {task!r} to merge; the tasks are '
                                   f'{self.tasks}', task=task, strategy='PerTask')

    def merge_task(self, model: nn.Module, task: str) -> None:
        """Fold task ``task``'s weights into the backbone: the wrapped strategy's deltas
        with that task's copies, and its copies of pretrained tensors written into them.
        The backbone then runs one stream, that task's, until ``unmerge``."""
        self.check_mergeable(task)
        if self.merged_task is not None:
            raise NotMergeableError(f'PerTask: merged for task {self.merged_task!r} already; '
                                    f'unmerge first')
        index = self.tasks.index(task)
        backbone = model.backbone
        with torch.no_grad(), self._task_tensors(backbone, index):
            self.strategy.merge(model)
            for stack, name in self.stacks.items():
                if name is not None:
                    original = backbone.get_parameter(name)
                    self._saved[name] = original.clone()
                    original.copy_(backbone.get_parameter(stack)[index])
        self._set_merged(backbone, True)
        self._policy, backbone.streams = backbone.streams, backbone.streams._replace(
            tasks=None, start=None, through_stages=False)
        self.merged_task = task

    def unmerge(self, model: nn.Module) -> None:
        """Undo ``merge_task``."""
        if self.merged_task is None:
            return
        backbone = model.backbone
        with torch.no_grad(), self._task_tensors(backbone, self.tasks.index(self.merged_task)):
            self.strategy.unmerge(model)
            for name, value in self._saved.items():
                backbone.get_parameter(name).copy_(value)
        self._saved.clear()
        self._set_merged(backbone, False)
        backbone.streams, self._policy = self._policy, None
        self.merged_task = None

    def merged_extra_state_dict(self, model: nn.Module) -> Dict[str, torch.Tensor]:
        if self.merged_task is None:
            return {}
        with self._task_tensors(model.backbone, self.tasks.index(self.merged_task)):
            return self.strategy.merged_extra_state_dict(model)

    def _task_tensors(self, backbone: nn.Module, index: int):
        """Within this context the wrapped strategy's injected tensors are task ``index``'s
        copies, as the wrapped strategy alone would hold them."""
        return swapped(backbone, {name: backbone.get_parameter(name)[index]
                                  for name, source in self.stacks.items() if source is None})

    @staticmethod
    def _set_merged(backbone: nn.Module, merged: bool) -> None:
        for module in backbone.modules():
            if isinstance(module, PerTaskModule):
                module.pertask_merged = merged

    def __repr__(self) -> str:
        return f'PerTask({self.strategy!r})'
