"""PHM adapters, Compacter and Compacter++ (Mahabadi et al., NeurIPS 2021, arXiv 2106.04647):
bottleneck adapters whose two projections are PHM layers (``phm.py``).

Each is a preset of ``Adapter`` (AdapterHub's ``CompacterConfig`` idea: the same adapter
with other defaults), with the authors' released settings where they fit a Swin:

- ``PHMAdapter``: full ``B_i``, every PHM layer its own rules (n^3 each); Houlsby placement.
- ``Compacter``: ``B_i`` of rank 1 and **one** rule tensor (n, n, n) for the whole backbone,
  shared by the down and up projections of every adapter of every stage, as the authors
  share it across all T5 layers; Houlsby placement.
- ``CompacterPlusPlus``: Compacter after the MLP only (Pfeiffer placement).

Swin's widths change per stage (96 ... 768 on Swin-T) but the rules do not depend on the
width, only the ``B_i`` do, so one shared tensor spans every stage unchanged;
``share_rule='stage'`` gives one per stage instead (an ablation). n must divide every
adapted width and bottleneck width: at n = 4, reduction factor 4 gives bottlenecks 24, 48,
96, 192 on Swin-T (the NLP factor 32 would give 3 at stage 0).

Names: the adapter is the child ``phm_adapter`` / ``compacter`` / ``compacter_pp`` of the
sublayer it follows, and a shared rule tensor lives on the backbone under the same name
(``compacter.rule``, shape (groups, n, n, n)), so every parameter of a preset starts with
its prefix. Not mergeable: the adapters are nonlinear.
"""
import re
from typing import Dict, Optional, Tuple

from torch import nn

from ...registry import ADAPTERS
from .adapter import Adapter, BottleneckAdapter
from .phm import PHMLinear, SharedRules

#: Where the rules of the PHM layers live: each layer its own, one tensor per stage
#: (``layers.{i}``), or one tensor for the whole backbone.
RULE_SCOPES = ('layer', 'stage', 'model')


@ADAPTERS.register_module()
class PHMAdapter(Adapter):
    """Bottleneck adapters with PHM projections ``x H + b``, ``H = sum_i A_i (x) B_i``.

    Args:
        reduction_factor: as ``Adapter``'s, default 4 (bottlenecks 24 ... 192 on Swin-T).
        phm_dim: n, the number of Kronecker terms; it must divide every adapted width and
            bottleneck width.
        rank: None for full ``B_i`` (PHM); r for ``B_i`` of rank r (Compacter's LPHM).
        share_rule: ``'layer'`` (every PHM layer its own rules), ``'stage'`` (one rule tensor
            per stage) or ``'model'`` (one for the whole backbone).
        rule_std: standard deviation of the rules' normal initialisation.
        **options: the other options of ``Adapter`` (``placement``, ``targets``,
            ``bottleneck``, ``activation``, ``trainable``).
    """

    child = 'phm_adapter'
    prefixes = ('phm_adapter.',)

    def __init__(self, reduction_factor=4, phm_dim: int = 4, rank: Optional[int] = None,
                 share_rule: str = 'layer', rule_std: float = 0.01, **options):
        super().__init__(reduction_factor=reduction_factor, **options)
        if not isinstance(phm_dim, int) or phm_dim < 1:
            raise self.error(f'phm_dim must be a positive integer, got {phm_dim!r}', 'phm_dim')
        if rank is not None and (not isinstance(rank, int) or rank < 1):
            raise self.error(f'rank must be a positive integer or None (full), got {rank!r}',
                             'rank')
        if share_rule not in RULE_SCOPES:
            raise self.error(f'unknown share_rule {share_rule!r} (choose from '
                             f'{", ".join(RULE_SCOPES)})', 'share_rule')
        self.phm_dim, self.rank = phm_dim, rank
        self.share_rule, self.rule_std = share_rule, float(rule_std)
        self._shared: Optional[SharedRules] = None  # the rules of the apply under way
        self._groups: Dict[str, int] = {}  # target -> its group of the shared rules

    def prepare(self, backbone: nn.Module, widths: Dict[str, Tuple[int, int]]) -> None:
        for name, (dim, width) in widths.items():
            for what, features in (('width', dim), ('bottleneck width', width)):
                if features % self.phm_dim:
                    raise self.error(
                        f'phm_dim={self.phm_dim} does not divide the {what} {features} of '
                        f'{name}; choose a phm_dim, reduction_factor or bottleneck that gives '
                        f'widths divisible by phm_dim', 'phm_dim')
        if self.share_rule == 'layer':
            return
        if hasattr(backbone, self.child):
            raise self.error(f'the backbone has shared rules {self.child!r} already; apply '
                             f'{type(self).__name__} once', 'targets')
        keys = {name: self._group_key(name) for name in widths}
        order = sorted(set(keys.values()))
        self._groups = {name: order.index(key) for name, key in keys.items()}
        self._shared = SharedRules(len(order), self.phm_dim, self.rule_std)
        setattr(backbone, self.child, self._shared)
        self.mark_trainable(backbone, [f'{self.child}.rule'])

    def adapter_module(self, name: str, dim: int, width: int) -> nn.Module:
        shared = None if self._shared is None else (self._shared, self._groups[name])

        def phm(features_in: int, features_out: int) -> PHMLinear:
            return PHMLinear(features_in, features_out, self.phm_dim, self.rank,
                             self.rule_std, shared)

        return BottleneckAdapter(dim, width, self.activation, down=phm(dim, width),
                                 up=phm(width, dim))

    def _group_key(self, name: str) -> int:
        """The stage of target ``name`` (``'stage'``), or 0 (``'model'``)."""
        if self.share_rule == 'model':
            return 0
        stage = re.match(r'layers\.(\d+)\.', name)
        if stage is None:
            raise self.error(f"share_rule='stage' needs targets inside a stage layers.{{i}}; "
                             f'{name} is not', 'share_rule')
        return int(stage.group(1))


@ADAPTERS.register_module()
class Compacter(PHMAdapter):
    """PHM adapters with rank-1 ``B_i = s_i t_i^T`` and one rule tensor for the whole
    backbone (Compacter). Options as ``PHMAdapter``'s, with these defaults."""

    child = 'compacter'
    prefixes = ('compacter.',)

    def __init__(self, rank: Optional[int] = 1, share_rule: str = 'model',
                 rule_std: float = 1e-4, **options):
        super().__init__(rank=rank, share_rule=share_rule, rule_std=rule_std, **options)


@ADAPTERS.register_module()
class CompacterPlusPlus(Compacter):
    """Compacter after the MLP of every block only (Compacter++). Options as
    ``PHMAdapter``'s, with Compacter's defaults and the Pfeiffer placement."""

    child = 'compacter_pp'
    prefixes = ('compacter_pp.',)

    def __init__(self, placement: str = 'pfeiffer', **options):
        super().__init__(placement=placement, **options)
