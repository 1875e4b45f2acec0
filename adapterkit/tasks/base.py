"""The task contract: everything adapterkit knows about one dense-prediction task.

A task owns its target encoding (what the loader/transforms produce), its loss,
the decoding of raw logits into a prediction, and its metrics with their
direction (Δm needs to know whether higher or lower is better). Models, heads and
strategies never special-case a task; they ask the task.
"""
from typing import Dict, List

import numpy as np
import torch


class Task:
    """Base class of every task registered in ``adapterkit.registry.TASKS``.

    Class attributes a subclass sets:
        name: the task key used everywhere (config dicts, ``loss_<name>``, metric keys).
        num_outputs: channels the task's head predicts.
        ignore_index: target value that marks an ignored element (float targets use it too).
        label_kind: how transforms treat the target: 'mask' (integer labels, nearest
            resampling), 'normals' (3-channel unit vectors: cubic, renormalised, x negated
            on horizontal flip) or 'depth' (float map, nearest, 0 = invalid).
        metrics: {metric name: True if higher is better}.
        primary_metric: the metric Δm uses.

    Targets (as the data preprocessor hands them to ``loss`` and ``process``):
        'mask' tasks: LongTensor (B, H, W); 'normals': FloatTensor (B, 3, H, W);
        'depth': FloatTensor (B, 1, H, W).
    """

    name: str = ''
    num_outputs: int = 1
    ignore_index: int = 255
    label_kind: str = 'mask'
    metrics: Dict[str, bool] = {}
    primary_metric: str = ''

    def __init__(self, loss_weight: float = 1.0):
        self.loss_weight = float(loss_weight)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Unweighted scalar loss of raw logits (B, num_outputs, H, W) at target size."""
        raise NotImplementedError

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Prediction from raw logits, batched: class ids, probabilities, unit vectors..."""
        raise NotImplementedError

    def process(self, pred: torch.Tensor, target: torch.Tensor) -> dict:
        """Small, picklable statistics (numpy/float) of ONE image's prediction vs target.

        Statistics from all images (and all ranks) are then reduced by ``compute``,
        so they must be small (a confusion matrix, a few sums), never full maps.
        """
        raise NotImplementedError

    def compute(self, stats: List[dict]) -> Dict[str, float]:
        """Reduce per-image statistics into ``{metric name: value}`` (keys of ``metrics``)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name={self.name!r}, loss_weight={self.loss_weight})'


def as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
