"""Depth in metres (0 = invalid): NYUD-v2's depth task."""
import numpy as np

from ..registry import TASKS
from .base import Task, as_numpy, masked_mean


@TASKS.register_module(name='depth')
class Depth(Task):
    """Depth: L1 loss over valid pixels; metrics over all valid pixels of the set.

    'rmse' (primary, as in the multi-task literature), 'log_rmse' (natural log, as the
    reference's DepthMeter), 'abs_err' (mean |pred - gt|), 'abs_rel' (mean |pred - gt| / gt)
    and 'delta1' (% of pixels with max(pred / gt, gt / pred) < 1.25, Eigen et al. 2014). As in
    the reference evaluator, predictions <= 0 are raised to 1e-9 before scoring (a depth is
    positive); the loss sees the raw output.
    """

    name = 'depth'
    num_outputs = 1
    label_kind = 'depth'
    metrics = {'rmse': False, 'log_rmse': False, 'abs_err': False, 'abs_rel': False,
               'delta1': True}
    primary_metric = 'rmse'

    min_depth = 1e-9
    delta = 1.25

    def loss(self, logits, target):
        return masked_mean((logits - target).abs(), target > 0)

    def decode(self, logits):
        return logits[:, 0]

    def process(self, pred, target):
        pred = as_numpy(pred).ravel().astype(np.float64)
        target = as_numpy(target).ravel().astype(np.float64)
        valid = target > 0
        pred, target = np.maximum(pred[valid], self.min_depth), target[valid]
        error = pred - target
        ratio = np.maximum(pred / target, target / pred)
        return {'sum_sq': float((error ** 2).sum()), 'sum_abs': float(np.abs(error).sum()),
                'sum_rel': float((np.abs(error) / target).sum()),
                'sum_sq_log': float(((np.log(pred) - np.log(target)) ** 2).sum()),
                'within': int((ratio < self.delta).sum()), 'count': int(valid.sum())}

    def compute(self, stats):
        count = sum(s['count'] for s in stats)
        if count == 0:
            return {key: float('nan') for key in self.metrics}

        def total(key):
            return sum(s[key] for s in stats)

        return {'rmse': float(np.sqrt(total('sum_sq') / count)),
                'log_rmse': float(np.sqrt(total('sum_sq_log') / count)),
                'abs_err': total('sum_abs') / count, 'abs_rel': total('sum_rel') / count,
                'delta1': total('within') / count * 100}
