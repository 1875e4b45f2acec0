"""Plugins: discovery, isolation, taken names, allow/deny, configs, tracing, the CLI, and a
plugin written from docs/plugins.md alone, pip-installed, listed and trained. Every hook of
hookspecs.py has a test here named ``test_hook_<hook>_...`` and a section in docs/plugins.md
(both checked at the end).

Discovery is tested hermetically: each test writes `NAME-VERSION.dist-info` folders
(METADATA + entry_points.txt) and plugin modules into a temporary folder and points
`discover(path=...)` at it, with fresh registries unless adapterkit's own are the point.
"""
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import entrypoints
import pluggy
import pytest
from mmengine.config import Config
from mmengine.registry import Registry

from adapterkit import hookspecs, load_config, plugins
from adapterkit.datasets.synthetic import synthesize
from adapterkit.plugins import GROUP, REGISTRY_NAMES, Discovery, PluginError, discover
from adapterkit.registry import ADAPTERS

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = str(REPO / 'configs/quickstart/full_swin-mini_synthetic-128.py')

GOOD = '''
import adapterkit
from adapterkit.adapters import AdapterStrategy

class Tiny(AdapterStrategy):
    def apply(self, model):
        pass

@adapterkit.hookimpl
def adapterkit_register_modules(registries):
    registries.ADAPTERS.register_module()(Tiny)
    registries.MODELS.register_module(name='TinyModel', module=Tiny)
'''
EMPTY = '''
import adapterkit

@adapterkit.hookimpl
def adapterkit_register_modules(registries):
    pass
'''
TWIN = '''
import adapterkit

class Twin:
    pass

@adapterkit.hookimpl
def adapterkit_register_modules(registries):
    registries.ADAPTERS.register_module(module=Twin)
'''


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder laid out like site-packages (on sys.path) and a function that installs a
    plugin into it: a module plus its dist-info. Returns the module's name."""
    folder = tmp_path / 'site'
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    tag = uuid.uuid4().hex[:8]  # fresh module names: sys.modules outlives a test

    def install(dist, source, name=None, version='1.0', spec='{module}'):
        module = f'{dist}_{tag}'
        (folder / f'{module}.py').write_text(textwrap.dedent(source))
        info = folder / f'{dist}-{version}.dist-info'
        info.mkdir()
        (info / 'METADATA').write_text(
            f'Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n')
        (info / 'entry_points.txt').write_text(
            f'[{GROUP}]\n{name or dist} = {spec.format(module=module)}\n')
        return module

    install.folder = str(folder)
    return install


def fresh_registries():
    return {key: Registry(key.lower(), scope='plugin_test') for key in REGISTRY_NAMES}


def by_name(found):
    return {plugin.name: plugin for plugin in found.plugins}


def with_path(folder):
    """The environment with ``folder`` first on PYTHONPATH (what was there stays: it may be
    where adapterkit itself comes from)."""
    path = os.pathsep.join(filter(None, [folder, os.environ.get('PYTHONPATH')]))
    return dict(os.environ, PYTHONPATH=path)


def adapterkit(*args, pythonpath, cwd=REPO):
    env = with_path(pythonpath)
    return subprocess.run([sys.executable, '-m', 'adapterkit', *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_hook_adapterkit_register_modules_registers_what_each_plugin_brings(site):
    site('good_plugin', GOOD, version='1.2')
    site('spaced_plugin', '''
        import adapterkit

        class Hooks:
            @adapterkit.hookimpl
            def adapterkit_register_modules(self, registries):
                registries.TASKS.register_module(name='spaced_task', module=Hooks)

        hooks = Hooks()
    ''', spec='{module} : hooks')
    # entrypoints alone drops the spec with spaces around ':', which the spec allows
    with pytest.warns(UserWarning, match="Couldn't parse"):
        names = [ep.name for ep in entrypoints.get_group_all(GROUP, path=[site.folder])]
    assert names == ['good_plugin']

    registries = fresh_registries()
    found = discover(path=[site.folder], registries=registries)
    good, spaced = by_name(found)['good_plugin'], by_name(found)['spaced_plugin']
    assert (good.distribution, good.version, good.status) == ('good_plugin', '1.2', 'loaded')
    assert good.modules == [('ADAPTERS', 'Tiny'), ('MODELS', 'TinyModel')]
    tiny = registries['ADAPTERS'].module_dict['Tiny']
    assert registries['MODELS'].module_dict['TinyModel'] is tiny
    assert spaced.status == 'loaded' and spaced.modules == [('TASKS', 'spaced_task')]
    assert found.errors == []


def test_a_broken_plugin_is_reported_and_skipped_and_leaves_nothing(site):
    site('broken_plugin', "raise RuntimeError('boom at import')", version='0.3')
    site('halfway_plugin', '''
        import adapterkit

        class First:
            pass

        @adapterkit.hookimpl
        def adapterkit_register_modules(registries):
            registries.ADAPTERS.register_module(module=First)
            raise ValueError('failed halfway')
    ''')
    site('undecorated_plugin', 'def adapterkit_register_modules(registries):\n    pass\n')
    site('typo_plugin', '''
        import adapterkit

        @adapterkit.hookimpl
        def adapterkit_register_module(registries):
            pass
    ''')
    site('nofolder_plugin', '''
        import adapterkit

        @adapterkit.hookimpl
        def adapterkit_config_dirs():
            return ['/nonexistent/configs']
    ''')
    site('percent_plugin', EMPTY, spec='50%off')
    site('good_plugin', GOOD)

    registries = fresh_registries()
    found = by_name(discover(path=[site.folder], registries=registries))
    assert found['good_plugin'].status == 'loaded'
    errors = {name: p.error for name, p in found.items() if p.status == 'failed'}
    assert errors == {
        'broken_plugin': 'RuntimeError: boom at import',
        'halfway_plugin': 'ValueError: failed halfway',
        'undecorated_plugin': errors['undecorated_plugin'],
        'typo_plugin': errors['typo_plugin'],
        'nofolder_plugin': 'PluginError: adapterkit_config_dirs returned '
                           '/nonexistent/configs, which is not a folder',
        'percent_plugin': "BadEntryPoint: Couldn't parse entry point spec: '50%off'",
    }
    assert 'defines no adapterkit hooks' in errors['undecorated_plugin']
    assert "unknown hook 'adapterkit_register_module'" in errors['typo_plugin']
    assert (found['broken_plugin'].distribution, found['broken_plugin'].version) == \
        ('broken_plugin', '0.3')
    assert 'First' not in registries['ADAPTERS'].module_dict  # withdrawn with its plugin
    assert set(registries['ADAPTERS'].module_dict) == {'Tiny'}


def test_the_cli_reports_a_broken_plugin_and_still_works(site, monkeypatch):
    site('broken_plugin', "raise RuntimeError('boom at import')", version='0.3')
    site('good_plugin', EMPTY, version='1.2')

    listed = adapterkit('plugins', '--check', pythonpath=site.folder)
    assert 'broken_plugin  broken_plugin 0.3  failed: RuntimeError: boom at import' in listed.stdout
    assert 'good_plugin  good_plugin 1.2  loaded' in listed.stdout
    assert listed.returncode == 1  # and why, on stderr
    assert listed.stderr.splitlines() == [
        "adapterkit plugins: check failed: plugin 'broken_plugin' (broken_plugin 0.3) failed: "
        'RuntimeError: boom at import']
    monkeypatch.setenv('ADAPTERKIT_PLUGINS', 'good_plugin')
    assert adapterkit('plugins', '--check', pythonpath=site.folder).returncode == 0
    monkeypatch.delenv('ADAPTERKIT_PLUGINS')

    counted = adapterkit('params', QUICKSTART, '--json', pythonpath=site.folder)
    assert counted.returncode == 0, counted.stderr
    assert json.loads(counted.stdout)['trainable'] > 0
    assert ("adapterkit: plugin 'broken_plugin' (broken_plugin 0.3) skipped: "
            'RuntimeError: boom at import') in counted.stderr


def test_a_taken_name_is_an_error_naming_both_owners(site):
    module = site('thief_plugin', TWIN.replace('Twin', 'Full'), name='thief', version='2.0')
    (thief,) = discover(path=[site.folder]).plugins  # adapterkit's own registries
    assert thief.status == 'failed'
    assert thief.error == (
        f"PluginError: ADAPTERS name 'Full' is taken: adapterkit.adapters.full registered "
        f"it, and plugin 'thief' (thief_plugin 2.0) registers it again from {module}")
    assert ADAPTERS.get('Full').__module__ == 'adapterkit.adapters.full'


def test_two_plugins_cannot_share_a_name(site):
    first = site('first_plugin', TWIN)
    second = site('second_plugin', TWIN)
    site('third_plugin', EMPTY, name='first_plugin')  # an entry-point name in use
    found = discover(path=[site.folder], registries=fresh_registries()).plugins
    first_found, second_found, third_found = sorted(found, key=lambda p: p.distribution)
    assert first_found.status == 'loaded'
    assert second_found.error == (
        f"PluginError: ADAPTERS name 'Twin' is taken: {first} of plugin 'first_plugin' "
        f"(first_plugin 1.0) registered it, and plugin 'second_plugin' (second_plugin 1.0) "
        f"registers it again from {second}")
    assert third_found.error == ("PluginError: the entry-point name 'first_plugin' is taken "
                                 "by plugin 'first_plugin' (first_plugin 1.0)")


@pytest.mark.parametrize('env, loaded, errors', [
    ({}, 'abc', []),
    ({'ADAPTERKIT_PLUGINS': 'a, b,zz', 'ADAPTERKIT_DISABLE_PLUGINS': 'b'}, 'a',
     ["ADAPTERKIT_PLUGINS names 'zz', but no installed plugin has that name"]),
    ({'ADAPTERKIT_PLUGINS': ''}, '', []),
    ({'ADAPTERKIT_DISABLE_PLUGINS': 'c,typo'}, 'ab',
     ["ADAPTERKIT_DISABLE_PLUGINS names 'typo', but no installed plugin has that name"]),
])
def test_allow_and_deny_variables(site, monkeypatch, env, loaded, errors):
    for name in 'abc':
        site(f'{name}_plugin', EMPTY, name=name)
    monkeypatch.delenv('ADAPTERKIT_PLUGINS', raising=False)
    monkeypatch.delenv('ADAPTERKIT_DISABLE_PLUGINS', raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    found = discover(path=[site.folder], registries=fresh_registries())
    assert {p.name: p.status for p in found.plugins} == {
        name: 'loaded' if name in loaded else 'disabled' for name in 'abc'}
    assert found.errors == errors


def test_hook_adapterkit_config_dirs_serves_configs_by_name_and_as_base(site, tmp_path,
                                                                        monkeypatch):
    shipped = Path(site.folder) / 'shipped_configs' / 'tiny'
    shipped.mkdir(parents=True)
    (shipped / 'decoder.py').write_text(
        "_base_ = ['adapterkit::quickstart/full_swin-mini_synthetic-128.py']\n"
        "model = dict(adapter=dict(type='DecoderOnly'))\n")
    site('configs_plugin', '''
        import os.path as osp
        import adapterkit

        @adapterkit.hookimpl
        def adapterkit_config_dirs():
            return [osp.join(osp.dirname(__file__), 'shipped_configs')]
    ''', name='cfgs')
    found = discover(path=[site.folder], registries=fresh_registries())
    monkeypatch.setattr(plugins, '_discovery', found)
    lookup = vars(Config)['_get_cfg_path']

    cfg = load_config('cfgs::tiny/decoder.py')  # as `adapterkit train cfgs::...` does
    assert cfg.model.adapter.type == 'DecoderOnly'
    assert cfg.model.backbone.type == 'SwinBackbone'  # from adapterkit's own configs
    assert '_scope_' not in cfg.model  # plugin configs run in adapterkit's scope

    mine = tmp_path / 'mine.py'
    mine.write_text("_base_ = ['cfgs::tiny/decoder.py']\ntrain_cfg = dict(max_iters=7)\n")
    cfg = load_config(str(mine))
    assert cfg.train_cfg.max_iters == 7 and cfg.model.adapter.type == 'DecoderOnly'
    assert vars(Config)['_get_cfg_path'] is lookup  # mmengine's lookup is back

    with pytest.raises(PluginError, match="no plugin named 'nope' ships configs"):
        load_config('nope::tiny/decoder.py')
    with pytest.raises(FileNotFoundError, match='config file not found: cfgs::tiny/gone.py'):
        load_config('cfgs::tiny/gone.py')
    mine.write_text("_base_ = ['cfgs::tiny/gone.py']\n")
    with pytest.raises(FileNotFoundError, match='cfgs::tiny/gone.py'):
        load_config(str(mine))


def test_discovery_is_lazy_and_happens_once(monkeypatch):
    probe = subprocess.run(
        [sys.executable, '-c', 'import adapterkit; print(adapterkit.plugins._discovery)'],
        capture_output=True, text=True, timeout=300)
    assert probe.stdout.strip() == 'None', probe.stderr  # importing loads nothing

    calls = []
    monkeypatch.setattr(plugins, '_discovery', None)
    monkeypatch.setattr(plugins, 'discover', lambda: calls.append(1) or Discovery(
        [], [], pluggy.PluginManager('adapterkit')))
    load_config(QUICKSTART)
    load_config(QUICKSTART)
    assert calls == [1]


def doc_files():
    """The files of the example plugin in docs/plugins.md (fences tagged `file=PATH`)."""
    text = (REPO / 'docs/plugins.md').read_text()
    return dict(re.findall(r'```\w+ file=(\S+)\n(.*?)```', text, flags=re.S))


def test_a_plugin_written_from_the_docs_installs_shows_up_and_trains(tmp_path):
    source = tmp_path / 'adapterkit-hello'
    files = doc_files()
    assert {'pyproject.toml', 'src/adapterkit_hello/plugin.py', 'tests/test_hello.py'} <= set(files)
    for path, text in files.items():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        (source / path).write_text(text)

    target = tmp_path / 'installed'
    pip = subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps',
                          '--no-build-isolation', '--target', str(target), str(source)],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr
    assert list(target.glob('adapterkit_hello/configs/*.py'))  # the configs are in the package

    listed = adapterkit('plugins', '--json', pythonpath=str(target), cwd=tmp_path)
    hello = next(p for p in json.loads(listed.stdout)['plugins'] if p['name'] == 'hello')
    assert (hello['distribution'], hello['version'], hello['status']) == \
        ('adapterkit_hello', '0.1.0', 'loaded')
    assert hello['modules'] == [dict(registry='ADAPTERS', name='LNTuning')]

    # its own tests, as its author runs them
    env = with_path(str(target))
    tested = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                             'tests'], cwd=source, env=env, capture_output=True, text=True,
                            timeout=600)
    assert tested.returncode == 0, tested.stdout[-3000:]

    data = synthesize(str(tmp_path / 'data'), num_train=2, num_val=1, size=64)
    trained = adapterkit(  # in work_dirs/<the config's file name>
        'train', 'hello::ln-tuning_swin-mini_synthetic-128.py',
        '--cfg-options', f'train_dataloader.dataset.data_root={data}',
        'train_dataloader.batch_size=2', 'train_cfg.max_iters=2',
        'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None',
        pythonpath=str(target), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (tmp_path / 'work_dirs/ln-tuning_swin-mini_synthetic-128/iter_2.pth').is_file()


def test_the_trace_switch_prints_every_hook_call_and_its_answer(site, monkeypatch, capsys):
    folder = site.folder
    site('dirs_plugin', f'''
        import adapterkit

        @adapterkit.hookimpl
        def adapterkit_config_dirs():
            return [{folder!r}]
    ''')
    site('good_plugin', GOOD)
    site('halfway_plugin', '''
        import adapterkit

        @adapterkit.hookimpl
        def adapterkit_register_modules(registries):
            raise ValueError('failed halfway')
    ''')
    monkeypatch.delenv('ADAPTERKIT_TRACE_PLUGINS', raising=False)
    discover(path=[site.folder], registries=fresh_registries())
    assert capsys.readouterr().err == ''  # off unless asked for

    monkeypatch.setenv('ADAPTERKIT_TRACE_PLUGINS', '1')
    discover(path=[site.folder], registries=fresh_registries())
    assert capsys.readouterr().err.splitlines() == [  # a hook a plugin lacks is not called
        "adapterkit: plugin 'dirs_plugin': adapterkit_config_dirs()",
        f"adapterkit: plugin 'dirs_plugin': adapterkit_config_dirs returned [[{folder!r}]]",
        "adapterkit: plugin 'good_plugin': adapterkit_register_modules(registries)",
        "adapterkit: plugin 'good_plugin': adapterkit_register_modules returned []",
        "adapterkit: plugin 'halfway_plugin': adapterkit_register_modules(registries)",
        "adapterkit: plugin 'halfway_plugin': adapterkit_register_modules raised "
        "ValueError: failed halfway",
    ]


# ------------------------------------------------------------------ the hooks, kept in step
HOOKS = {name: inspect.signature(hook) for name, hook in vars(hookspecs).items()
         if name.startswith('adapterkit_')}


def test_every_hook_documents_its_parameters_and_what_it_returns():
    assert set(HOOKS) == {'adapterkit_register_modules', 'adapterkit_config_dirs'}
    for name, signature in HOOKS.items():
        doc = inspect.getdoc(getattr(hookspecs, name))
        args = re.search(r'^Args:\n(.*?)(?:\n\n|\Z)', doc, flags=re.S | re.M)
        documented = re.findall(r'^    (\w+):', args.group(1), flags=re.M) if args else []
        assert documented == list(signature.parameters), name
        assert re.search(r'^Returns:\n    \S', doc, flags=re.M), name


def test_plugin_hooks_have_tests():
    tests = [name for name in globals() if name.startswith('test_hook_')]
    assert [hook for hook in HOOKS if not any(t.startswith(f'test_hook_{hook}_')
                                              for t in tests)] == []


def test_plugin_hooks_are_documented():
    """docs/plugins.md has a section ``### hook(arguments)`` per hook, with the hook's own
    arguments, that names each argument again and says what the hook returns."""
    text = (REPO / 'docs/plugins.md').read_text()
    sections = dict(re.findall(r'^### (adapterkit_\w+\(.*?\))\n(.*?)(?=^#|\Z)', text,
                               flags=re.S | re.M))
    assert set(sections) == {f'{name}{signature}' for name, signature in HOOKS.items()}
    for heading, body in sections.items():
        arguments = heading[heading.index('(') + 1:-1]
        assert all(f'`{arg}`' in body for arg in filter(None, arguments.split(', '))), heading
        assert 'Returns' in body, heading
