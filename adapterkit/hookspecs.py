"""The hooks a plugin may implement: adapterkit's whole plugin interface, in one file.

A plugin is a module, named by an entry point in the group ``adapterkit.plugins``, whose
functions carry ``@adapterkit.hookimpl`` and the name of one of the hooks below. It
implements any subset of them, and each implementation takes any subset of its hook's
arguments, which adapterkit always passes by keyword. Every hook is called once per plugin
(never for all plugins at once), so a plugin's answer, and its failure, are its own.

How plugins are found and isolated is ``plugins.py``; the guide is docs/plugins.md, which
documents every hook here (a test keeps the two in step).
"""
import pluggy

PROJECT = 'adapterkit'

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def adapterkit_register_modules(registries):
    """Register the plugin's classes (strategies, tasks, heads, datasets, ...).

    Args:
        registries: one attribute per registry a plugin may fill: ``MODELS``, ``DATASETS``,
            ``TRANSFORMS``, ``METRICS``, ``HOOKS``, ``ADAPTERS`` and ``TASKS``. Each takes
            ``register_module(name=None, module=None)`` as mmengine's registries do
            (``registries.ADAPTERS.register_module(module=MyStrategy)``, or the decorator
            form ``registries.ADAPTERS.register_module()(MyStrategy)``). A name that is
            already taken, by adapterkit or by another plugin, is an error naming both
            owners.

    Returns:
        Nothing (a value is ignored). What the plugin registers takes effect only once the
        whole hook has returned: a plugin that raises halfway leaves nothing registered.
    """


@hookspec
def adapterkit_config_dirs():
    """Name the folders of configs the plugin ships.

    Returns:
        A list of folders (``str`` or ``os.PathLike``; one folder alone is taken too). A
        file ``path/in/folder.py`` under one of them is then the config
        ``NAME::path/in/folder.py`` (NAME: the plugin's entry-point name) on the command
        line and in ``_base_``. A folder that does not exist fails the plugin.
    """
