"""Building and loading C kernels (layers/native.py): real compiles into a private cache."""
import ctypes
import platform
import warnings

import pytest

from adapterkit.layers import native

pytestmark = pytest.mark.usefixtures('c_compiler')

SOURCE = 'int twice(int x) { return 2 * x; }\n'


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv('ADAPTERKIT_CACHE', str(tmp_path / 'cache'))
    monkeypatch.delenv('CC', raising=False)
    monkeypatch.delenv(native.ENV, raising=False)
    monkeypatch.delenv(native.MARCH_ENV, raising=False)
    return tmp_path / 'cache' / 'native'


def test_a_kernel_builds_once_into_the_cache_and_loads(tmp_path, cache):
    source = tmp_path / 'twice.c'
    source.write_text(SOURCE)
    library = native.load(source)
    library.twice.argtypes, library.twice.restype = [ctypes.c_int], ctypes.c_int
    assert library.twice(21) == 42
    built = native.build(source)
    assert built.parent == cache and [p.name for p in cache.iterdir()] == [built.name]
    stamp = built.stat().st_mtime_ns
    assert native.build(source) == built and built.stat().st_mtime_ns == stamp  # reused
    source.write_text(SOURCE + '// changed\n')
    assert native.build(source) != built  # a changed kernel gets a build of its own


AVX2_PROBE = """
int has_avx2(void) {
#ifdef __AVX2__
    return 1;
#else
    return 0;
#endif
}
"""


@pytest.mark.skipif(platform.machine() != 'x86_64', reason='x86-64 micro-architecture levels')
def test_the_target_cpu_reaches_the_compiler_and_keys_the_build(tmp_path, cache, monkeypatch):
    source = tmp_path / 'probe.c'
    source.write_text(AVX2_PROBE)
    built = {}
    for march, avx2 in (('x86-64', 0), ('x86-64-v3', 1)):  # v3: AVX2, FMA, no AVX-512
        monkeypatch.setenv(native.MARCH_ENV, march)
        built[march] = native.build(source)
        assert ctypes.CDLL(str(built[march])).has_avx2() == avx2, march
    assert built['x86-64'] != built['x86-64-v3']  # one build per target, both kept
    monkeypatch.setenv(native.MARCH_ENV, 'no-such-cpu')
    with pytest.raises(OSError, match=r'cc failed on .*probe\.c: .*no-such-cpu'):
        native.build(source)


def test_a_kernel_that_does_not_compile_warns_once_and_leaves_nothing(tmp_path, cache):
    source = tmp_path / 'broken.c'
    source.write_text('int broken( { return 0; }\n')
    with pytest.warns(RuntimeWarning, match=r'C kernel broken\.c unavailable \(cc failed on '
                                            r'.*broken\.c: .*error'):
        assert native.load(source) is None
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert native.load(source) is None  # answered from memory, no second warning
    assert not cache.exists() or list(cache.iterdir()) == []


def test_a_missing_compiler_is_named(tmp_path, cache, monkeypatch):
    source = tmp_path / 'nocompiler.c'
    source.write_text(SOURCE)
    monkeypatch.setenv('CC', 'no-such-cc')
    with pytest.warns(RuntimeWarning, match="no C compiler 'no-such-cc' on PATH"):
        assert native.load(source) is None


def test_kernels_can_be_turned_off(tmp_path, cache, monkeypatch):
    source = tmp_path / 'off.c'
    source.write_text(SOURCE)
    monkeypatch.setenv(native.ENV, '0')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert native.load(source) is None
    assert not cache.exists()
