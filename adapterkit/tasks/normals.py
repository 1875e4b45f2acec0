"""Surface normals (unit vectors; ignored pixels hold 255 in every channel)."""
import numpy as np
import torch

from ..registry import TASKS
from .base import Task, as_numpy, masked_mean


def unit_vectors(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``F.normalize(x, dim=1)``: x / max(|x|, eps) over channels. Spelled out, as torch's
    vector norm over the channels of an NCHW map is 7x slower on CPU (a strided reduction)."""
    return x / x.pow(2).sum(1, keepdim=True).clamp_min(eps * eps).sqrt()


@TASKS.register_module(name='normals')
class Normals(Task):
    """Surface normals, metrics on the angular error in degrees over valid pixels.

    'mean' (primary; the column papers label "rmse" is this mean), 'rmse' (root of the
    mean squared error) and the % of pixels strictly below 11.25/22.5/30 degrees are
    exact over the whole set; 'median' comes from a histogram with 0.1-degree bins
    (bin centres, so it is exact to 0.05 degree).
    """

    name = 'normals'
    num_outputs = 3
    label_kind = 'normals'
    metrics = {'mean': False, 'median': False, 'rmse': False, '11.25': True, '22.5': True, '30': True}
    primary_metric = 'mean'

    within = (11.25, 22.5, 30.0)
    bins_per_degree = 10

    def loss(self, logits, target):
        pred = unit_vectors(logits)
        # Mean over valid elements (3 per valid pixel), as the reference.
        return masked_mean((pred - target).abs(), target != self.ignore_index)

    def decode(self, logits):
        return unit_vectors(logits)

    def process(self, pred, target):
        pred = as_numpy(pred).reshape(3, -1).astype(np.float64)
        target = as_numpy(target).reshape(3, -1).astype(np.float64)
        target_norm = np.linalg.norm(target, axis=0)
        valid = (target != self.ignore_index).all(0) & (target_norm > 0)
        pred, target = pred[:, valid], target[:, valid] / target_norm[valid]
        # A zero prediction stays zero (90 degrees from everything) instead of NaN.
        pred = pred / np.maximum(np.linalg.norm(pred, axis=0), 1e-12)
        cos = np.clip((pred * target).sum(0), -1.0, 1.0)
        error = np.degrees(np.arccos(cos))
        num_bins = 180 * self.bins_per_degree
        bins = np.minimum((error * self.bins_per_degree).astype(np.int64), num_bins - 1)
        return {
            'sum': float(error.sum()),
            'sum_sq': float((error ** 2).sum()),
            'count': int(error.size),
            'within': np.array([(error < t).sum() for t in self.within], dtype=np.int64),
            # int32: a 448x448 image has far fewer than 2**31 pixels; halves what is gathered.
            'hist': np.bincount(bins, minlength=num_bins).astype(np.int32),
        }

    def compute(self, stats):
        count = sum(s['count'] for s in stats)
        if count == 0:
            return {key: float('nan') for key in self.metrics}
        hist = np.sum([s['hist'] for s in stats], axis=0, dtype=np.int64)
        within = np.sum([s['within'] for s in stats], axis=0)
        result = {
            'mean': sum(s['sum'] for s in stats) / count,
            'median': self._median(hist, count),
            'rmse': float(np.sqrt(sum(s['sum_sq'] for s in stats) / count)),
        }
        for threshold, n in zip(self.within, within):
            result[f'{threshold:g}'] = float(n / count * 100)
        return result

    def _median(self, hist: np.ndarray, count: int) -> float:
        """Median as the mean of the bin centres holding the two middle ranks."""
        cumulative = np.cumsum(hist)
        middle = np.array([(count - 1) // 2, count // 2])
        bins = np.searchsorted(cumulative, middle + 1)
        return float(np.mean((bins + 0.5) / self.bins_per_degree))
