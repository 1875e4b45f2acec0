"""A data set restricted to some of its images, by id: an explicit list, or a held-out part.

``SubsetDataset(dataset=dict(type=..., ...), ids=[...])`` keeps the listed ids;
``holdout=dict(fraction=0.2, seed=0), part='heldout'`` keeps a fixed fraction of the list
drawn by id, ``part='rest'`` the other images. It wraps any data set whose items carry an
``img_id`` (PASCAL-MT, NYUD-MT, a plugin's), so no data set needs an option of its own.

Decisions worth knowing:

* The held-out part is drawn by id, not by position: the ids are ranked by the SHA-256 of
  ``'<seed>:<id>'`` and the first ``round(fraction * n)`` (at least one, and at least one
  left) are held out. The same ids are held out whatever the order of the list and on every
  machine, and ``rest`` and ``heldout`` of one ``holdout`` are disjoint and cover the list.
* ``adapterkit compare`` holds out a part of the *train* list to choose a method's
  hyper-parameters (``search``), so that the reported validation set is never used to
  choose anything.
"""
import copy
import hashlib
from typing import List, Optional, Sequence

from ..errors import ConfigError, DataError
from ..registry import DATASETS

PARTS = ('rest', 'heldout')


def holdout_ids(ids: Sequence[str], fraction: float, seed: int = 0) -> List[str]:
    """The ids of ``ids`` held out by ``fraction`` and ``seed`` (see the module docstring),
    in the order of ``ids``."""
    if not 0 < fraction < 1:
        raise ConfigError(f'SubsetDataset: holdout fraction must be between 0 and 1, got '
                          f'{fraction!r}', key='holdout.fraction')
    if len(ids) < 2:
        raise DataError(f'SubsetDataset: cannot hold out part of a list of {len(ids)} '
                        'image(s): it needs at least 2')
    count = min(max(1, round(fraction * len(ids))), len(ids) - 1)
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f'{seed}:{i}'.encode()).hexdigest())
    chosen = set(ranked[:count])
    return [i for i in ids if i in chosen]


@DATASETS.register_module()
class SubsetDataset:
    """``dataset`` (a config dict or a built data set) restricted by ``ids`` or by
    ``holdout=dict(fraction=..., seed=...)`` and ``part`` ('rest' or 'heldout').

    Items, metainfo and length are those of the wrapped data set's kept images, in its
    order.
    """

    def __init__(self, dataset, ids: Optional[Sequence[str]] = None,
                 holdout: Optional[dict] = None, part: Optional[str] = None):
        if (ids is None) == (holdout is None):
            raise ConfigError('SubsetDataset: give either ids=[...] or holdout=dict(fraction='
                              '..., seed=...) with part=...', key='ids')
        if holdout is not None and part not in PARTS:
            raise ConfigError(f'SubsetDataset: part must be one of {PARTS} with holdout, got '
                              f'{part!r}', key='part')
        unknown = sorted(set(holdout or {}) - {'fraction', 'seed'})
        if unknown:
            raise ConfigError(f'SubsetDataset: unknown holdout key {unknown[0]!r} (fraction, '
                              'seed)', key='holdout')
        self.dataset = (DATASETS.build(copy.deepcopy(dataset)) if isinstance(dataset, dict)
                        else dataset)
        self.dataset.full_init()
        all_ids = [self.dataset.get_data_info(i)['img_id'] for i in range(len(self.dataset))]
        if holdout is not None:
            held = set(holdout_ids(all_ids, holdout['fraction'], holdout.get('seed', 0)))
            keep = held if part == 'heldout' else set(all_ids) - held
        else:
            keep = set(ids)
            missing = [i for i in ids if i not in set(all_ids)]
            if missing:
                raise DataError(f'SubsetDataset: id {missing[0]!r} is not in the data set '
                                f'({len(missing)} of {len(ids)} missing)')
        self.indices = [k for k, i in enumerate(all_ids) if i in keep]
        self.ids = [all_ids[k] for k in self.indices]

    @property
    def metainfo(self) -> dict:
        return self.dataset.metainfo

    def full_init(self) -> None:
        """Built whole in ``__init__`` (the Runner calls this on every data set)."""

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(self.indices[idx])

    def __getitem__(self, idx: int):
        return self.dataset[self.indices[idx]]

    def __len__(self) -> int:
        return len(self.indices)
