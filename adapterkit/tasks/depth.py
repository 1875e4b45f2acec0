"""Depth in metres (0 = invalid)."""
import numpy as np

from ..registry import TASKS
from .base import Task, as_numpy, masked_mean


@TASKS.register_module(name='depth')
class Depth(Task):
    """Depth: L1 loss and rmse / mean absolute error over all valid pixels of the set.

    As in the reference evaluator, predictions <= 0 are raised to 1e-9 before scoring
    (a depth is positive); the loss sees the raw output.
    """

    name = 'depth'
    num_outputs = 1
    label_kind = 'depth'
    metrics = {'rmse': False, 'abs_err': False}
    primary_metric = 'rmse'

    min_depth = 1e-9

    def loss(self, logits, target):
        return masked_mean((logits - target).abs(), target > 0)

    def decode(self, logits):
        return logits[:, 0]

    def process(self, pred, target):
        pred = as_numpy(pred).ravel().astype(np.float64)
        target = as_numpy(target).ravel().astype(np.float64)
        valid = target > 0
        error = np.maximum(pred[valid], self.min_depth) - target[valid]
        return {'sum_sq': float((error ** 2).sum()), 'sum_abs': float(np.abs(error).sum()),
                'count': int(valid.sum())}

    def compute(self, stats):
        count = sum(s['count'] for s in stats)
        if count == 0:
            return {'rmse': float('nan'), 'abs_err': float('nan')}
        return {'rmse': float(np.sqrt(sum(s['sum_sq'] for s in stats) / count)),
                'abs_err': sum(s['sum_abs'] for s in stats) / count}
