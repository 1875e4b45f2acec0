"""Plugins: third-party packages that add strategies, heads, tasks, datasets and configs.

A plugin is any installed distribution with an entry point in the group
``adapterkit.plugins``; the entry point names a module (or object) whose functions are
marked with ``@adapterkit.hookimpl``. The hooks, their arguments and what they return are
``hookspecs.py``; this module finds the plugins, calls their hooks and resolves
``NAME::relative/path.py`` config paths.

Discovery is lazy (``load_config``, ``build_model`` and the CLI call ``load_plugins``),
happens once per process, and isolates plugins from each other: a plugin that fails to
import, to pass pluggy's checks, or to register is reported and skipped, and leaves
nothing registered. ``ADAPTERKIT_PLUGINS=a,b`` loads only those entry-point names,
``ADAPTERKIT_DISABLE_PLUGINS=a,b`` blocks them, and ``ADAPTERKIT_TRACE_PLUGINS=1`` prints
every hook call (plugin, hook, arguments, and what it returned or raised) to stderr.
"""
import configparser
import logging
import os
import os.path as osp
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Dict, Iterable, List, Optional, Tuple

import entrypoints
import pluggy

from . import hookspecs
from .errors import MissingFileError, PluginError
from .hookspecs import PROJECT

GROUP = 'adapterkit.plugins'
# What a plugin may register into: the names it sees on the `registries` argument.
REGISTRY_NAMES = ('MODELS', 'DATASETS', 'TRANSFORMS', 'METRICS', 'HOOKS', 'ADAPTERS', 'TASKS')
# adapterkit serves its own configs as the provider 'adapterkit', so a plugin's config can
# inherit `adapterkit::quickstart/...`: package data in a wheel; in a checkout,
# adapterkit/configs is a link to the configs/ folder beside the package.
OWN_CONFIGS = osp.join(osp.dirname(osp.abspath(__file__)), 'configs')

logger = logging.getLogger(__name__)


@dataclass
class Plugin:
    """One entry point of the group, and what became of it."""

    name: str  # the entry-point name: what ADAPTERKIT_PLUGINS and NAME:: use
    distribution: str
    version: str
    status: str = 'loaded'  # 'loaded', 'failed' or 'disabled'
    error: str = ''
    modules: List[Tuple[str, str]] = field(default_factory=list)  # (registry, name)
    config_dirs: List[str] = field(default_factory=list)

    def describe(self) -> str:
        return f'plugin {self.name!r} ({self.distribution} {self.version})'

    def as_dict(self) -> dict:
        return dict(name=self.name, distribution=self.distribution, version=self.version,
                    status=self.status, error=self.error or None,
                    modules=[dict(registry=r, name=n) for r, n in self.modules],
                    config_dirs=list(self.config_dirs))


@dataclass
class Discovery:
    """Every plugin found, the problems that belong to no single plugin, and the pluggy
    manager that holds the loaded plugins."""

    plugins: List[Plugin]
    errors: List[str]
    manager: pluggy.PluginManager

    def config_providers(self) -> Dict[str, List[str]]:
        """``{provider: [config folders]}`` for ``PROVIDER::path``."""
        providers = {p.name: p.config_dirs for p in self.plugins if p.config_dirs}
        providers[PROJECT] = [OWN_CONFIGS]
        return providers


class _Registrar:
    """One registry as a plugin sees it: ``register_module`` as in mmengine, except that a
    taken name is refused naming both owners, and nothing reaches the registry before the
    plugin's hook has returned (a plugin failing halfway leaves no trace)."""

    def __init__(self, key: str, target, plugin: Plugin, pending: dict, owners: dict):
        self._key, self._target, self._plugin = key, target, plugin
        self._pending, self._owners = pending, owners

    def register_module(self, name=None, module=None):
        if module is None:  # decorator form: @registries.X.register_module()
            return lambda cls: self.register_module(name, cls)
        if not callable(module):
            raise PluginError(f'{self._key}: can only register a class or a function, '
                              f'not {module!r}', plugin=self._plugin.name)
        self._target.import_from_location()  # adapterkit's own modules are registered lazily
        for alias in [name] if isinstance(name, str) else (name or [module.__name__]):
            key = (self._key, alias)
            existing = self._target.module_dict.get(alias) or self._pending.get(key)
            if existing is not None:
                earlier = self._owners.get(key) or (self._plugin if key in self._pending
                                                    else None)
                owner = existing.__module__ + (f' of {earlier.describe()}' if earlier else '')
                raise PluginError(
                    f'{self._key} name {alias!r} is taken: {owner} registered it, and '
                    f'{self._plugin.describe()} registers it again from {module.__module__}')
            self._pending[key] = module
        return module


def _one_line(err: BaseException) -> str:
    return ' '.join(f'{type(err).__name__}: {err}'.split())


def _env_names(variable: str) -> Optional[set]:
    """Names in a comma-separated variable; None when it is not set at all."""
    value = os.environ.get(variable)
    return None if value is None else {n.strip() for n in value.split(',') if n.strip()}


def _entry_points(path: Iterable[str]) -> Tuple[list, List[str]]:
    """``[(name, spec, distribution)]`` of the group over ``path``, and scan errors.

    The files are read through ``entrypoints`` one folder at a time, and the group's values
    raw: configparser would abort the whole scan on a '%' in a value, and entrypoints drops
    a spec it cannot parse with only a warning, so parsing happens per plugin instead.
    """
    found, errors, seen = [], [], set()
    for folder in path:
        try:
            distros = sorted(entrypoints.iter_files_distros([folder]), key=lambda c: c[1].name)
        except (configparser.Error, OSError, UnicodeDecodeError) as err:
            errors.append(f'entry points under {folder} are unreadable: {_one_line(err)}')
            continue
        for config, distro in distros:
            if distro.name in seen:  # an earlier folder shadows it, as for imports
                continue
            seen.add(distro.name)
            if config.has_section(GROUP):
                found += [(name, spec, distro) for name, spec in config.items(GROUP, raw=True)]
    return found, errors


def _parse(name: str, spec: str, distro) -> entrypoints.EntryPoint:
    # The entry-point spec allows spaces around ':', which entrypoints' parser rejects.
    spec = re.sub(r'\s*:\s*', ':', spec.strip())
    return entrypoints.EntryPoint.from_string(spec, name, distro)


def _call(manager: pluggy.PluginManager, plugin, hook: str, **kwargs) -> list:
    """Call one hook of one plugin only: each plugin gets its own registries and verdict."""
    others = [p for p in manager.get_plugins() if p is not plugin]
    return manager.subset_hook_caller(hook, remove_plugins=others)(**kwargs)


# ADAPTERKIT_TRACE_PLUGINS: each hook is called for one plugin at a time (``_call``), so
# a call reaches one implementation, or none (then nothing is printed).
def _trace_call(hook: str, impls: list, kwargs: dict) -> None:
    for impl in impls:
        print(f'adapterkit: plugin {impl.plugin_name!r}: {hook}({", ".join(kwargs)})',
              file=sys.stderr)


def _trace_result(outcome, hook: str, impls: list, kwargs: dict) -> None:
    error = outcome.exception
    answer = f'raised {_one_line(error)}' if error else f'returned {outcome.get_result()!r}'
    for impl in impls:
        print(f'adapterkit: plugin {impl.plugin_name!r}: {hook} {answer}', file=sys.stderr)


def _config_dirs(results: list) -> List[str]:
    dirs = []
    for result in results:
        for folder in [result] if isinstance(result, (str, os.PathLike)) else result:
            folder = osp.abspath(os.fspath(folder))
            if not osp.isdir(folder):
                raise PluginError(f'adapterkit_config_dirs returned {folder}, '
                                  'which is not a folder')
            dirs.append(folder)
    return dirs


def _load(plugin: Plugin, entry: entrypoints.EntryPoint, manager: pluggy.PluginManager,
          registries: Dict[str, object], owners: dict) -> None:
    obj = entry.load()
    manager.register(obj, name=plugin.name)
    try:
        manager.check_pending()  # hooks with unknown names (earlier plugins passed already)
        if not manager.get_hookcallers(obj):
            raise PluginError(f'{entry.module_name} defines no adapterkit hooks '
                              '(are they decorated with @adapterkit.hookimpl?)')
        config_dirs = _config_dirs(_call(manager, obj, 'adapterkit_config_dirs'))
        pending = {}
        registrars = SimpleNamespace(**{key: _Registrar(key, target, plugin, pending, owners)
                                        for key, target in registries.items()})
        _call(manager, obj, 'adapterkit_register_modules', registries=registrars)
    except Exception:
        manager.unregister(obj)
        raise
    for (key, name), module in pending.items():
        registries[key].register_module(name=name, module=module)
        owners[(key, name)] = plugin
    plugin.modules = list(pending)
    plugin.config_dirs = config_dirs


def _own_registries() -> Dict[str, object]:
    from . import registry
    return {key: getattr(registry, key) for key in REGISTRY_NAMES}


def discover(path: Optional[List[str]] = None,
             registries: Optional[Dict[str, object]] = None) -> Discovery:
    """Find, load and register every plugin (of ``path``, default ``sys.path``) now.

    Prefer ``load_plugins``, which does this once per process. ``registries`` maps the
    names of ``REGISTRY_NAMES`` to the registries to fill (default: adapterkit's own).
    """
    allow = _env_names('ADAPTERKIT_PLUGINS')
    deny = _env_names('ADAPTERKIT_DISABLE_PLUGINS') or set()
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    if os.environ.get('ADAPTERKIT_TRACE_PLUGINS', '0') not in ('', '0'):
        manager.add_hookcall_monitoring(_trace_call, _trace_result)
    found, errors = _entry_points(sys.path if path is None else path)

    plugins, owners = [], {}
    for name, spec, distro in found:
        plugin = Plugin(name, distro.name, distro.version or '?')
        taken = next((p for p in plugins if p.name == name and p.status == 'loaded'), None)
        plugins.append(plugin)
        if name in deny or (allow is not None and name not in allow):
            plugin.status = 'disabled'
            continue
        try:
            if name == PROJECT:
                raise PluginError(f'the entry-point name {name!r} is reserved for '
                                  "adapterkit's own configs")
            if taken:
                raise PluginError(f'the entry-point name {name!r} is taken by '
                                  f'{taken.describe()}')
            registries = registries or _own_registries()  # (mmengine, torch) when needed
            _load(plugin, _parse(name, spec, distro), manager, registries, owners)
        except Exception as err:  # one broken plugin never stops the others
            plugin.status, plugin.error = 'failed', _one_line(err)

    names = {p.name for p in plugins}
    for variable, listed in (('ADAPTERKIT_PLUGINS', allow or set()),
                             ('ADAPTERKIT_DISABLE_PLUGINS', deny)):
        errors += [f'{variable} names {n!r}, but no installed plugin has that name'
                   for n in sorted(listed - names)]
    return Discovery(plugins, errors, manager)


_discovery: Optional[Discovery] = None


def load_plugins(report: bool = True) -> Discovery:
    """Discover plugins once per process; later calls return the same result.

    ``report`` logs every failed plugin and discovery problem as a warning (the
    ``adapterkit plugins`` command turns it off: it prints them itself).
    """
    global _discovery
    if _discovery is None:
        _discovery = discover()
        if report:
            for plugin in _discovery.plugins:
                if plugin.status == 'failed':
                    logger.warning(f'adapterkit: {plugin.describe()} skipped: {plugin.error}')
            for error in _discovery.errors:
                logger.warning(f'adapterkit: plugins: {error}')
    return _discovery


def resolve_config(path: str) -> str:
    """``PROVIDER::relative/path.py`` -> the config file; any other path unchanged.

    PROVIDER is a plugin's entry-point name (its ``adapterkit_config_dirs``), or
    ``adapterkit`` for adapterkit's own ``configs/`` folder.
    """
    provider, sep, relative = path.partition('::')
    if not sep:
        return path
    providers = load_plugins().config_providers()
    if provider not in providers:
        raise PluginError(f'{path}: no plugin named {provider!r} ships configs '
                          f'(providers: {", ".join(sorted(providers))})', plugin=provider)
    for folder in providers[provider]:
        candidate = osp.join(folder, relative)
        if osp.isfile(candidate):
            return candidate
    raise MissingFileError(f'config file not found: {path} '
                           f'(looked in {", ".join(providers[provider])})', file=path)


@contextmanager
def plugin_bases():
    """While a config loads, let its ``_base_`` entries be ``PROVIDER::path`` too.

    mmengine resolves ``scope::path`` bases only for OpenMMLab packages (a fixed table of
    names and a ``.mim`` folder inside them), so its lookup is wrapped for the duration of
    the load: providers adapterkit knows are resolved here, with no ``_scope_`` added (the
    configs use adapterkit's scope); anything else is left to mmengine.
    """
    from mmengine.config import Config
    original = vars(Config)['_get_cfg_path']
    providers = load_plugins().config_providers()

    def get_cfg_path(cfg_path, filename):
        provider, sep, _ = cfg_path.partition('::')
        if sep and provider in providers:
            return resolve_config(cfg_path), None
        return original.__func__(cfg_path, filename)

    Config._get_cfg_path = staticmethod(get_cfg_path)
    try:
        yield
    finally:
        Config._get_cfg_path = original
