"""The ``adapterkit`` command itself: a light start, help for every option, a closed pipe,
the default work dir, and a resumed run that has nothing left to do."""
import argparse
import os
import subprocess
import sys
import textwrap

from adapterkit.cli import _default_work_dir, build_parser

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ('torch', 'mmengine', 'timm')


def test_help_and_plugins_import_neither_torch_nor_mmengine_nor_timm():
    # Each command's --help, then `adapterkit plugins` with no plugin to load, in one
    # process as the console script runs them; then what got imported.
    commands = [['--help']] + [[name, '--help'] for name in subcommands()] + [['plugins']]
    script = textwrap.dedent(f'''
        import sys
        from adapterkit.cli import main
        for argv in {commands!r}:
            try:
                main(argv)
            except SystemExit as done:
                assert done.code == 0, (argv, done.code)
        heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})
        print('heavy:', heavy, file=sys.stderr)
    ''')
    env = dict(os.environ, ADAPTERKIT_PLUGINS='')  # load no plugin (DoRA imports torch)
    proc = subprocess.run([sys.executable, '-c', script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == 'heavy: []'
    assert 'usage: adapterkit train' in proc.stdout


def subcommands():
    return sorted(subparsers(build_parser()).choices)


def subparsers(parser):
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def test_every_option_of_every_subcommand_has_a_help_text():
    bare = [f'{name} {action.dest}' for name, sub in subparsers(build_parser()).choices.items()
            for action in sub._actions
            if not isinstance(action, argparse._HelpAction) and not (action.help or '').strip()]
    assert bare == []


def test_help_states_the_defaults_of_synth_and_bench():
    synth = subparsers(build_parser()).choices['synth'].format_help()
    for text in ('training images (default: 200)', 'validation images (default: 50)',
                 'at least 32 (default: 128)', 'files (default: 0)', 'pretrain'):
        assert text in ' '.join(synth.split()), text
    bench = ' '.join(subparsers(build_parser()).choices['bench'].format_help().split())
    for text in ('images per step (default: 2)', 'is reported (default: 5)',
                 'first (default: 1)', '(default: train)'):
        assert text in bench, text


def test_a_reader_that_went_away_ends_the_output_quietly():
    # `adapterkit params ... | head`: the pipe's reader is gone when the output comes. Any
    # command will do (main handles it): `plugins` loading none is the quickest.
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, '-m', 'adapterkit', 'plugins'], cwd=REPO,
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=300,
                              env=dict(os.environ, ADAPTERKIT_PLUGINS=''))
    finally:
        os.close(write)
    assert proc.stderr == ''
    assert proc.returncode == 141  # 128 + SIGPIPE, as a Unix tool killed by it


def test_a_plugin_config_gets_a_work_dir_named_after_its_file():
    assert _default_work_dir('hello::ln-tuning_swin-mini.py') == 'work_dirs/ln-tuning_swin-mini'
    assert _default_work_dir('adapterkit::quickstart/lora.py') == 'work_dirs/lora'
    assert _default_work_dir('configs/lora/lora_r4.py') == 'work_dirs/lora_r4'
