"""Data sets (PASCAL-MT, NYUD-MT), multi-task transforms and the synthetic data generator."""
from .nyud_mt import NYUDMTDataset
from .pascal_mt import PascalMTDataset
from .synthetic import synthesize
from .transforms import (MultiTaskRandomAffine, MultiTaskRandomFlip, MultiTaskRandomScaleRotate,
                         MultiTaskResize, PackMultiTaskInputs)

__all__ = ['NYUDMTDataset', 'PascalMTDataset', 'MultiTaskRandomAffine', 'MultiTaskRandomFlip',
           'MultiTaskRandomScaleRotate', 'MultiTaskResize', 'PackMultiTaskInputs', 'synthesize']
