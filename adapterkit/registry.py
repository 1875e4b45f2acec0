"""Registries of adapterkit: children of mmengine's roots, all in scope 'adapterkit'.

Configs set ``default_scope = 'adapterkit'``; a name not found here falls back to
mmengine's root registries (optimizers, schedulers, hooks, ...). mmseg heads are
reached explicitly with ``_scope_='mmseg'``.
"""
from mmengine import registry as root
from mmengine.registry import Registry

SCOPE = 'adapterkit'


def _child(parent: Registry, location: str = None) -> Registry:
    return Registry(parent.name, parent=parent, scope=SCOPE,
                    locations=[location] if location else [])


MODELS = _child(root.MODELS, 'adapterkit.models')
DATASETS = _child(root.DATASETS, 'adapterkit.datasets')
TRANSFORMS = _child(root.TRANSFORMS, 'adapterkit.datasets')
METRICS = _child(root.METRICS, 'adapterkit.evaluation')
HOOKS = _child(root.HOOKS, 'adapterkit.engine')
OPTIM_WRAPPERS = _child(root.OPTIM_WRAPPERS, 'adapterkit.engine')
FUNCTIONS = _child(root.FUNCTIONS, 'adapterkit.engine')  # e.g. FSDP wrap policies

# Children with nothing of ours in them yet: they keep mmengine from warning that scope
# 'adapterkit' has no such registry whenever a Runner builds one of these.
RUNNERS = _child(root.RUNNERS)
RUNNER_CONSTRUCTORS = _child(root.RUNNER_CONSTRUCTORS)
LOOPS = _child(root.LOOPS)
DATA_SAMPLERS = _child(root.DATA_SAMPLERS)
MODEL_WRAPPERS = _child(root.MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = _child(root.WEIGHT_INITIALIZERS)
OPTIMIZERS = _child(root.OPTIMIZERS)
OPTIM_WRAPPER_CONSTRUCTORS = _child(root.OPTIM_WRAPPER_CONSTRUCTORS)
PARAM_SCHEDULERS = _child(root.PARAM_SCHEDULERS)
EVALUATOR = _child(root.EVALUATOR)
VISUALIZERS = _child(root.VISUALIZERS, 'adapterkit.engine')
VISBACKENDS = _child(root.VISBACKENDS)
LOG_PROCESSORS = _child(root.LOG_PROCESSORS)
STRATEGIES = _child(root.STRATEGIES)

# adapterkit's own concepts (no mmengine parent).
ADAPTERS = Registry('adapter strategy', scope=SCOPE, locations=['adapterkit.adapters'])
TASKS = Registry('task', scope=SCOPE, locations=['adapterkit.tasks'])
