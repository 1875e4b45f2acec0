import errno
import json
import os

import pytest

from adapterkit import fileio
from adapterkit.fileio import atomic_open, atomic_write, read_json, write_json, write_text


def test_a_write_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / 'sub' / 'metrics.json'  # the folder is created
    write_json(str(path), {'a': 1})
    write_json(str(path), {'a': 2, 'b': [1, 2]})
    assert read_json(str(path)) == {'a': 2, 'b': [1, 2]}
    assert path.read_text().endswith('\n')
    assert os.listdir(path.parent) == ['metrics.json']


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / 'report.md'
    write_text(str(path), 'old')

    def half_then_crash(tmp):
        with open(tmp, 'w') as f:
            f.write('half')
        raise RuntimeError('disk on fire')

    with pytest.raises(RuntimeError, match='disk on fire'):
        atomic_write(str(path), half_then_crash)
    with pytest.raises(ZeroDivisionError):
        with atomic_open(str(path)) as f:
            f.write('half')
            1 / 0
    assert path.read_text() == 'old'
    assert os.listdir(tmp_path) == ['report.md']


def test_the_writer_gets_a_path_in_the_target_folder_and_a_file_object_form_exists(tmp_path):
    seen = []
    atomic_write(str(tmp_path / 'a.bin'), lambda tmp: (seen.append(tmp),
                                                        open(tmp, 'wb').write(b'\x00\x01')))
    assert os.path.dirname(seen[0]) == str(tmp_path) and seen[0] != str(tmp_path / 'a.bin')
    assert (tmp_path / 'a.bin').read_bytes() == b'\x00\x01'
    with atomic_open(str(tmp_path / 'b.json')) as f:
        json.dump([1], f)
    assert read_json(str(tmp_path / 'b.json')) == [1]
    assert read_json(str(tmp_path / 'missing.json')) is None


def test_a_written_file_has_the_permissions_of_a_plainly_written_one(tmp_path):
    plain = tmp_path / 'plain.txt'
    plain.write_text('x')
    write_text(str(tmp_path / 'atomic.txt'), 'x')  # not mkstemp's private 0600
    assert (tmp_path / 'atomic.txt').stat().st_mode == plain.stat().st_mode


@pytest.mark.parametrize('umask', [0o022, 0o077])
def test_an_export_written_by_safetensors_honours_the_umask(tmp_path, umask):
    import torch
    from safetensors.torch import save_file

    old = os.umask(umask)
    try:
        atomic_write(str(tmp_path / 'lora.safetensors'),  # safetensors alone writes 0600
                     lambda tmp: save_file({'a': torch.zeros(2)}, tmp))
        atomic_write(str(tmp_path / 'lib.so'),  # a writer's execute bits stay
                     lambda tmp: (open(tmp, 'w').close(), os.chmod(tmp, 0o755)))
    finally:
        os.umask(old)
    assert (tmp_path / 'lora.safetensors').stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / 'lib.so').stat().st_mode & 0o777 == 0o755


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    path = tmp_path / 'results.md'
    write_text(str(path), 'old')
    path.chmod(0o640)
    write_text(str(path), 'new')
    assert path.read_text() == 'new' and path.stat().st_mode & 0o777 == 0o640


def test_a_full_disk_names_the_file_being_written_and_keeps_the_old_one(tmp_path):
    # /dev/full fails every write with ENOSPC, as a full disk does: the error a write()
    # raises names no file, so the one line the CLI prints would have no path without it.
    path = tmp_path / 'iter_4.pth'
    write_text(str(path), 'old')

    def onto_a_full_disk(tmp):
        with open(tmp, 'wb') as f, open('/dev/full', 'wb') as full:
            f.write(b'half')
            full.write(b'\0' * 2**16)

    with pytest.raises(OSError) as caught:
        atomic_write(str(path), onto_a_full_disk)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(path)
    assert path.read_text() == 'old' and os.listdir(tmp_path) == ['iter_4.pth']


def test_temporaries_are_named_so_that_they_can_be_found(tmp_path):
    with fileio.atomic_path(str(tmp_path / 'iter_4.pth')) as tmp:
        assert fileio.TEMPORARY.fullmatch(os.path.basename(tmp)).group(1) == 'iter_4.pth'
        open(tmp, 'w').close()
