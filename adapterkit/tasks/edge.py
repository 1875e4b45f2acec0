"""Semantic boundaries (binary; one logit)."""
import numpy as np
import torch
from scipy import ndimage

from ..registry import TASKS
from .base import Task, as_numpy, balanced_bce_with_logits, safe_ratio


@TASKS.register_module(name='edge')
class Edge(Task):
    """Edges: balanced BCE with the reference's fixed positive weight 0.95.

    'odsF' is an APPROXIMATION of the BSDS optimal-dataset-scale F-measure (not the
    official benchmark, which matches predicted and true edge pixels one to one after
    thinning): for each threshold t in ``linspace(0.01, 0.99, 99)`` a predicted edge pixel
    (prob >= t) is correct when a ground-truth edge lies within r pixels, and a ground-truth
    edge pixel is recalled when a predicted edge lies within r pixels, with
    r = max(1, round(0.0075 * image diagonal)). The four counts are summed over the set
    per threshold; F = 2PR / (P + R); odsF = 100 * max over thresholds.
    """

    name = 'edge'
    num_outputs = 1
    label_kind = 'mask'
    metrics = {'odsF': True}
    primary_metric = 'odsF'

    pos_weight = 0.95
    thresholds = np.linspace(0.01, 0.99, 99)
    tolerance = 0.0075

    def loss(self, logits, target):
        return balanced_bce_with_logits(logits, target, self.pos_weight, self.ignore_index)

    def decode(self, logits):
        return torch.sigmoid(logits[:, 0])

    def process(self, pred, target):
        prob, target = as_numpy(pred).astype(np.float64), as_numpy(target)
        valid = target != self.ignore_index
        gt = target == 1
        radius = max(1, round(self.tolerance * float(np.hypot(*target.shape))))
        disk = _disk(radius)
        near_gt = ndimage.binary_dilation(gt, structure=disk)
        # Ignored pixels neither count as predictions nor recall a ground-truth edge.
        prob = np.where(valid, prob, -np.inf)
        # Highest probability within r of each ground-truth pixel: recalled while >= t.
        best_near = ndimage.maximum_filter(prob, footprint=disk, mode='constant', cval=-np.inf)
        return {
            'pred_correct': _count_at_least(prob[near_gt], self.thresholds),
            'pred': _count_at_least(prob, self.thresholds),
            'gt_recalled': _count_at_least(best_near[gt], self.thresholds),
            'gt': int(gt.sum()),
        }

    def compute(self, stats):
        if not stats:
            return {'odsF': float('nan')}
        pred_correct = np.sum([s['pred_correct'] for s in stats], axis=0)
        pred = np.sum([s['pred'] for s in stats], axis=0)
        gt_recalled = np.sum([s['gt_recalled'] for s in stats], axis=0)
        gt = sum(s['gt'] for s in stats)
        precision = safe_ratio(pred_correct, pred, empty=0.0)
        recall = safe_ratio(gt_recalled, gt, empty=0.0)
        f = safe_ratio(2 * precision * recall, precision + recall, empty=0.0)
        return {'odsF': float(f.max() * 100)}


def _disk(radius: int) -> np.ndarray:
    offsets = np.arange(-radius, radius + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius ** 2


def _count_at_least(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each threshold, how many of ``values`` are >= it (one sort, not one pass each)."""
    values = np.sort(values.ravel())
    return (values.size - np.searchsorted(values, thresholds, side='left')).astype(np.int64)
