"""Loading configs and building models from them: the one entry point for both."""
import os.path as osp
from typing import Optional, Union

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
    with plugins.plugin_bases():
        cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.setdefault('default_scope', SCOPE)
    if 'model' not in cfg:
        raise ConfigError(f'{path}: no `model` in the config', file=path, key='model')
    tasks = cfg.model.get('tasks')
    if tasks is not None:
        names = list(tasks) if isinstance(tasks, dict) else list(tasks)
        for key in _DATALOADERS:
            dataset = cfg.get(key, {}).get('dataset') if cfg.get(key) else None
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


def build_model(cfg: Union[Config, ConfigDict, dict, str]):
    """Build the model of a config (a path, a Config or the ``model`` dict itself)."""
    if isinstance(cfg, str):
        cfg = load_config(cfg)
    plugins.load_plugins()  # a config built without load_config may name plugin classes
    init_default_scope(cfg.get('default_scope', SCOPE) if 'model' in cfg else SCOPE)
    model_cfg = cfg['model'] if 'model' in cfg else cfg
    return MODELS.build(model_cfg)
