"""The task contract: everything adapterkit knows about one dense-prediction task.

A task owns its target encoding (what the loader/transforms produce), its loss,
the decoding of raw logits into a prediction, and its metrics with their
direction (Δm needs to know whether higher or lower is better). Models, heads and
strategies never special-case a task; they ask the task.
"""
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, UnknownNameError
from ..registry import TASKS


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


def safe_ratio(num, den, empty: float) -> np.ndarray:
    """``num / den`` elementwise as float64, ``empty`` where ``den`` is 0."""
    num, den = np.broadcast_arrays(np.asarray(num, np.float64), np.asarray(den, np.float64))
    out = np.full(num.shape, empty, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the elements where ``mask`` is True.

    With no valid element it returns an exact 0 that is still connected to the graph,
    so a batch without labels for a task (e.g. no person for human parts) adds nothing
    instead of NaN. Dividing by the clamped count avoids a host sync on ``mask.any()``.
    """
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


def balanced_bce_with_logits(logits: torch.Tensor, target: torch.Tensor, pos_weight=None,
                             ignore_index: int = 255) -> torch.Tensor:
    """Class-balanced binary cross-entropy of one-logit maps (HED style).

    Args:
        logits: (B, 1, H, W) raw logits.
        target: (B, H, W) labels 0/1, ``ignore_index`` where ignored.
        pos_weight: weight w of the positive elements; None computes it per batch as
            #negatives / #valid (saliency), edges use a fixed 0.95.

    Returns ``(w * sum_pos + (1 - w) * sum_neg) / target.numel()``: the reference divides by
    the whole label tensor size, ignored elements included; they contribute 0 to the sums.
    """
    logits = logits[:, 0]
    valid = target != ignore_index
    positive = (target >= 0.5) & valid
    negative = valid & ~positive
    # binary_cross_entropy_with_logits uses the stable max(x, 0) - x*y + log(1 + exp(-|x|)).
    per_element = F.binary_cross_entropy_with_logits(logits, positive.to(logits.dtype),
                                                     reduction='none')
    if pos_weight is None:
        pos_weight = negative.sum() / valid.sum().clamp(min=1)
    loss_pos = (per_element * positive).sum()
    loss_neg = (per_element * negative).sum()
    return (pos_weight * loss_pos + (1 - pos_weight) * loss_neg) / target.numel()


class SegmentationTask(Task):
    """Shared body of the class-label tasks (semantic segmentation, human parts).

    Loss: cross-entropy averaged over valid pixels. Metric: mIoU from a confusion matrix
    summed over the whole set; a class absent from both the prediction and the ground
    truth of the whole set has no IoU and is skipped in the mean (on real PASCAL every
    class occurs, so this equals the reference mean over all classes).
    """

    def loss(self, logits, target):
        per_pixel = F.cross_entropy(logits, target, ignore_index=self.ignore_index,
                                    reduction='none')
        return masked_mean(per_pixel, target != self.ignore_index)

    def decode(self, logits):
        return logits.argmax(dim=1)

    def process(self, pred, target):
        pred, target = as_numpy(pred).ravel(), as_numpy(target).ravel()
        n = self.num_outputs
        valid = target != self.ignore_index
        # Row = ground truth, column = prediction.
        index = target[valid].astype(np.int64) * n + pred[valid].astype(np.int64)
        confusion = np.bincount(index, minlength=n * n).reshape(n, n)
        return {'confusion': confusion.astype(np.int64)}

    def compute(self, stats):
        n = self.num_outputs
        confusion = sum((s['confusion'] for s in stats), np.zeros((n, n), np.int64))
        true_pos = np.diag(confusion)
        union = confusion.sum(0) + confusion.sum(1) - true_pos
        present = union > 0
        if not present.any():
            return {'mIoU': float('nan')}
        return {'mIoU': float(np.mean(true_pos[present] / union[present]) * 100)}


def build_tasks(tasks) -> Dict[str, 'Task']:
    """``{name: Task}`` from a list of names or ``{name: config dict or Task}``.

    A config without ``type`` takes its key as the type. The key must be the task's name:
    losses, predictions and targets are all looked up by it.
    """
    if not isinstance(tasks, dict):
        tasks = {name: {} for name in tasks}
    built = {}
    for key, task in tasks.items():
        if not isinstance(task, Task):
            cfg = dict(task or {})
            cfg.setdefault('type', key)
            if TASKS.get(cfg['type']) is None:
                raise UnknownNameError(f"unknown task {cfg['type']!r} (tasks.{key}); known tasks: "
                                       f"{', '.join(sorted(TASKS.module_dict))}", task=key)
            task = TASKS.build(cfg)
        if task.name != key:
            raise ConfigError(f'tasks.{key}: builds task {task.name!r}; the key must be the '
                              'task name', task=key)
        built[key] = task
    if not built:
        raise ConfigError('no tasks given (tasks is empty)', key='model.tasks')
    return built
