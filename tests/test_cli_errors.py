"""What the CLI prints when something fails: one line for a mistake a user can fix (an
adapterkit error, a file-system error with its path), the traceback for a bug."""
import os
import os.path as osp
import resource
import signal
import subprocess
import sys

import pytest
import torch

from adapterkit.adapters import AdapterStrategy
from adapterkit.cli import main
from adapterkit.errors import AdapterkitError, StrategyError
from adapterkit.registry import ADAPTERS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
LORA = osp.join(REPO, 'configs/quickstart/lora_swin-mini_synthetic-128.py')
BITFIT = osp.join(REPO, 'configs/quickstart/bitfit_swin-mini_synthetic-128.py')  # no options


def error_lines(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_a_misspelled_strategy_option_is_one_line_naming_it_and_the_accepted_ones(cli):
    proc = cli('params', LORA, '--cfg-options', 'model.adapter.rnak=4', check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "adapterkit params: error: LoRA: unknown option 'rnak' (options: targets, rank, "
        "alpha, scale, dropout, overrides, trainable)"]


def test_a_plugin_strategy_gets_its_options_checked_the_same_way(capsys):
    config = 'dora::quickstart/dora_swin-mini_r4_synthetic-128.py'  # the example plugin's
    assert main(['params', config, '--cfg-options', 'model.adapter.rnak=4']) == 2
    [line] = error_lines(capsys)
    assert line.startswith("adapterkit params: error: DoRA: unknown option 'rnak' (options: ")
    assert 'rank' in line


def test_an_unknown_strategy_is_one_line_naming_the_registered_ones(capsys):
    assert main(['params', LORA, '--cfg-options', 'model.adapter.type=LoRa']) == 2
    [line] = error_lines(capsys)
    assert line.startswith("adapterkit params: error: adapter: unknown strategy 'LoRa' "
                           '(strategies: ')
    assert 'LoRA' in line and 'MTLoRA' in line


def test_an_option_the_model_does_not_take_is_one_line_before_anything_is_built(cli,
                                                                              tmp_path):
    config = tmp_path / 'typo.py'  # in a file: --cfg-options has its own typo guard
    config.write_text(f'_base_ = [{LORA!r}]\nmodel = dict(adaptr=dict(rank=4))\n')
    proc = cli('params', str(config), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "adapterkit params: error: MultiTaskModel: unknown option 'adaptr' in model (options: "
        'backbone, tasks, head, heads, adapter, train_heads, channels_last, torch_compile, '
        'data_preprocessor, init_cfg)']


@pytest.mark.parametrize('option, line', [
    ('model.backbone.embed_dims=16', '--cfg-options model.backbone.embed_dims: no key '
     'embed_dims in model.backbone; did you mean model.backbone.embed_dim?'),
    ('model.head.chanels=[8,8,8,8]', "HRNetHead: unknown option 'chanels' in model.head "
     '(options: in_channels, num_outputs, channels, init_cfg)'),
    ('model.heads.sal.type=HRNetHed', "model.heads.sal: unknown type 'HRNetHed' in the model "
     'registry (closest: HRNetHead'),
    ('model.backbone.type=SwinBackbon', "model.backbone: unknown type 'SwinBackbon' in the model "
     'registry (closest: SwinBackbone)'),
    ('train_dataloader.dataset.type=PascalMT', "train_dataloader.dataset: unknown type "
     "'PascalMT' in the dataset registry (closest: PascalMTDataset)"),
    ('val_evaluator.type=MultiTaskMetrics', "val_evaluator: unknown type 'MultiTaskMetrics' in "
     'the metric registry (closest: MultiTaskMetric'),
    ('optim_wrapper.optimizer.type=AdamX', "optim_wrapper.optimizer: unknown type 'AdamX' in "
     'the optimizer registry (closest: '),
    ('default_hooks.checkpoint.type=CheckpointHok', "default_hooks.checkpoint: unknown type "
     "'CheckpointHok' in the hook registry (closest: CheckpointHook"),
])
def test_an_unknown_option_or_type_anywhere_is_one_line_naming_the_key(capsys, option, line):
    assert main(['params', LORA, '--cfg-options', option]) == 2
    [error] = error_lines(capsys)
    assert error.startswith(f'adapterkit params: error: {line}')


def test_the_closest_names_come_from_the_registry_and_its_parents():
    from adapterkit import load_config
    from adapterkit.errors import UnknownNameError
    with pytest.raises(UnknownNameError) as caught:
        load_config(LORA, {'param_scheduler.1.type': 'CosineAnealingLR'})
    assert caught.value.key == 'param_scheduler.1'
    assert 'closest: CosineAnnealingLR' in str(caught.value)  # mmengine's, not ours


def test_the_error_carries_what_failed():
    from adapterkit import build_model, load_config
    with pytest.raises(StrategyError) as caught:
        build_model(load_config(LORA, {'model.adapter.rnak': 4}))
    assert caught.value.fields == dict(strategy='LoRA', option='rnak')
    assert isinstance(caught.value, ValueError)  # code that caught ValueError still does


class _Broken(AdapterStrategy):
    """A strategy with a bug: its apply raises a builtin error."""

    error = RuntimeError

    def apply(self, model):
        raise self.error('a bug inside a strategy')


@pytest.mark.parametrize('error', [RuntimeError, KeyError, ValueError, TypeError])
def test_a_bug_shows_its_traceback_not_a_tidy_line(tmp_path, capsys, error):
    name = f'Broken{error.__name__}'
    ADAPTERS.register_module(name=name, module=type(name, (_Broken,), dict(error=error)))
    try:
        with pytest.raises(error, match='a bug inside a strategy'):
            main(['params', BITFIT, '--cfg-options', f'model.adapter.type={name}'])
    finally:
        ADAPTERS._module_dict.pop(name)
    assert 'error:' not in capsys.readouterr().err


def test_a_missing_file_prints_its_path(tmp_path, capsys):
    missing = str(tmp_path / 'nowhere.py')
    assert main(['params', missing]) == 2
    assert error_lines(capsys) == [f'adapterkit params: error: config file not found: {missing}']
    assert main(['test', LORA, str(tmp_path / 'gone.pth')]) == 2
    assert error_lines(capsys) == [
        f'adapterkit test: error: checkpoint not found: {tmp_path / "gone.pth"}']


def test_a_file_system_error_prints_its_path(tmp_path, capsys):
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'keep.txt').write_text('mine')
    assert main(['synth', str(foreign), '--num-train', '1', '--num-val', '1']) == 2
    assert error_lines(capsys) == [
        'adapterkit synth: error: synthetic data target is not empty and was not written by '
        f'adapterkit synth: {foreign}']
    blocked = tmp_path / 'file.txt'
    blocked.write_text('not a folder')
    assert main(['synth', str(blocked / 'data'), '--num-train', '1', '--num-val', '1']) == 2
    [line] = error_lines(capsys)  # the system's words for it, and the path
    assert line.startswith('adapterkit synth: error: ') and line.endswith(str(blocked))


def test_every_error_class_of_the_package_derives_from_the_base():
    import importlib
    import inspect
    import pkgutil

    import adapterkit
    defined = []
    for info in pkgutil.walk_packages(adapterkit.__path__, 'adapterkit.'):
        if info.name != 'adapterkit.__main__':
            module = importlib.import_module(info.name)
            defined += [c for _, c in inspect.getmembers(module, inspect.isclass)
                        if issubclass(c, BaseException) and c.__module__ == info.name]
    assert len(defined) >= 12 and all(issubclass(c, AdapterkitError) for c in defined)


# ------------------------------------------------------------------ faults of issue 16
QUICKSTART = osp.join(REPO, 'configs/quickstart/full_swin-mini_synthetic-128.py')


def test_a_config_with_a_syntax_error_is_one_line_with_the_file_and_line(tmp_path, capsys):
    broken = tmp_path / 'broken.py'
    broken.write_text(f"_base_ = [{LORA!r}]\nmodel = dict(adapter=dict(rank=4)\n")
    child = tmp_path / 'child.py'
    child.write_text("_base_ = ['broken.py']\n")
    for config in (broken, child):  # the broken file itself, or a base of the config
        assert main(['params', str(config)]) == 2
        assert error_lines(capsys) == [
            f"adapterkit params: error: {broken}:2: syntax error: '(' was never closed"]


def test_a_misspelled_override_is_refused_naming_the_closest_key(capsys):
    assert main(['params', LORA, '--cfg-options', 'trian_cfg.max_iters=1']) == 2
    assert error_lines(capsys) == [
        'adapterkit params: error: --cfg-options trian_cfg.max_iters: no key trian_cfg in the '
        'config; did you mean train_cfg? (a new key this close to an existing one goes in a '
        'config file: docs/user_guide.md)']


@pytest.fixture
def broken_checkpoints(tmp_path, tiny_model):
    """An empty .pth, a real one cut in half, a real .safetensors cut in half (its header
    whole) and a .safetensors file of garbage."""
    from safetensors.torch import save_file
    whole = tmp_path / 'whole.pth'
    torch.save({'state_dict': tiny_model().state_dict()}, whole)
    data = whole.read_bytes()
    (tmp_path / 'cut.pth').write_bytes(data[:len(data) // 2])
    (tmp_path / 'empty.pth').write_bytes(b'')
    save_file(tiny_model().state_dict(), str(tmp_path / 'whole.safetensors'))
    data = (tmp_path / 'whole.safetensors').read_bytes()
    (tmp_path / 'cut.safetensors').write_bytes(data[:len(data) // 2])
    (tmp_path / 'garbage.safetensors').write_bytes(bytes(range(256)) * 4)
    return {name: str(tmp_path / name) for name in ('cut.pth', 'empty.pth', 'cut.safetensors',
                                                    'garbage.safetensors')}


def test_a_truncated_or_empty_checkpoint_is_one_line_naming_it(
        broken_checkpoints, data_options, synth_root, tmp_path, capsys):
    options = data_options(synth_root, 2)
    cut, empty = broken_checkpoints['cut.pth'], broken_checkpoints['empty.pth']
    for command in (['test', QUICKSTART, cut], ['train', QUICKSTART, '--resume', cut],
                    ['train', QUICKSTART], ['test', QUICKSTART, empty]):
        extra = [f'load_from={cut}'] if command == ['train', QUICKSTART] else []
        assert main([*command, '--work-dir', str(tmp_path / 'w'), *options, *extra]) == 2
        [line] = error_lines(capsys)[-1:]
        path = empty if empty in command else cut
        assert line.startswith(f'adapterkit {command[0]}: error: {path}: not a checkpoint '
                               '(truncated?): ')


def test_a_damaged_safetensors_file_is_one_line_naming_it(
        broken_checkpoints, data_options, synth_root, tmp_path, capsys):
    for name, says in (('cut.safetensors', 'not a readable safetensors file ('),
                       ('garbage.safetensors', 'neither a torch nor a safetensors file')):
        path = broken_checkpoints[name]
        for option in ('load_from', 'model.backbone.pretrained'):
            assert main(['train', QUICKSTART, '--work-dir', str(tmp_path / 'w'),
                         *data_options(synth_root, 2), f'{option}={path}']) == 2
            [line] = error_lines(capsys)[-1:]
            assert line.startswith(f'adapterkit train: error: {path}: {says}')


def test_a_work_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / 'file').write_text('x')
    assert main(['train', LORA, '--work-dir', str(tmp_path / 'file')]) == 2
    assert error_lines(capsys) == [f'adapterkit train: error: work dir {tmp_path}/file is a '
                                   'file, not a folder; choose another path']


def test_unwritable_outputs_of_test_are_refused_before_anything_is_evaluated(tmp_path, capsys):
    checkpoint, blocked = tmp_path / 'any.pth', tmp_path / 'file'
    checkpoint.write_bytes(b'never read')
    blocked.write_text('x')
    for option, value, what in (
            ('--show-dir', blocked, f'--show-dir {blocked} is a file'),
            ('--out', blocked / 'metrics.json', f'--out {blocked}/metrics.json: its folder '
                                                f'{blocked} is a file')):
        assert main(['test', LORA, str(checkpoint), '--work-dir', str(tmp_path / 'w'),
                     option, str(value)]) == 2
        assert error_lines(capsys) == [f'adapterkit test: error: {what}, not a folder; '
                                       'choose another path']
    assert not (tmp_path / 'w').exists()  # no Runner was built, nothing evaluated


def test_a_second_command_on_a_work_dir_in_use_is_refused_naming_the_holder(
        tmp_path, capsys, lock_holder):
    proc = lock_holder(tmp_path / 'run')
    assert main(['train', LORA, '--work-dir', str(tmp_path / 'run')]) == 2
    assert error_lines(capsys) == [
        f'adapterkit train: error: work dir {tmp_path}/run is in use by another adapterkit '
        f'process (pid {proc.pid}); wait for it to end, or choose another --work-dir']


def test_a_full_disk_under_the_work_dir_is_one_line_naming_the_file(data_options, synth_root,
                                                                     tmp_path):
    # No unprivileged way to fill a disk: a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored)
    # fails the checkpoint's write() as ENOSPC would, with EFBIG, and no file name either.
    def small_files_only():
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 * 2**20, 2 * 2**20))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    work_dir = tmp_path / 'run'
    proc = subprocess.run([sys.executable, '-m', 'adapterkit', 'train', LORA, '--work-dir',
                           str(work_dir), *data_options(synth_root, 2)], cwd=REPO,
                          capture_output=True, text=True, timeout=600, preexec_fn=small_files_only)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f'adapterkit train: error: File too large: {work_dir}/iter_2.pth')
    assert not [name for name in os.listdir(work_dir) if '.pth' in name]  # nor a temporary
