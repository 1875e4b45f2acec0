"""Registries of adapterkit: children of mmengine's roots, all in scope 'adapterkit'.

Configs set ``default_scope = 'adapterkit'``; a name not found here falls back to
mmengine's root registries (optimizers, schedulers, hooks, ...). mmseg heads are
reached explicitly with ``_scope_='mmseg'``.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

SCOPE = 'adapterkit'

MODELS = Registry('model', parent=MMENGINE_MODELS, scope=SCOPE, locations=['adapterkit.models'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope=SCOPE,
                    locations=['adapterkit.datasets'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope=SCOPE,
                      locations=['adapterkit.datasets'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope=SCOPE,
                   locations=['adapterkit.evaluation'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope=SCOPE, locations=['adapterkit.engine'])

# adapterkit's own concepts (no mmengine parent).
ADAPTERS = Registry('adapter strategy', scope=SCOPE, locations=['adapterkit.adapters'])
TASKS = Registry('task', scope=SCOPE, locations=['adapterkit.tasks'])
