"""Data sets (PASCAL-MT layout), multi-task transforms and the synthetic data generator."""
from .pascal_mt import PascalMTDataset
from .synthetic import synthesize
from .transforms import (MultiTaskRandomAffine, MultiTaskRandomFlip, MultiTaskRandomScaleRotate,
                         MultiTaskResize, PackMultiTaskInputs)

__all__ = ['PascalMTDataset', 'MultiTaskRandomAffine', 'MultiTaskRandomFlip',
           'MultiTaskRandomScaleRotate', 'MultiTaskResize', 'PackMultiTaskInputs', 'synthesize']
