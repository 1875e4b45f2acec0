"""The strategy contract: how a parameter-efficient method adapts a backbone.

A strategy only changes ``model.backbone``: it injects layers and marks what it
trains. It never touches heads, losses or data. Strategies compose: the model
freezes the whole backbone once, then calls every strategy's ``apply`` in order,
and each one only ever turns ``requires_grad`` ON for its own parts, so the
trainable set of a composition is the union of its members' sets.

Injected layers keep the names of the parameters they wrap (``...attn.qkv.weight`` stays
``...attn.qkv.weight``) and only add their own: pretrained files still load after
injection, and merged exports have plain timm keys. The names a strategy adds start with
its declared ``prefixes`` (``lora_A``, ``adapter.``, ...), which no other strategy's names
start with, so an adapter-only file says whose parameters it holds.

A strategy author needs three helpers: ``match_modules`` (the backbone modules a list of
patterns names, every pattern required to match), ``match_names`` (the same over any list of
names) and ``mark_trainable`` (turn ``requires_grad`` on and remember the names for
``trainable_state_dict``). ``apply`` checks everything it can (every target, its type, an
earlier adaptation) before it changes the first module, so an error leaves the model as it
was.
"""
import re
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..errors import NotMergeableError, StrategyError, UnknownNameError
from ..registry import ADAPTERS, accepted_options

#: Short names for the backbone parts a config commonly keeps trainable (timm Swin names).
TRAINABLE_ALIASES = {
    'norms': r'(.+\.)?norm\d?\.(weight|bias)',
    'patch_embed': r'patch_embed\..+',
    'relative_position_bias': r'.+\.relative_position_bias_table',
    'patch_merging': r'layers\.\d+\.downsample\..+',
}

Patterns = Union[str, Sequence[str], None]


def as_pattern_list(patterns: Patterns) -> List[str]:
    """One pattern or a list of them (None = none)."""
    if patterns is None:
        return []
    return [patterns] if isinstance(patterns, str) else list(patterns)


class AdapterStrategy:
    r"""Base class of the strategies registered in ``adapterkit.registry.ADAPTERS``.

    Args:
        trainable: the option every strategy shares: regex patterns (``re.fullmatch`` on
            backbone parameter names) of extra backbone parts to keep trainable, e.g.
            ``[r'.+\.relative_position_bias_table']``, or the aliases of
            ``TRAINABLE_ALIASES`` (``'norms'``, ``'patch_embed'``,
            ``'relative_position_bias'``, ``'patch_merging'``).
    """

    #: False for a strategy whose deltas cannot be folded into the frozen weights,
    #: with the reason its merge error gives.
    mergeable: bool = True
    not_mergeable_reason: Optional[str] = None
    #: How the names of the parameters this strategy injects begin, after the name of the
    #: module they adapt (``lora_A`` in ``layers.0.blocks.0.attn.qkv.lora_A``); no prefix
    #: of one strategy may begin another strategy's prefix. Empty for a strategy that
    #: injects nothing.
    prefixes: Tuple[str, ...] = ()
    #: True for a strategy that gives the tasks streams of their own in the backbone
    #: (MTLoRA, PerTask): PerTask cannot wrap it.
    task_streams: bool = False

    def __init__(self, trainable: Patterns = None):
        self.trainable = as_pattern_list(trainable)
        self.trained_names: List[str] = []  # backbone parameter names this strategy trains

    def apply(self, model: nn.Module) -> None:
        """Inject into ``model.backbone`` (whose parameters arrive frozen) and mark the
        parameters this strategy trains with ``requires_grad=True``. Raise before changing
        anything when the model cannot take it."""
        raise NotImplementedError

    def adapt(self, model: nn.Module) -> None:
        """``apply``, then the backbone parts named by the shared ``trainable`` option; what
        the model calls. The ``trainable`` patterns are matched first (on the backbone's
        parameters before injection: the option names pretrained parts), so a pattern that
        matches nothing is an error before the model changes."""
        names = [name for name, _ in model.backbone.named_parameters()]
        extra = self.match_names(names, self.trainable, 'trainable', 'backbone parameter',
                                 aliases=TRAINABLE_ALIASES)
        self.apply(model)
        self.mark_trainable(model.backbone, extra)

    def check_mergeable(self, task: Optional[str] = None) -> None:
        """Raise ``NotMergeableError`` with the reason where this strategy cannot merge (for
        ``task``: see ``merge_task``)."""
        if not self.mergeable:
            raise NotMergeableError(
                f'{type(self).__name__} cannot be merged into the backbone weights '
                f'({self.not_mergeable_reason})')

    def merge(self, model: nn.Module) -> None:
        """Fold this strategy's deltas into the frozen weights (inference speed): each of
        its ``adapted_layers`` folds its own."""
        self.check_mergeable()
        for layer in self.adapted_layers(model):
            layer.merge()

    def merge_task(self, model: nn.Module, task: str) -> None:
        """Fold what task ``task`` computes into the frozen weights: ``merge`` for a strategy
        whose tasks share its weights; a strategy whose tasks have weights of their own
        (PerTask) folds that task's. ``unmerge`` undoes it."""
        self.merge(model)

    def unmerge(self, model: nn.Module) -> None:
        """Undo ``merge`` exactly (to fp32 rounding)."""
        self.check_mergeable()
        for layer in self.adapted_layers(model):
            layer.unmerge()

    def adapted_layers(self, model: nn.Module) -> List[nn.Module]:
        """The layers this strategy injected that fold into the frozen weights, each with
        ``merge()`` and ``unmerge()``; none by default."""
        return []

    def trainable_state_dict(self, model: nn.Module) -> Dict[str, torch.Tensor]:
        """What must be saved to restore this adaptation on top of the pretrained backbone,
        keyed by the backbone's own parameter names."""
        params = dict(model.backbone.named_parameters())
        return {name: params[name].detach() for name in self.trained_names}

    def convert_state_dict(self, state_dict: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """A state dict in another layout of this method (a released checkpoint of its
        reference code) in the model's own keys (``backbone.*``, ``heads.*``), or None when
        it is not in such a layout: the default, no conversion.

        The model calls this for each of its strategies, in order, whenever a state dict is
        loaded into it (``load_state_dict``, the Runner's ``load_from`` and ``resume``),
        before the keys are checked, so such a checkpoint loads as it is. ``state_dict`` is
        what the model was given (a whole checkpoint, when it holds no ``state_dict``
        entry); a later strategy sees what an earlier one made of it."""
        return None

    def merged_extra_state_dict(self, model: nn.Module) -> Dict[str, torch.Tensor]:
        """What a merged model still needs besides the backbone's own weights (e.g.
        task-specific branches that cannot fold into shared weights), keyed by backbone
        names; called while merged. Nothing for a strategy that folds completely."""
        return {}

    def peft_form(self, model: nn.Module) -> Optional[Tuple[Dict[str, Any], Dict[str, str]]]:
        """This adaptation as a Hugging Face peft adapter, or None where peft has no
        equivalent (the default): ``(config, names)``, the fields of its peft config
        (``peft_type`` and, for LoRA, ``LoraConfig``'s), and ``{backbone parameter name:
        its name in peft's weights file}`` (without peft's ``base_model.model.`` prefix).
        adapterkit writes and reads peft folders through it (``models/peft.py``), without
        peft installed; raise a ``StrategyError`` for an option peft cannot express."""
        return None

    def mark_trainable(self, backbone: nn.Module, names: Iterable[str]) -> None:
        """Turn ``requires_grad`` on for the backbone parameters ``names`` and remember them
        (``trained_names``, which ``trainable_state_dict`` saves)."""
        params = dict(backbone.named_parameters())
        for name in names:
            params[name].requires_grad_(True)
            if name not in self.trained_names:
                self.trained_names.append(name)

    def match_names(self, names: Iterable[str], patterns: Sequence[str], what: str, kind: str,
                    aliases: Optional[Dict[str, str]] = None) -> List[str]:
        """The ``names`` (in their order) that fullmatch any of ``patterns`` (or the regex an
        alias stands for). A pattern that matches none of them is a config mistake (a typo
        would silently train nothing), so it is an error naming the pattern; ``what`` names
        the option (``'target'``) and ``kind`` what the names are (``'backbone module'``)."""
        names = list(names)
        matched = set()
        for pattern in patterns:
            try:
                regex = re.compile((aliases or {}).get(pattern, pattern))
            except re.error as err:
                raise StrategyError(f'{type(self).__name__}: {what} pattern {pattern!r} is not a '
                                    f'valid regular expression ({err})',
                                    strategy=type(self).__name__, option=what) from None
            hits = {name for name in names if regex.fullmatch(name)}
            if not hits:
                raise StrategyError(f'{type(self).__name__}: {what} pattern {pattern!r} matches '
                                    f'no {kind}', strategy=type(self).__name__, option=what)
            matched |= hits
        return [name for name in names if name in matched]

    def match_modules(self, backbone: nn.Module, patterns: Sequence[str],
                      what: str = 'target') -> Dict[str, nn.Module]:
        """``{name: module}`` of the backbone modules whose names fullmatch one of
        ``patterns`` (timm's names, ``re.fullmatch``), in the backbone's order; every
        pattern must match at least one module (see ``match_names``)."""
        modules = dict(backbone.named_modules())
        matched = self.match_names(modules, patterns, what, 'backbone module')
        return {name: modules[name] for name in matched}

    def __repr__(self) -> str:
        extra = f'trainable={self.trainable!r}' if self.trainable else ''
        return f'{type(self).__name__}({extra})'


def build_strategy(cfg: dict) -> AdapterStrategy:
    """Build one strategy config from ``ADAPTERS`` (built-in or a plugin's). Its type and
    options are checked against the strategy class first, so that an unknown type or a
    misspelled option is one line naming it, the strategy and what it accepts (Python's
    own error would be a TypeError deep in a traceback)."""
    kind = cfg.get('type')
    cls = kind if isinstance(kind, type) else ADAPTERS.get(kind) if kind else None
    if cls is None:
        raise UnknownNameError(f'adapter: unknown strategy {kind!r} (strategies: '
                               f'{", ".join(sorted(ADAPTERS.module_dict))})',
                               strategy=kind, key='model.adapter')
    accepted = accepted_options(cls)
    unknown = [key for key in cfg if key != 'type' and accepted is not None
               and key not in accepted]
    if unknown:
        raise StrategyError(f'{cls.__name__}: unknown option {unknown[0]!r} (options: '
                            f'{", ".join(accepted) or "none"})', strategy=cls.__name__,
                            option=unknown[0])
    return ADAPTERS.build(cfg)
