"""The atomic-write and file-hash helpers of ``reidkit._io``."""

import hashlib

import pytest

from reidkit._io import atomic_write, file_sha256, update_file_digest


def test_file_sha256_equals_hashlib_of_the_whole_file_across_block_boundaries(tmp_path):
    data = bytes(range(256)) * ((3 << 20) // 256 + 7)  # 3 MiB and a bit: several 1 MiB blocks, a short tail
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256(b"prefix")
    update_file_digest(digest, path)
    assert digest.hexdigest() == hashlib.sha256(b"prefix" + data).hexdigest()


def test_file_sha256_of_an_empty_file_and_a_missing_file(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "missing")


def test_a_failing_atomic_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")

    def write(stream):
        stream.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, write)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
