"""Data sets (PASCAL-MT, NYUD-MT, id subsets of any), multi-task transforms and the synthetic
data generator."""
from .nyud_mt import NYUDMTDataset
from .pascal_mt import PascalMTDataset
from .subset import SubsetDataset, holdout_ids
from .synthetic import synthesize
from .transforms import (MultiTaskRandomAffine, MultiTaskRandomFlip, MultiTaskRandomScaleRotate,
                         MultiTaskResize, PackMultiTaskInputs)

__all__ = ['NYUDMTDataset', 'PascalMTDataset', 'SubsetDataset', 'holdout_ids',
           'MultiTaskRandomAffine', 'MultiTaskRandomFlip', 'MultiTaskRandomScaleRotate',
           'MultiTaskResize', 'PackMultiTaskInputs', 'synthesize']
