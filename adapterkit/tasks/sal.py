"""Saliency (binary; one logit)."""
import numpy as np
import torch

from ..registry import TASKS
from .base import Task, as_numpy, balanced_bce_with_logits, safe_ratio


@TASKS.register_module(name='sal')
class Saliency(Task):
    """Saliency with the reference metrics, both taken as the max over thresholds
    ``linspace(0.2, 0.9, 15)`` of the sigmoid probability (``prob >= t`` is salient):

    - 'mIoU': mean over images of the per-image IoU over valid pixels (an image where
      prediction and ground truth are both empty has IoU 1), then the max over thresholds.
    - 'maxF': precision and recall per image and threshold, averaged over images, then
      F = (1 + β²)PR / (β²P + R) with β² = 0.3, max over thresholds. As in the reference
      evaluator, 0/0 counts as 0: precision is 0 when nothing is predicted salient and
      recall is 0 when nothing is salient in the ground truth.
    """

    name = 'sal'
    num_outputs = 1
    label_kind = 'mask'
    metrics = {'mIoU': True, 'maxF': True}
    primary_metric = 'mIoU'

    thresholds = np.linspace(0.2, 0.9, 15)
    beta_sq = 0.3

    def loss(self, logits, target):
        return balanced_bce_with_logits(logits, target, None, self.ignore_index)

    def decode(self, logits):
        return torch.sigmoid(logits[:, 0])

    def process(self, pred, target):
        prob, target = as_numpy(pred).ravel(), as_numpy(target).ravel()
        valid = target != self.ignore_index
        gt = target[valid] == 1
        # (thresholds, valid pixels): every threshold at once.
        salient = prob[valid][None, :] >= self.thresholds[:, None]
        true_pos = (salient & gt).sum(1).astype(np.float64)
        num_pred = salient.sum(1).astype(np.float64)
        num_gt = float(gt.sum())
        union = num_pred + num_gt - true_pos
        return {
            'iou': safe_ratio(true_pos, union, empty=1.0),
            'precision': safe_ratio(true_pos, num_pred, empty=0.0),
            'recall': safe_ratio(true_pos, num_gt, empty=0.0),
        }

    def compute(self, stats):
        if not stats:
            return {'mIoU': float('nan'), 'maxF': float('nan')}
        iou = np.mean([s['iou'] for s in stats], axis=0)
        precision = np.mean([s['precision'] for s in stats], axis=0)
        recall = np.mean([s['recall'] for s in stats], axis=0)
        f = safe_ratio((1 + self.beta_sq) * precision * recall, self.beta_sq * precision + recall,
                   empty=0.0)
        return {'mIoU': float(iou.max() * 100), 'maxF': float(f.max() * 100)}

