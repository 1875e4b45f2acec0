"""Batches what ``PackMultiTaskInputs`` produced: images normalised, targets stacked."""
from typing import Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from ..registry import MODELS


@MODELS.register_module()
class MultiTaskDataPreprocessor(BaseDataPreprocessor):
    """Stack uint8 RGB images, normalise with ``mean``/``std`` (0-255 scale), stack targets.

    mmengine's default collate leaves a batch as lists (and dicts of lists); this turns
    ``inputs`` into a (B, 3, H, W) float tensor and every ``data_samples['gt'][task]`` into
    one batched tensor on the model's device (uint8 label maps into int64, after the copy).
    Other sample fields become per-image lists (collate transposes per-image tuples such as
    ``img_shape``; they are zipped back). Samples that ``MultiTaskRandomAffine(on_device=True)``
    left at their size on disk are resampled here, as one batch (``datasets/device_affine.py``).
    """

    def __init__(self, mean: Sequence[float] = (123.675, 116.28, 103.53),
                 std: Sequence[float] = (58.395, 57.12, 57.375), non_blocking: bool = False):
        super().__init__(non_blocking=non_blocking)
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), False)

    def forward(self, data: dict, training: bool = False) -> dict:
        samples = {key: _per_image(value)
                   for key, value in (data.get('data_samples') or {}).items()}
        if 'affine' in samples:  # MultiTaskRandomAffine(on_device=True) left it to us
            inputs, samples['gt'] = self._affine(data['inputs'], samples)
        else:
            inputs = data['inputs']
            if isinstance(inputs, (list, tuple)):
                inputs = torch.stack(list(inputs))
            inputs = self.cast_data(inputs).float()
            gt = samples.get('gt')
            if gt is not None:
                samples['gt'] = {task: self._target(t) for task, t in gt.items()}
        inputs = (inputs - self.mean) / self.std
        return dict(inputs=inputs, data_samples=samples)

    def _affine(self, inputs, samples: dict):
        """Resample the batch on the device (``datasets/device_affine.py``)."""
        from ..datasets.device_affine import affine_batch
        images = [self.cast_data(img) for img in inputs]
        gt = {task: [self.cast_data(t) for t in maps]
              for task, maps in (samples.get('gt') or {}).items()}
        images, gt = affine_batch(images, gt, samples.pop('affine'))
        return images, {task: t.long() if t.dtype == torch.uint8 else t for task, t in gt.items()}

    def _target(self, target):
        """One task's targets batched on the device; uint8 label maps become int64 there."""
        target = self.cast_data(torch.stack(list(target)) if isinstance(target, (list, tuple))
                                else target)
        return target.long() if target.dtype == torch.uint8 else target


def _per_image(value):
    """Undo pseudo_collate's transposition of per-image tuples: [(H1, H2), (W1, W2)] ->
    [(H1, W1), (H2, W2)]."""
    if isinstance(value, list) and value and all(isinstance(v, (tuple, list)) for v in value):
        return [tuple(v) for v in zip(*value)]
    return value
