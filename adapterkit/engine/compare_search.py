"""Per-member hyper-parameter search of ``adapterkit compare``, on a held-out part of the train
list (never on the validation set that the report shows).

A suite (or one member) declares ``search = dict(lr=[1e-4, 3e-4, 1e-3], weight_decay=[...],
budget='grid', holdout=0.2, seed=0, score='delta_m', final='retrain')``: every key that is
not a setting below is a dimension, a short name (``SHORT_NAMES``) or a dotted config key,
with the list of values to try.

``budget``
    ``'grid'`` (default): every combination; or an integer: that many distinct combinations
    drawn at random (``random.Random(seed)``) from the grid.
``holdout`` / ``seed``
    The fraction of the train list held out for scoring (default 0.2) and the seed of the
    draw (``datasets.subset.holdout_ids``: by id hash). The suite's values hold for every
    member, so that every score is measured on the same images.
``score``
    ``'delta_m'`` (default): Δm on the held-out part against references measured on it too
    (single-task runs trained on the rest of the list, or the suite's fixed references);
    or a metric key ``'<task>/<metric>'`` (its task's direction decides what is better).
``final``
    ``'retrain'`` (default): the best point is trained again on the whole train list, once
    per seed, and reported on val; ``'reuse'``: the best point's own model (trained without
    the held-out images) is reported on val, with one seed only.

Every point trains with the suite's first seed on the train list less the held-out part,
and validates on the held-out part; the best score wins, the first point in grid order on a
tie (``choose_point``).
"""
import copy
import itertools
import random
from typing import Callable, Dict, List, Optional, Sequence

from ..evaluation import delta_m
from ..registry import TASKS

# Short names of the keys a search most often tunes; any dotted config key works as well.
SHORT_NAMES = {
    'lr': 'optim_wrapper.optimizer.lr',
    'weight_decay': 'optim_wrapper.optimizer.weight_decay',
    'batch_size': 'train_dataloader.batch_size',
}
SETTINGS = dict(budget='grid', holdout=0.2, seed=0, score='delta_m', final='retrain')
FINALS = ('retrain', 'reuse')
DELTA_M = 'delta_m'
# The keys a search point's data split changes (not part of what a member may differ in).
SPLIT_KEYS = ('train_dataloader.dataset', 'val_dataloader.dataset')


def parse_search(spec, suite_search: Optional[dict], tasks: Sequence[str], fail,
                 member: bool = False) -> Optional[dict]:
    """A suite's or member's ``search`` as ``dict(space={dotted key: [values]}, names={dotted
    key: name as written}, budget, holdout, seed, score, higher_is_better, final)``.

    For a member (``member=True``), ``suite_search`` is the suite's (None: none): no
    ``search`` inherits it, ``False`` turns it off, and a dict's settings replace the suite's
    while its dimensions, if it names any, replace all of the suite's. ``fail(key,
    message)`` raises.
    """
    if spec is None:
        return suite_search if member else None
    if spec is False and member:
        return None
    if not isinstance(spec, dict):
        fail('search', f'a dict of {{name: [values]}} and settings, got {spec!r}')
    base = copy.deepcopy(suite_search) or dict(SETTINGS, space={}, names={})
    dimensions = {k: v for k, v in spec.items() if k not in SETTINGS}
    if member and ('holdout' in spec or 'seed' in spec):
        fail('search', "the held-out split (holdout, seed) is the suite's, the same for every "
                       'member: set it in the suite\'s search')
    if dimensions:
        base['space'], base['names'] = {}, {}
    for name, values in dimensions.items():
        key = SHORT_NAMES.get(name, name)
        if '.' not in key:
            fail(f'search.{name}', f'not a setting ({", ".join(SETTINGS)}), a short name '
                                   f'({", ".join(SHORT_NAMES)}) or a dotted config key')
        if not isinstance(values, (list, tuple)) or not values:
            fail(f'search.{name}', f'a non-empty list of values to try, got {values!r}')
        base['space'][key], base['names'][key] = list(values), name
    base.update({k: spec[k] for k in SETTINGS if k in spec})
    if member and not base['space']:
        fail('search', 'no dimension to search (e.g. lr=[1e-4, 3e-4, 1e-3]) here or in the '
                       "suite's search")
    _check_settings(base, tasks, fail)
    return base


def member_search(search: Optional[dict]) -> Optional[dict]:
    """The search a member runs: None where there is no dimension to search (a suite's
    search that only sets the held-out split)."""
    return search if search and search['space'] else None


def _check_settings(search: dict, tasks: Sequence[str], fail) -> None:
    budget, size = search['budget'], grid_size(search)
    if budget != 'grid' and not (isinstance(budget, int) and 0 < budget <= max(size, 1)):
        fail('search.budget', f"'grid' or a number of random points from 1 to the grid's "
                              f'{size}, got {budget!r}')
    if not (isinstance(search['holdout'], float) and 0 < search['holdout'] < 1):
        fail('search.holdout', f'a fraction of the train list between 0 and 1, got '
                               f'{search["holdout"]!r}')
    if not isinstance(search['seed'], int):
        fail('search.seed', f'an integer, got {search["seed"]!r}')
    if search['final'] not in FINALS:
        fail('search.final', f'one of {FINALS}, got {search["final"]!r}')
    search['higher_is_better'] = _score_direction(search['score'], tasks, fail)


def _score_direction(score, tasks, fail) -> bool:
    if score == DELTA_M:
        return True
    task, _, metric = str(score).partition('/')
    known = getattr(TASKS.get(task), 'metrics', {}) if task in tasks else {}
    if metric not in known:
        fail('search.score', f"'{DELTA_M}' or '<task>/<metric>' of the suite's tasks "
                             f'({", ".join(tasks)}), got {score!r}')
    return known[metric]


def grid_size(search: dict) -> int:
    size = 1
    for values in search['space'].values():
        size *= len(values)
    return size


def search_points(search: dict) -> List[dict]:
    """The points to train, ``{dotted key: value}`` each, in grid order."""
    keys = list(search['space'])
    grid = [dict(zip(keys, values))
            for values in itertools.product(*(search['space'][k] for k in keys))]
    if search['budget'] == 'grid':
        return grid
    drawn = random.Random(search['seed']).sample(range(len(grid)), search['budget'])
    return [grid[i] for i in sorted(drawn)]


def point_label(search: dict, values: dict) -> str:
    """``lr=0.0003, weight_decay=0.05``, with the names as the suite wrote them."""
    return ', '.join(f'{search["names"].get(k, k)}={v!r}' for k, v in values.items())


def holdout_split(cfg, search: dict):
    """``cfg`` (a Config, changed in place) trained on the train list less the held-out part
    and validated on that part, with the validation pipeline."""
    holdout = dict(fraction=search['holdout'], seed=search['seed'])
    train = cfg.train_dataloader.dataset.to_dict()
    heldout = dict(copy.deepcopy(train), pipeline=cfg.val_dataloader.dataset.to_dict()['pipeline'])
    cfg.merge_from_dict({
        'train_dataloader.dataset': dict(_delete_=True, type='SubsetDataset', dataset=train,
                                         holdout=holdout, part='rest'),
        'val_dataloader.dataset': dict(_delete_=True, type='SubsetDataset', dataset=heldout,
                                       holdout=holdout, part='heldout')})
    return cfg


# ------------------------------------------------------------------ choosing
def point_score(record: dict, search: dict, references: Dict[str, float]) -> Optional[float]:
    """A point's held-out score, signed so that higher is better; None when the run failed
    or Δm has no reference for one of its tasks."""
    if record.get('status') != 'ok':
        return None
    if search['score'] != DELTA_M:
        value = record['metrics'].get(search['score'])
        return None if value is None else (value if search['higher_is_better'] else -value)
    primary = record['primary']
    if any(t not in references for t in primary):
        return None
    return delta_m({t: p['value'] for t, p in primary.items()}, references,
                   {t: p['higher_is_better'] for t, p in primary.items()})


def choose_point(records: Sequence[dict], scorer: Callable[[dict], Optional[float]]
                 ) -> Optional[int]:
    """The index of the record with the best score (``scorer``: higher is better, None for
    no score); the first one on a tie; None when no record has a score."""
    best = None
    for index, record in enumerate(records):
        score = scorer(record)
        if score is not None and (best is None or score > best[0]):
            best = (score, index)
    return None if best is None else best[1]
