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
    one batched tensor on the model's device. Other sample fields become per-image lists
    (collate transposes per-image tuples such as ``img_shape``; they are zipped back).
    """

    def __init__(self, mean: Sequence[float] = (123.675, 116.28, 103.53),
                 std: Sequence[float] = (58.395, 57.12, 57.375), non_blocking: bool = False):
        super().__init__(non_blocking=non_blocking)
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), False)

    def forward(self, data: dict, training: bool = False) -> dict:
        inputs = data['inputs']
        if isinstance(inputs, (list, tuple)):
            inputs = torch.stack(list(inputs))
        inputs = self.cast_data(inputs).float()
        inputs = (inputs - self.mean) / self.std
        samples = {key: _per_image(value)
                   for key, value in (data.get('data_samples') or {}).items()}
        gt = samples.get('gt')
        if gt is not None:
            samples['gt'] = {task: self.cast_data(torch.stack(list(t)) if isinstance(t, (list, tuple))
                                                  else t)
                             for task, t in gt.items()}
        return dict(inputs=inputs, data_samples=samples)


def _per_image(value):
    """Undo pseudo_collate's transposition of per-image tuples: [(H1, H2), (W1, W2)] ->
    [(H1, W1), (H2, W2)]."""
    if isinstance(value, list) and value and all(isinstance(v, (tuple, list)) for v in value):
        return [tuple(v) for v in zip(*value)]
    return value
