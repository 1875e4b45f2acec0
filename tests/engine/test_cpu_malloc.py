"""glibc's allocator set by adapterkit's CPU runs: checked in fresh processes, as the setting
is once per process."""
import subprocess
import sys

import pytest

PROBE = '''
import resource, sys, torch
from adapterkit.engine.cpu_malloc import configure_cpu_malloc
mode = configure_cpu_malloc()
def faults_of_a_tensor(megabytes):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(megabytes * 2**18)  # written, then freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_a_tensor(64)
print(mode, faults_of_a_tensor(48))
'''


def probe(env_mode=None):
    env = {'PATH': '/usr/bin:/bin'}
    if env_mode is not None:
        env['ADAPTERKIT_CPU_MALLOC'] = env_mode
    proc = subprocess.run([sys.executable, '-c', PROBE], capture_output=True, text=True,
                          env=env, timeout=300)
    return proc


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc only')
def test_retain_reuses_freed_pages_and_system_keeps_glibc_defaults():
    retain = probe().stdout.split()
    system = probe('system').stdout.split()
    assert retain[0] == 'retain' and system[0] == 'system'
    pages = 48 * 2**20 // 4096
    assert int(retain[1]) < pages // 10  # the second tensor reuses the first one's pages
    assert int(system[1]) > pages // 2   # glibc maps (and faults in) a fresh block


def test_an_unknown_mode_is_one_clear_error():
    proc = probe('fast')
    assert proc.returncode != 0
    assert "ADAPTERKIT_CPU_MALLOC must be one of ('retain', 'system'), got 'fast'" in proc.stderr
