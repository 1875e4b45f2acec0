"""Loading configs and building models from them: the one entry point for both."""
import os.path as osp
from typing import Optional, Union

from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope

from . import plugins
from .errors import ConfigError, MissingFileError
from .registry import MODELS, SCOPE

_DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
_EVALUATORS = ('val_evaluator', 'test_evaluator')


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
            while isinstance(dataset, dict) and isinstance(dataset.get('dataset'), dict):
                dataset = dataset['dataset']  # a wrapper (SubsetDataset): the data set inside
            if isinstance(dataset, dict) and 'tasks' not in dataset:
                dataset['tasks'] = names
        for key in _EVALUATORS:
            evaluator = cfg.get(key)
            if isinstance(evaluator, dict) and 'tasks' not in evaluator:
                evaluator['tasks'] = tasks
    return cfg


def build_model(cfg: Union[Config, ConfigDict, dict, str]):
    """Build the model of a config (a path, a Config or the ``model`` dict itself)."""
    if isinstance(cfg, str):
        cfg = load_config(cfg)
    plugins.load_plugins()  # a config built without load_config may name plugin classes
    init_default_scope(cfg.get('default_scope', SCOPE) if 'model' in cfg else SCOPE)
    model_cfg = cfg['model'] if 'model' in cfg else cfg
    return MODELS.build(model_cfg)
