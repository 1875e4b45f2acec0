"""Loading configs and building models from them: the one entry point for both."""
import ast
import difflib
import inspect
import os.path as osp
from collections.abc import Mapping
from typing import List, Optional, Sequence, Union

from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope

from . import plugins, registry
from .errors import ConfigError, MissingFileError
from .registry import MODELS, SCOPE

_DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
_EVALUATORS = ('val_evaluator', 'test_evaluator')

# Where a config names registered types: (key, registry, check the options too). A '*'
# stands for every value of a dict; a list at a key is checked item by item. The model's
# own parts are checked in full; elsewhere options are often consumed on the way (the
# optimizer wrapper's constructor, the Runner's dataloader), so only the type is.
_TYPED = (
    ('model', 'MODELS', True), ('model.backbone', 'MODELS', True),
    ('model.head', 'MODELS', True), ('model.heads.*', 'MODELS', True),
    ('model.data_preprocessor', 'MODELS', True),
    *((f'{split}_dataloader.{part}', name, False) for split in ('train', 'val', 'test')
      for part, name in (('dataset', 'DATASETS'), ('dataset.pipeline', 'TRANSFORMS'),
                         ('sampler', 'DATA_SAMPLERS'))),
    ('val_evaluator', 'METRICS', False), ('test_evaluator', 'METRICS', False),
    ('train_cfg', 'LOOPS', False), ('val_cfg', 'LOOPS', False), ('test_cfg', 'LOOPS', False),
    ('optim_wrapper', 'OPTIM_WRAPPERS', False), ('optim_wrapper.optimizer', 'OPTIMIZERS', False),
    ('param_scheduler', 'PARAM_SCHEDULERS', False), ('default_hooks.*', 'HOOKS', False),
    ('custom_hooks', 'HOOKS', False), ('visualizer', 'VISUALIZERS', False),
    ('visualizer.vis_backends', 'VISBACKENDS', False), ('log_processor', 'LOG_PROCESSORS', False),
)


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read an mmengine config, apply ``--cfg-options`` style overrides, and fill defaults.

    ``model.tasks`` is the one place a config lists its tasks: datasets and evaluators
    that leave ``tasks`` out get the model's task names.

    ``path`` and the config's ``_base_`` entries may be ``PLUGIN::relative/path.py`` (a
    config a plugin ships) or ``adapterkit::relative/path.py`` (under ``configs/``).
    Plugins are loaded here, before the Runner builds anything from the registries.
    """
    plugins.load_plugins()
    path = plugins.resolve_config(path)
    if not osp.isfile(path):
        raise MissingFileError(f'config file not found: {path}', file=path)
    try:
        with plugins.plugin_bases():
            cfg = Config.fromfile(path)
    except SyntaxError:  # mmengine's names no file ('<unknown>'): find it
        found = _syntax_error(path)
        if found is None:
            raise
        raise ConfigError(f'{found.filename}:{found.lineno}: syntax error: {found.msg}',
                          file=found.filename) from None
    if cfg_options:
        check_overrides(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    cfg.setdefault('default_scope', SCOPE)
    if 'model' not in cfg:
        raise ConfigError(f'{path}: no `model` in the config', file=path, key='model')
    tasks = cfg.model.get('tasks')
    if tasks is not None:
        names = list(tasks) if isinstance(tasks, dict) else list(tasks)
        for key in _DATALOADERS:
            dataset = cfg.get(key, {}).get('dataset') if cfg.get(key) else None
            while isinstance(dataset, dict) and isinstance(dataset.get('dataset'), dict):
                dataset = dataset['dataset']  # a wrapper (SubsetDataset): the data set inside
            if isinstance(dataset, dict) and 'tasks' not in dataset:
                dataset['tasks'] = names
        for key in _EVALUATORS:
            evaluator = cfg.get(key)
            if isinstance(evaluator, dict) and 'tasks' not in evaluator:
                evaluator['tasks'] = tasks
    check_types(cfg)
    return cfg


def check_types(cfg: Config) -> None:
    """Check every registered type a config names (see ``_TYPED``) before anything is
    built: an unknown type, or an option a part of the model does not take, is one line
    naming the config key (a strategy's options are checked as it is built)."""
    root = {key: cfg.get(key) for key in cfg.keys()}  # a Config is not a dict
    for pattern, name, options in _TYPED:
        for key, part in _parts(root, pattern.split('.'), []):
            kind = part.get('type')
            if not isinstance(kind, (str, type)) or part.get('_scope_', SCOPE) != SCOPE or \
                    isinstance(kind, str) and '.' in kind:  # another package's scope
                continue
            cls = kind if isinstance(kind, type) else \
                registry.find(getattr(registry, name), kind, key)
            if options:
                registry.check_options(cls, part, key)


def _parts(node, pattern: list, path: list):
    """``(key, dict)`` for every dict of a config at ``pattern`` (see ``_TYPED``)."""
    if not pattern:
        items = enumerate(node) if isinstance(node, (list, tuple)) else [(None, node)]
        for index, item in items:
            if isinstance(item, dict):
                yield '.'.join(path + ([] if index is None else [str(index)])), item
        return
    if not isinstance(node, dict):
        return
    head, rest = pattern[0], pattern[1:]
    for key in (list(node) if head == '*' else [head] if head in node else []):
        yield from _parts(node[key], rest, path + [str(key)])


def _syntax_error(path: str) -> Optional[SyntaxError]:
    """The syntax error of the first file, depth first, among the config ``path`` and the
    ``_base_`` files it names (relative or ``PROVIDER::path``), or None."""
    with open(path, encoding='utf-8') as f:
        source = f.read()
    try:
        tree = ast.parse(source, path)
    except SyntaxError as err:
        return err
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and getattr(node.targets[0], 'id', None) == '_base_'):
            try:
                bases = ast.literal_eval(node.value)
            except ValueError:
                return None
            for base in [bases] if isinstance(bases, str) else bases:
                base = (plugins.resolve_config(base) if '::' in base
                        else osp.join(osp.dirname(path), base))
                found = _syntax_error(base) if osp.isfile(base) else None
                if found:
                    return found
    return None


# ------------------------------------------------------------------ overrides
# The typo guard: a new key this close to an existing one beside it (difflib's ratio) is
# taken for a misspelling of it.
NEAR_MISS = 0.8


def check_overrides(cfg: Config, options: dict) -> None:
    """Refuse a ``--cfg-options`` key that would silently add a misspelled key to the config
    (mmengine adds whatever it is given); docs/user_guide.md states the rule:

    - a key that exists may be set; a key that does not exist may be added below its
      deepest existing part ``parent`` only if no key of ``parent`` is a near miss of it
      (``NEAR_MISS``: ``trian_cfg`` beside ``train_cfg``, ``max_iter`` beside
      ``max_iters``), and
    - only one level deep (the options dict of a class takes new arguments:
      ``model.adapter.dropout``), except where the new part is a whole new entry: it sets
      a ``type``, or ``parent`` holds named entries (every value a dict: ``model.tasks``,
      ``default_hooks``), or ``parent`` is the top level and the name is an argument of
      mmengine's Runner (``strategy``, ``auto_scale_lr``);
    - below a key replaced with ``_delete_`` anything goes. A value that is a dict is taken
      as given.

    Raises ConfigError naming the key and the closest existing one."""
    replaced = [k[:-len('._delete_')] for k in options if k.endswith('._delete_')]
    for key in options:
        parts = key.split('.')
        depth, node = _deepest(cfg._cfg_dict, parts)
        if depth == len(parts) or any(key.startswith(r + '.') for r in replaced):
            continue
        problem = _new_key_problem(node, parts, depth, options)
        if problem:
            raise ConfigError(f'--cfg-options {key}: {problem}', key=key)


def _deepest(node, parts: Sequence[str]):
    """How many leading ``parts`` exist in the config tree, and the node they reach."""
    for depth, part in enumerate(parts):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return depth, node
    return len(parts), node


def _new_key_problem(node, parts: List[str], depth: int, options: dict) -> Optional[str]:
    """Why ``parts[depth]`` may not be added to ``node`` (None where it may)."""
    name, parent = parts[depth], '.'.join(parts[:depth])
    where = parent or 'the config'
    if isinstance(node, list):
        return f'{parent} has {len(node)} entries, no entry {name}'
    if not isinstance(node, Mapping):
        return f'{parent} is {node!r}, not a dict'
    keys = [str(k) for k in node]
    near = difflib.get_close_matches(name, keys, n=1, cutoff=NEAR_MISS)
    if near:
        return (f'no key {name} in {where}; did you mean {_dotted(parent, near[0])}? (a new '
                'key this close to an existing one goes in a config file: docs/user_guide.md)')
    entry = '.'.join(parts[:depth + 1])
    named = bool(node) and all(isinstance(v, Mapping) for v in node.values())
    if (depth == len(parts) - 1 or f'{entry}.type' in options or named
            or (depth == 0 and name in _runner_arguments())):
        return None
    closest = difflib.get_close_matches(name, keys, n=1, cutoff=0.0)
    return (f'no key {name} in {where}' +
            (f' (the closest is {_dotted(parent, closest[0])})' if closest else '') +
            '; only one level can be added below an existing key: docs/user_guide.md, '
            '"Overriding config keys"')


def _dotted(parent: str, key: str) -> str:
    return f'{parent}.{key}' if parent else key


def _runner_arguments() -> set:
    """The top-level keys mmengine's Runner and FlexibleRunner take."""
    from mmengine.runner import FlexibleRunner, Runner
    return {name for runner in (Runner, FlexibleRunner)
            for name in inspect.signature(runner.__init__).parameters} | {'custom_imports'}


def build_model(cfg: Union[Config, ConfigDict, dict, str]):
    """Build the model of a config (a path, a Config or the ``model`` dict itself)."""
    if isinstance(cfg, str):
        cfg = load_config(cfg)
    plugins.load_plugins()  # a config built without load_config may name plugin classes
    init_default_scope(cfg.get('default_scope', SCOPE) if 'model' in cfg else SCOPE)
    model_cfg = cfg['model'] if 'model' in cfg else cfg
    return MODELS.build(model_cfg)
