"""adapterkit and its example plugin as a user gets them: wheels built from the checkout,
installed into a fresh folder and run from outside the checkout."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DORA = REPO / 'plugins' / 'adapterkit-dora'
LORA = 'quickstart/lora_swin-mini_synthetic-128.py'
DORA_CONFIG = 'dora::quickstart/dora_swin-mini_r4_synthetic-128.py'  # inherits adapterkit::
CACHES = shutil.ignore_patterns('__pycache__', '*.egg-info', 'build', '*.so')


def sources(target: Path) -> list:
    """Copies of the two projects to build from: setuptools writes build/ and egg-info
    beside the sources it builds, which must not land in the checkout."""
    copy = target / 'adapterkit'
    for name in ('adapterkit', 'configs'):  # adapterkit/configs stays a link to configs/
        shutil.copytree(REPO / name, copy / name, symlinks=True, ignore=CACHES)
    for name in ('pyproject.toml', 'README.md'):
        shutil.copy(REPO / name, copy / name)
    shutil.copytree(DORA, target / 'adapterkit-dora', ignore=CACHES)
    return [copy, target / 'adapterkit-dora']


def trainable(config: Path) -> int:
    """The trainable count the config's header states (tests/test_configs.py checks it)."""
    return int(re.search(r'([\d,]*\d) trainable', config.read_text()).group(1).replace(',', ''))


def test_the_wheels_ship_the_configs_and_run_from_a_fresh_install(tmp_path):
    built = subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '-v', '--no-deps', '--no-build-isolation',
         '--wheel-dir', str(tmp_path / 'wheels'), *map(str, sources(tmp_path / 'src'))],
        capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    # no deprecated metadata (license table) and no data folder setuptools would drop
    assert 'Warning:' not in built.stdout + built.stderr, built.stdout[-3000:]

    site = tmp_path / 'site'
    wheels = sorted(map(str, (tmp_path / 'wheels').glob('*.whl')))
    assert len(wheels) == 2
    installed = subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps',
                                '--target', str(site), *wheels],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]

    # From outside the checkout, with only the installed folder on the path: the checkout's
    # adapterkit and plugin are not importable, torch and the rest come from this Python.
    env = {k: v for k, v in os.environ.items() if not k.startswith(('PYTHONPATH',
                                                                    'ADAPTERKIT_'))}
    env.update(PYTHONPATH=str(site), OMP_NUM_THREADS='1')
    where = subprocess.run(
        [sys.executable, '-c', 'import adapterkit, adapterkit_dora, adapterkit.plugins as p; '
         'print(adapterkit.__file__, adapterkit_dora.__file__, p.OWN_CONFIGS)'],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert where.returncode == 0, where.stderr[-3000:]
    paths = where.stdout.split()
    assert all(path.startswith(str(site)) for path in paths), paths
    assert (Path(paths[2]) / 'compare' / 'quickstart.py').is_file()  # `adapterkit demo`'s

    # The console script on both configs at once (two cores: about the time of one).
    adapterkit = str(site / 'bin' / 'adapterkit')
    expected = {f'adapterkit::{LORA}': trainable(REPO / 'configs' / LORA),
                DORA_CONFIG: trainable(DORA / 'src/adapterkit_dora/configs' /
                                       DORA_CONFIG.partition('::')[2])}
    runs = {config: subprocess.Popen([adapterkit, 'params', config, '--json'], cwd=tmp_path,
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True) for config in expected}
    for config, run in runs.items():
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-3000:]
        assert json.loads(out)['trainable'] == expected[config], config
