"""The suite of ``adapterkit compare``: its file format, the rule that every run is the
same pipeline but for its adapter, and the runs it derives (``plan``: every run's config and
work dir, in order).

A *suite* is an mmengine ``.py`` config with these keys (config paths relative to the suite
file or ``PROVIDER::path``; data roots and work dirs relative to the working directory;
helper variables start with ``_``):

``base``
    The config every run is derived from (required).
``members``
    ``{name: config path | dict(config=path, adapter=dict(...)) | dict(adapter=...)}``
    (required). A member contributes its ``model.adapter`` and nothing else: a member
    config that differs from ``base`` anywhere else is refused, and an ``adapter`` next to
    ``config`` is merged into that config's adapter.
``tasks``
    Task names of the multi-task runs (default: the base config's ``model.tasks``).
``seeds``
    ``[0]`` by default; every run is trained once per seed (``randomness.seed``).
``data``
    ``dict(root=..., synthesize=dict(...))``: the data every run trains and validates on;
    ``synthesize`` (keyword arguments of ``adapterkit.datasets.synthetic.synthesize``)
    writes it when ``root`` does not exist.
``options``
    ``--cfg-options`` style overrides every run shares (schedule, image size, ...).
``references``
    ``'single-task'`` (default): one single-task full fine-tuning run per task and seed on
    the same data, and Δm against their mean; or ``{task: value}`` (published numbers).
``pretrained``
    The backbone file every run starts from (default: the base config's).
``pretrain``
    ``dict(data=dict(root=..., synthesize=...), options=dict(...))``: a pretraining stage
    (full fine-tuning of the base model on all tasks, on other data) whose backbone, saved
    as ``pretrain/backbone.safetensors`` in timm's layout, every run starts from.
``search``
    A hyper-parameter search per member on a held-out part of the train list
    (``compare_search.py``); a member's own ``search`` replaces it (``False``: none).
``published``
    ``{member: {task: value, 'delta_m': value, 'trainable': count}}``: a paper's numbers,
    shown beside the measured ones (any subset of the keys).
``compare_to``
    A member every other one is compared with seed by seed (paired differences).
``executor``
    ``dict(type='serial' | 'local' | 'slurm', ...)``: where the runs run
    (``compare_exec.py``); the command line's options override it.
"""
import copy
import json
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

from mmengine.config import Config

from .. import plugins
from ..config import load_config
from ..errors import MissingFileError, SuiteError
from .compare_search import (SPLIT_KEYS, holdout_split, member_search, parse_search,
                             search_points)

SINGLE_TASK = 'single-task'
PRETRAIN = 'pretrain'
# Δm's references are single-task models trained with full fine-tuning (Maninis et al.).
REFERENCE_ADAPTER = dict(type='Full')
# The pretraining stage's backbone, in timm's layout, that every later run starts from.
BACKBONE_FILE = 'backbone.safetensors'
SUITE_KEYS = ('base', 'members', 'tasks', 'seeds', 'data', 'options', 'references',
              'pretrained', 'pretrain', 'search', 'published', 'compare_to', 'executor')
MEMBER_KEYS = ('config', 'adapter', 'search')
HELDOUT = 'heldout'  # the work dir of a single-task reference on the held-out split
MEMBER_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.+-]*')


# ------------------------------------------------------------------ suites
@dataclass
class Suite:
    path: str
    name: str
    base: str
    # name -> dict(config=path or None, adapter=dict/list or None, search=dict or None)
    members: Dict[str, dict]
    tasks: Dict[str, dict]  # name -> task config, the base's (or the suite's subset)
    seeds: List[int]
    data: Optional[dict]
    options: dict
    references: Union[str, Dict[str, float]]  # SINGLE_TASK or {task: value}
    pretrained: Optional[str]
    pretrain: Optional[dict]
    search: Optional[dict] = None  # the suite's (compare_search.parse_search)
    published: Dict[str, dict] = field(default_factory=dict)  # {member: {key: value}}
    compare_to: Optional[str] = None
    executor: dict = field(default_factory=dict)

    def shared_options(self, seed: int, tasks: Optional[Sequence[str]] = None,
                       data: Optional[dict] = None, pretrained: Optional[str] = None,
                       options: Optional[dict] = None) -> dict:
        """The overrides a run applies to its config: the suite's shared options, its data
        root, pretrained backbone, seed and tasks (default: the suite's). A fresh dict."""
        # The suite prints its own progress lines; mmengine's INFO log (the config and
        # environment of every run) and its per-parameter warnings about frozen weights
        # would drown them. `--cfg-options log_level=INFO` brings them back.
        merged = {'log_level': 'ERROR'}
        merged.update(copy.deepcopy(self.options))
        merged['randomness.seed'] = seed
        data = data or self.data
        if data:
            merged.update({f'{split}_dataloader.dataset.data_root': data['root']
                           for split in ('train', 'val', 'test')})
        if pretrained:
            merged['model.backbone.pretrained'] = pretrained
        merged['model.tasks'] = {'_delete_': True, **{
            name: copy.deepcopy(self.tasks[name]) for name in (tasks or self.tasks)}}
        merged.update(copy.deepcopy(options or {}))  # a stage's own options come last
        return merged

    def common_config(self, seed: int, **shared) -> Config:
        """The base config with everything the runs share: what each run is checked
        against and diffed with."""
        return load_config(self.base, self.shared_options(seed, **shared))

    def run_config(self, adapter, seed: int, **shared) -> Config:
        """The common config with ``adapter`` as its ``model.adapter`` (replaced, not
        merged into the base's)."""
        options = self.shared_options(seed, **shared)
        options['model.adapter'] = _replacing(adapter)
        return load_config(self.base, options)


def load_suite(path: str, cfg_options: Optional[dict] = None) -> Suite:
    """Read and check a suite file; ``cfg_options`` join the suite's shared ``options``.

    Raises SuiteError with one line naming the offending key.
    """
    path = plugins.resolve_config(path)
    if not osp.isfile(path):
        raise MissingFileError(f'suite file not found: {path}', file=path)
    raw = Config.fromfile(path).to_dict()
    here = osp.dirname(osp.abspath(path))

    def fail(key, message):
        raise SuiteError(f'{path}: {key}: {message}', file=path, key=key)

    unknown = sorted(k for k in raw if k not in SUITE_KEYS and not k.startswith('_'))
    if unknown:
        fail(unknown[0], f'unknown key (suite keys: {", ".join(SUITE_KEYS)}; helper '
                         'variables start with "_")')
    if not isinstance(raw.get('base'), str):
        fail('base', 'required: the config every run derives from')
    base = _config_path(raw['base'], here)
    members = raw.get('members')
    if not isinstance(members, dict) or not members:
        fail('members', 'required: a non-empty dict of name -> config path or '
                        'dict(config=..., adapter=...)')
    for name in members:
        if (not MEMBER_NAME.fullmatch(str(name)) or name == PRETRAIN
                or name.startswith(SINGLE_TASK)):
            fail(f'members.{name}', f'a member name is letters, digits and _.+- (and not '
                                    f'{PRETRAIN!r} or {SINGLE_TASK}*): it names its work dir')
    members = {name: _member(spec, f'members.{name}', here, fail)
               for name, spec in members.items()}

    seeds = raw.get('seeds', [0])
    if (not isinstance(seeds, (list, tuple)) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        fail('seeds', f'a non-empty list of integers, got {seeds!r}')
    data = _data(raw.get('data'), 'data', fail)
    if not isinstance(raw.get('options', {}), dict):
        fail('options', "a dict of config overrides, e.g. {'train_cfg.max_iters': 100}")
    options = dict(raw.get('options') or {})
    options.update(cfg_options or {})
    pretrained, pretrain = raw.get('pretrained'), raw.get('pretrain')
    if pretrained is not None and pretrain is not None:
        fail('pretrain', 'give either `pretrained` (a file) or `pretrain` (a stage), not both')
    if pretrained is not None and not isinstance(pretrained, str):
        fail('pretrained', f'a checkpoint path, got {pretrained!r}')
    if pretrain is not None:
        if not isinstance(pretrain, dict) or set(pretrain) - {'data', 'options'}:
            fail('pretrain', 'dict(data=dict(root=..., synthesize=...), options=dict(...))')
        pretrain = dict(data=_data(pretrain.get('data'), 'pretrain.data', fail, required=True),
                        options=dict(pretrain.get('options') or {}))

    try:
        base_tasks = load_config(base, options).model.get('tasks')
    except Exception as err:
        fail('base', f'{base} does not load: {one_line(err)}')
    if not base_tasks:
        fail('base', f'{base} has no model.tasks')
    if not isinstance(base_tasks, dict):
        base_tasks = {name: {} for name in base_tasks}
    wanted = raw.get('tasks') or list(base_tasks)
    if not isinstance(wanted, (list, tuple)):
        fail('tasks', f'a list of task names, got {wanted!r}')
    for name in wanted:
        if name not in base_tasks:
            fail('tasks', f'{name!r} is not a task of {base} ({", ".join(base_tasks)})')
    tasks = {name: dict(base_tasks[name] or {}) for name in wanted}

    references = raw.get('references', SINGLE_TASK)
    if isinstance(references, dict):
        missing = [t for t in tasks if not isinstance(references.get(t), (int, float))]
        if missing:
            fail('references', f'no reference value for task {missing[0]!r}')
        references = {t: float(references[t]) for t in tasks}
    elif references != SINGLE_TASK:
        fail('references', f"'{SINGLE_TASK}' or {{task: value}}, got {references!r}")

    search = parse_search(raw.get('search'), None, list(tasks), fail)
    for name, member in members.items():
        member['search'] = member_search(parse_search(
            member['search'], search, list(tasks), lambda k, m: fail(f'members.{name}.{k}', m),
            member=True))
    compare_to = raw.get('compare_to')
    if compare_to is not None and compare_to not in members:
        fail('compare_to', f'{compare_to!r} is not a member ({", ".join(members)})')
    executor = raw.get('executor') or {}
    if not isinstance(executor, dict):
        fail('executor', f"dict(type='local', max_parallel=2) or the like, got {executor!r}")
    return Suite(path=path, name=osp.splitext(osp.basename(path))[0], base=base,
                 members=members, tasks=tasks, seeds=list(seeds), data=data, options=options,
                 references=references, pretrained=pretrained, pretrain=pretrain,
                 search=search, published=_published(raw.get('published'), members, tasks,
                                                     fail),
                 compare_to=compare_to, executor=dict(executor))


def _published(published, members, tasks, fail) -> Dict[str, dict]:
    """``{member: {task | 'delta_m' | 'trainable': number}}``, checked."""
    if published is None:
        return {}
    if not isinstance(published, dict):
        fail('published', f'{{member: {{task: value, ...}}}}, got {published!r}')
    keys = list(tasks) + ['delta_m', 'trainable']
    for name, row in published.items():
        if name not in members:
            fail(f'published.{name}', f'not a member ({", ".join(members)})')
        if not isinstance(row, dict):
            fail(f'published.{name}', f'{{task: value, ...}}, got {row!r}')
        for key, value in row.items():
            if key not in keys:
                fail(f'published.{name}.{key}',
                     f'not a task of the suite, delta_m or trainable ({", ".join(keys)})')
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                fail(f'published.{name}.{key}', f'a number, got {value!r}')
    return {name: dict(row) for name, row in published.items()}


def _config_path(path: str, here: str) -> str:
    if '::' in path or osp.isabs(path):
        return path
    return osp.normpath(osp.join(here, path))


def _member(spec, key, here, fail) -> dict:
    if isinstance(spec, str):
        spec = dict(config=spec)
    if not isinstance(spec, dict):
        fail(key, f'a config path or dict(config=..., adapter=...), got {spec!r}')
    unknown = sorted(set(spec) - set(MEMBER_KEYS))
    if unknown:
        fail(key, f'unknown key {unknown[0]!r} (a member has config and/or adapter, and may '
                  'have a search)')
    config, adapter = spec.get('config'), spec.get('adapter')
    if config is None and adapter is None:
        fail(key, 'needs a config, an adapter, or both')
    if config is not None and not isinstance(config, str):
        fail(f'{key}.config', f'a config path, got {config!r}')
    if adapter is not None and not (
            isinstance(adapter, dict) or (isinstance(adapter, (list, tuple))
                                          and all(isinstance(a, dict) for a in adapter))):
        fail(f'{key}.adapter', f'a strategy dict or a list of them, got {adapter!r}')
    if config is None and isinstance(adapter, dict) and 'type' not in adapter:
        fail(f'{key}.adapter', 'needs a type (or a config to take the rest from)')
    return dict(config=config and _config_path(config, here), adapter=adapter,
                search=spec.get('search'))


def _data(data, key, fail, required=False) -> Optional[dict]:
    if data is None and not required:
        return None
    if not isinstance(data, dict) or not isinstance(data.get('root'), str):
        fail(key, "dict(root='path', synthesize=dict(...)) with a root folder")
    unknown = sorted(set(data) - {'root', 'synthesize'})
    if unknown:
        fail(key, f'unknown key {unknown[0]!r} (root, synthesize)')
    if data.get('synthesize') is not None and not isinstance(data['synthesize'], dict):
        fail(f'{key}.synthesize', 'keyword arguments of synthesize(), as a dict')
    return dict(root=data['root'], synthesize=data.get('synthesize'))


def _replacing(adapter):
    """``model.adapter`` as a merge_from_dict value that replaces, not merges into, the
    base's adapter."""
    adapter = copy.deepcopy(adapter)
    if isinstance(adapter, dict):
        return {'_delete_': True, **adapter}
    return list(adapter)


# ------------------------------------------------------------------ runs
MEMBER, REFERENCE, SEARCH, SEARCH_REFERENCE = 'member', 'reference', 'search', 'search-reference'


@dataclass
class Run:
    name: str  # a member name, 'single-task_<task>' or 'pretrain'
    kind: str  # 'member', 'reference', 'pretrain', 'search' or 'search-reference'
    seed: int
    order: int  # the position in the suite, for the report's row order
    work_dir: str
    cfg: Optional[Config] = None
    error: Optional[str] = None  # a member whose config could not be derived
    selected: bool = True  # False: not trained now (--only), only collected if finished
    diff: List[str] = field(default_factory=list)  # keys that differ from the suite base
    point: Optional[dict] = None  # a search point: dict(index=k, values={key: value})
    waiting: bool = False  # a searched member's final run, before its search has finished
    reuse_from: Optional[str] = None  # final='reuse': the search point dir it reports

    @property
    def label(self) -> str:
        if self.kind == PRETRAIN:
            return self.name
        if self.kind == SEARCH:
            return f'{self.name} search point {self.point["index"]}'
        if self.kind == SEARCH_REFERENCE:
            return f'{self.name} on the held-out split'
        return f'{self.name} seed {self.seed}'


def plan(suite: Suite, work_dir: str, seeds: Optional[Sequence[int]] = None,
         only: Optional[Sequence[str]] = None,
         chosen: Optional[Dict[str, Optional[dict]]] = None) -> List[Run]:
    """Every run of the suite in order: pretraining; the searches (held-out single-task
    references, then every member's points, with the first seed); then per seed the
    single-task references and the members. ``only`` names the members (and 'single-task')
    to train now; the others are only collected if they finished earlier. ``chosen``:
    ``{member: values of its best point}`` once its search has finished; until then a
    searched member's runs are ``waiting``."""
    seeds = list(seeds if seeds is not None else suite.seeds)
    names = list(suite.members) + ([SINGLE_TASK] if suite.references == SINGLE_TASK else [])
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise SuiteError(f'--only: no member {unknown[0]!r} in {suite.path} '
                         f'(members: {", ".join(names)})')
    runs = []
    pretrained = suite.pretrained
    if suite.pretrain:
        pretrain_dir = osp.join(work_dir, PRETRAIN)
        runs.append(Run(PRETRAIN, PRETRAIN, 0, -1, pretrain_dir, suite.run_config(
            REFERENCE_ADAPTER, 0, data=suite.pretrain['data'],
            options=suite.pretrain['options'])))
        pretrained = osp.join(pretrain_dir, BACKBONE_FILE)
    runs += _search_runs(suite, work_dir, seeds[0], only, pretrained)

    for seed in seeds:
        common = suite.common_config(seed, pretrained=pretrained)
        jobs = [(task, REFERENCE) for task in suite.tasks
                if suite.references == SINGLE_TASK]
        jobs += [(name, MEMBER) for name in suite.members]
        for order, (key, kind) in enumerate(jobs):
            reference = kind == REFERENCE
            name = f'{SINGLE_TASK}_{key}' if reference else key
            run = Run(name, kind, seed, order, osp.join(work_dir, name, f'seed_{seed}'),
                      selected=_selected(only, key, reference))
            search = None if reference else suite.members[key]['search']
            if search and (chosen or {}).get(key) is None:
                run.waiting = True
                runs.append(run)
                continue
            try:
                if reference:
                    run.cfg = suite.run_config(REFERENCE_ADAPTER, seed, tasks=[key],
                                               pretrained=pretrained)
                    run.diff = check_identical(common, run.cfg, run.label, reference)
                else:
                    _final_member_run(suite, common, run, pretrained, search,
                                      (chosen or {}).get(key), work_dir, len(seeds))
            except Exception as err:  # one member's bad config must not stop the others
                run.cfg, run.error = None, one_line(err)
            runs.append(run)
    return runs


def _selected(only, key: str, reference: bool) -> bool:
    return not only or (SINGLE_TASK if reference else key) in only


def _search_runs(suite: Suite, work_dir: str, seed: int, only, pretrained) -> List[Run]:
    """The held-out single-task references (where a search scores by Δm against them) and
    every searched member's points."""
    searches = {name: m['search'] for name, m in suite.members.items() if m['search']}
    if not searches:
        return []
    common = suite.common_config(seed, pretrained=pretrained)
    runs = []
    split = next(iter(searches.values()))  # the held-out split is the suite's
    if suite.references == SINGLE_TASK and any(s['score'] == 'delta_m'
                                               for s in searches.values()):
        for order, task in enumerate(suite.tasks):
            name = f'{SINGLE_TASK}_{task}'
            run = Run(name, SEARCH_REFERENCE, seed, order, osp.join(work_dir, name, HELDOUT),
                      selected=_selected(only, task, True))
            run.cfg = holdout_split(suite.run_config(REFERENCE_ADAPTER, seed, tasks=[task],
                                                     pretrained=pretrained), split)
            run.diff = config_diff(common, run.cfg)
            runs.append(run)
    order = len(suite.tasks) if suite.references == SINGLE_TASK else 0
    for name, search in searches.items():
        for index, values in enumerate(search_points(search)):
            run = Run(name, SEARCH, seed, order + list(suite.members).index(name),
                      osp.join(work_dir, name, 'search', f'point_{index}'),
                      selected=_selected(only, name, False),
                      point=dict(index=index, values=values))
            try:
                cfg = _member_config(suite, common, name, seed, pretrained, values)
                check_identical(common, cfg, run.label, allowed=list(search['space']))
                run.cfg = holdout_split(cfg, search)
                run.diff = config_diff(common, run.cfg)
            except Exception as err:
                run.cfg, run.error = None, one_line(err)
            runs.append(run)
    return runs


def _final_member_run(suite, common, run, pretrained, search, values, work_dir,
                      num_seeds) -> None:
    """A member's reported run (with its search's chosen values, if it searched)."""
    run.cfg = _member_config(suite, common, run.name, run.seed, pretrained, values)
    allowed = list(search['space']) if search else []
    if search and search['final'] == 'reuse':
        if num_seeds > 1:
            raise SuiteError(f"{run.name}: search.final='reuse' reports the search's own run, "
                             "which has one seed: use final='retrain' with several seeds")
        index = search_points(search).index(values)
        run.reuse_from = osp.join(work_dir, run.name, 'search', f'point_{index}')
        val = copy.deepcopy(run.cfg.val_dataloader.dataset)
        holdout_split(run.cfg, search)  # trained on the rest of the list, validated on val
        run.cfg.val_dataloader.dataset = val
        allowed.append(SPLIT_KEYS[0])
    run.diff = check_identical(common, run.cfg, run.label, allowed=allowed)


def _member_config(suite: Suite, common: Config, name: str, seed: int,
                   pretrained: Optional[str], values: Optional[dict] = None) -> Config:
    """A member's run config: the suite base with the member's adapter (and a search
    point's ``values``)."""
    spec = suite.members[name]
    adapter = spec['adapter']
    if spec['config']:
        # The member's own config with everything the suite shares must equal the base but
        # for its adapter, which is all a member contributes.
        options = suite.shared_options(seed, pretrained=pretrained)
        if adapter is not None:
            options['model.adapter'] = copy.deepcopy(adapter)  # merged into the config's
        source = load_config(spec['config'], options)
        check_identical(common, source, f'member {name} ({spec["config"]})')
        adapter = source.to_dict()['model']['adapter']
    return suite.run_config(adapter, seed, pretrained=pretrained, options=values)


# --------------------------------------------------------- identical pipelines
def plain(cfg: Config) -> dict:
    """A config as JSON-comparable data (tuples become lists)."""
    return json.loads(json.dumps(cfg.to_dict(), default=repr))


def config_diff(a: Config, b: Config) -> List[str]:
    """The dotted keys whose values differ between two configs (lists compared whole)."""
    flat_a, flat_b = _flatten(plain(a)), _flatten(plain(b))
    missing = object()
    return sorted(k for k in flat_a.keys() | flat_b.keys()
                  if flat_a.get(k, missing) != flat_b.get(k, missing))


def _flatten(tree: dict, prefix: str = '') -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f'{prefix}{key}.'))
        else:
            flat[f'{prefix}{key}'] = value
    return flat


def outside_allowed(keys: Sequence[str], reference: bool = False,
                    allowed: Sequence[str] = ()) -> List[str]:
    """The keys among ``keys`` that a run may not change: anything but ``model.adapter``
    (and the keys in or under ``allowed``: a member's searched keys), and for a single-task
    reference also its task subset (every ``tasks`` entry)."""
    return [k for k in keys if not (k.split('.')[:2] == ['model', 'adapter']
                                    or (reference and 'tasks' in k.split('.'))
                                    or any(k == a or k.startswith(a + '.') for a in allowed))]


def check_identical(common: Config, cfg: Config, what: str, reference: bool = False,
                    allowed: Sequence[str] = ()) -> List[str]:
    """The keys where ``cfg`` differs from the suite's common config; SuiteError naming
    them when one is outside what a run may change (``outside_allowed``)."""
    diff = config_diff(common, cfg)
    outside = outside_allowed(diff, reference, allowed)
    if outside:
        where = 'model.adapter' + (' and its searched keys' if allowed else '')
        raise SuiteError(f'{what} differs from the suite base outside {where}: '
                         f'{", ".join(outside[:6])}')
    return diff


def one_line(err: BaseException) -> str:
    """An error as one line: its type and the first line of its message."""
    message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    lines = str(message).strip().splitlines() or ['']
    return f'{type(err).__name__}: {lines[0]}'
