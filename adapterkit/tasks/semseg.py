"""Semantic segmentation (PASCAL: 21 classes, 0 = background; NYUD: 40 classes)."""
from typing import Optional

from ..errors import ConfigError
from ..registry import TASKS
from .base import SegmentationTask


@TASKS.register_module(name='semseg')
class SemSeg(SegmentationTask):
    """``num_classes`` sets the head's outputs and the confusion matrix: 21 by default
    (PASCAL-MT), 40 for NYUD-MT (``tasks=dict(semseg=dict(num_classes=40))``)."""

    name = 'semseg'
    num_outputs = 21
    label_kind = 'mask'
    metrics = {'mIoU': True}
    primary_metric = 'mIoU'

    def __init__(self, loss_weight: float = 1.0, num_classes: Optional[int] = None):
        super().__init__(loss_weight)
        if num_classes is not None:
            if isinstance(num_classes, bool) or not isinstance(num_classes, int) \
                    or num_classes < 2:
                raise ConfigError(f'semseg: num_classes must be an int >= 2, got '
                                  f'{num_classes!r}', task='semseg', option='num_classes')
            self.num_outputs = num_classes
