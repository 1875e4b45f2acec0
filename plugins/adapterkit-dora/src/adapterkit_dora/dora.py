"""DoRA: weight-decomposed low-rank adaptation (Liu et al., 2024).

A pretrained weight W (out x in) is split into a magnitude and a direction; the
direction is adapted with a low-rank update and renormalised, the magnitude is learnt
on its own:

    W' = m * V / ||V||,   V = W + s * B @ A,   s = alpha / rank

with ||V|| the L2 norm of every output unit's row (over the input dimension) and m one
scalar per output unit. m starts at ||W|| and B at zero, so an adapted network starts
exactly as the pretrained one; A starts kaiming-uniform, as in LoRA.

The parameters it adds are ``dora_A``, ``dora_B`` and ``dora_magnitude`` (its prefix
``dora_``, which no other strategy uses). It is built from adapterkit's public API only:
``AdapterStrategy`` and its helpers ``match_modules`` and ``mark_trainable``.
"""
import math
from typing import List, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from adapterkit.adapters import SWIN_BLOCK_LINEARS, AdapterStrategy
from adapterkit.errors import StrategyError


class DoRALinear(nn.Module):
    """An ``nn.Linear`` with DoRA. ``weight`` and ``bias`` are the wrapped layer's own
    (frozen) parameters under their own names; ``dora_A``, ``dora_B`` and
    ``dora_magnitude`` are added."""

    trained = ('dora_A', 'dora_B', 'dora_magnitude')

    def __init__(self, base: nn.Linear, rank: int, scale: float):
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.scale = scale
        self.register_parameter('weight', base.weight)
        self.register_parameter('bias', base.bias)
        like = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.dora_A = nn.Parameter(torch.empty(rank, self.in_features, **like))
        self.dora_B = nn.Parameter(torch.zeros(self.out_features, rank, **like))
        self.dora_magnitude = nn.Parameter(self.weight.detach().norm(dim=1))
        nn.init.kaiming_uniform_(self.dora_A, a=math.sqrt(5))
        self.merged_norm = None  # ||V|| when merged: unmerge needs it to recover W exactly

    @property
    def merged(self) -> bool:
        return self.merged_norm is not None

    def _direction(self):
        """V = W + s * B @ A and its row norms."""
        v = self.weight + self.scale * (self.dora_B @ self.dora_A)
        return v, v.norm(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return F.linear(x, self.weight, self.bias)
        v, norm = self._direction()
        return F.linear(x, self.dora_magnitude[:, None] * v / norm, self.bias)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold m * V / ||V|| into ``weight``."""
        if self.merged:
            return
        v, norm = self._direction()
        self.weight.copy_(self.dora_magnitude[:, None] * v / norm)
        self.merged_norm = norm

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore W: V = W' * ||V|| / m, W = V - s * B @ A."""
        if not self.merged:
            return
        v = self.weight * self.merged_norm / self.dora_magnitude[:, None]
        self.weight.copy_(v - self.scale * (self.dora_B @ self.dora_A))
        self.merged_norm = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # A pretrained file (loaded after injection) replaces W without a magnitude:
        # start m again at the new ||W||, so step 0 is still the pretrained network.
        if prefix + 'weight' in state_dict and prefix + 'dora_magnitude' not in state_dict:
            with torch.no_grad():
                self.dora_magnitude.copy_(self.weight.norm(dim=1))

    def extra_repr(self) -> str:
        return (f'in_features={self.in_features}, out_features={self.out_features}, '
                f'rank={self.dora_A.shape[0]}, scale={self.scale:g}')


class DoRA(AdapterStrategy):
    """DoRA on the backbone's linear layers whose names fullmatch one of ``targets``.

    Args:
        targets: regular expressions over backbone module names (timm's names, e.g.
            ``layers.0.blocks.1.attn.qkv``); default: every linear layer of every block
            (adapterkit's ``SWIN_BLOCK_LINEARS``).
        rank: rank of the low-rank direction update.
        alpha: the update is scaled by ``alpha / rank``.
        **options: the options every adapterkit strategy shares (see ``AdapterStrategy``).
    """

    prefixes = ('dora_',)

    def __init__(self, targets: Union[str, Sequence[str]] = SWIN_BLOCK_LINEARS, rank: int = 4,
                 alpha: float = 4.0, **options):
        super().__init__(**options)
        if not isinstance(rank, int) or rank < 1:
            raise StrategyError(f'DoRA: rank must be a positive integer, got {rank!r}',
                                strategy='DoRA', option='rank')
        self.targets = [targets] if isinstance(targets, str) else list(targets)
        self.rank = rank
        self.scale = alpha / rank
        self.layer_names: List[str] = []

    def apply(self, model: nn.Module) -> None:
        backbone = model.backbone
        targets = self.match_modules(backbone, self.targets)  # every pattern must match
        for name, module in targets.items():  # check every target before replacing any
            if isinstance(module, DoRALinear):
                raise StrategyError(f'DoRA: target {name} has DoRA already; apply DoRA once',
                                    strategy='DoRA', option='targets')
            if type(module) is not nn.Linear:  # a subclass may compute something else
                raise StrategyError(f'DoRA: target {name} is a {type(module).__name__}; '
                                    'DoRA adapts nn.Linear layers only',
                                    strategy='DoRA', option='targets')
        for name, module in targets.items():
            parent, _, attr = name.rpartition('.')
            setattr(backbone.get_submodule(parent), attr,
                    DoRALinear(module, self.rank, self.scale))
            self.layer_names.append(name)
            self.mark_trainable(backbone, [f'{name}.{p}' for p in DoRALinear.trained])

    def adapted_layers(self, model: nn.Module) -> List[DoRALinear]:
        return [model.backbone.get_submodule(name) for name in self.layer_names]

    def peft_form(self, model: nn.Module):
        """Hugging Face peft's LoRA with ``use_dora``: the same W' = m V / ||V||, its
        factors ``lora_A`` / ``lora_B`` and magnitude ``lora_magnitude_vector``."""
        if self.trainable:
            raise StrategyError('DoRA: peft has no equivalent of `trainable`; export as '
                                'adapterkit files instead', strategy='DoRA', option='trainable')
        config = dict(peft_type='LORA', r=self.rank, lora_alpha=self.scale * self.rank,
                      lora_dropout=0.0, bias='none', use_rslora=False, use_dora=True,
                      fan_in_fan_out=False, modules_to_save=None, rank_pattern={},
                      alpha_pattern={}, target_modules='|'.join(f'(?:{t})' for t in self.targets))
        peft_names = dict(dora_A='lora_A.weight', dora_B='lora_B.weight',
                          dora_magnitude='lora_magnitude_vector')
        names = {f'{name}.{ours}': f'{name}.{theirs}'
                 for name in self.layer_names for ours, theirs in peft_names.items()}
        return config, names

    def __repr__(self) -> str:
        return f'DoRA(targets={self.targets}, rank={self.rank}, scale={self.scale:g})'
