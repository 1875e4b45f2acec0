"""Registries of adapterkit: children of mmengine's roots, all in scope 'adapterkit'.

Configs set ``default_scope = 'adapterkit'``; a name not found here falls back to
mmengine's root registries (optimizers, schedulers, hooks, ...). mmseg heads are
reached explicitly with ``_scope_='mmseg'``.

Importing this module installs the third-party shims of ``compat.py`` (mmseg on mmcv-lite,
safe checkpoint loading): whatever builds from a registry or loads a checkpoint through
mmengine imports it first. ``find`` and ``check_options`` are the one check of a config's
``type`` and options against a registry, before anything is built.
"""
import difflib
import inspect
from typing import Iterable, List, Optional

from mmengine import registry as root
from mmengine.registry import Registry

from . import compat
from .errors import ConfigError, UnknownNameError

compat.install()  # before a registry builds an mmseg head or a Runner loads a checkpoint

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
OPTIM_WRAPPER_CONSTRUCTORS = _child(root.OPTIM_WRAPPER_CONSTRUCTORS, 'adapterkit.engine')

# Children with nothing of ours in them yet: they keep mmengine from warning that scope
# 'adapterkit' has no such registry whenever a Runner builds one of these.
RUNNERS = _child(root.RUNNERS)
RUNNER_CONSTRUCTORS = _child(root.RUNNER_CONSTRUCTORS)
LOOPS = _child(root.LOOPS)
DATA_SAMPLERS = _child(root.DATA_SAMPLERS)
MODEL_WRAPPERS = _child(root.MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = _child(root.WEIGHT_INITIALIZERS)
OPTIMIZERS = _child(root.OPTIMIZERS)
PARAM_SCHEDULERS = _child(root.PARAM_SCHEDULERS)
EVALUATOR = _child(root.EVALUATOR)
VISUALIZERS = _child(root.VISUALIZERS, 'adapterkit.engine')
VISBACKENDS = _child(root.VISBACKENDS)
LOG_PROCESSORS = _child(root.LOG_PROCESSORS)
STRATEGIES = _child(root.STRATEGIES)

# adapterkit's own concepts (no mmengine parent).
ADAPTERS = Registry('adapter strategy', scope=SCOPE, locations=['adapterkit.adapters'])
TASKS = Registry('task', scope=SCOPE, locations=['adapterkit.tasks'])


def find(registry: Registry, name: str, key: str) -> type:
    """The class registered as ``name`` in ``registry`` or an ancestor; an unknown name is
    one line naming the config key, the registry and the closest registered names."""
    names, ancestor = set(), registry
    while ancestor is not None:  # where the Runner looks, each filled from its locations
        ancestor.import_from_location()
        names.update(ancestor.module_dict)
        ancestor = ancestor.parent
    cls = registry.get(name)
    if cls is not None:
        return cls
    raise UnknownNameError(f'{key}: unknown type {name!r} in the {registry.name} registry '
                           f'({closest(name, names)})', key=key)


def closest(name: str, names: Iterable[str]) -> str:
    """``'closest: A, B'`` for the names nearest to ``name``, or all of a short list."""
    names = sorted(set(names))
    near = difflib.get_close_matches(name, names, n=4, cutoff=0.6)
    near += [n for n in names if n.lower() == name.lower() and n not in near]
    if near:
        return f'closest: {", ".join(near)}'
    if len(names) <= 12:
        return f'registered: {", ".join(names) or "none"}'
    return f'none close among {len(names)} registered names'


def accepted_options(cls: type) -> Optional[List[str]]:
    """The keyword options the constructor of ``cls`` accepts, in order; None where any
    option may be meant. A class that hands ``**kwargs`` to a third party says what it
    accepts with a classmethod ``accepted_options()``. Otherwise a constructor that takes
    ``**kwargs`` is read as handing them to its parent's (a plugin's
    ``def __init__(self, rank=4, **options): super().__init__(**options)``), whose options
    are then added, until a class closes the list."""
    if callable(getattr(cls, 'accepted_options', None)):
        return list(cls.accepted_options())
    accepted = []
    for klass in cls.__mro__:
        if '__init__' not in vars(klass) or klass is object:
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]
        accepted += [p.name for p in parameters if p.name not in accepted
                     and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return accepted
    return None


def check_options(cls: type, cfg: dict, key: str) -> None:
    """Refuse an option (a key of ``cfg`` but ``type``) that the constructor of ``cls``
    does not take: one line naming it, the class, the config key and what it accepts."""
    accepted = accepted_options(cls)
    unknown = [o for o in cfg if o not in ('type', '_scope_') and accepted is not None
               and o not in accepted]
    if unknown:
        raise ConfigError(f'{cls.__name__}: unknown option {unknown[0]!r} in {key} (options: '
                          f'{", ".join(accepted) or "none"})', key=f'{key}.{unknown[0]}',
                          option=unknown[0])
