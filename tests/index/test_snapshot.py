"""Noticing another process's writes: Index.changed() is one cheap query, refresh() reloads only when needed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("faiss", reason="the index needs faiss-cpu: pip install 'reidkit[faiss]'")

from reidkit.index import Index  # noqa: E402

DIM = 4
_ADD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from reidkit.index import Index

    with Index.open(sys.argv[1]) as index:
        index.add(np.eye(2, 4, k=1, dtype=np.float32), [{"path": "b"}, {"path": "c"}], fingerprint="m")
    """
)


def test_a_reader_notices_another_process_write_and_refreshes(tmp_path):
    directory = tmp_path / "index"
    with Index.create(directory, dim=DIM, fingerprint="m") as index:
        index.add(np.eye(1, DIM, dtype=np.float32), [{"path": "a"}], fingerprint="m")
        assert not index.changed()  # its own write is what it sees
    reader = Index.open(directory, readonly=True)
    try:
        assert not reader.changed() and not reader.refresh() and not reader.changed()
        env = dict(os.environ, OMP_NUM_THREADS="1")
        subprocess.run([sys.executable, "-c", _ADD, str(directory)], check=True, env=env, timeout=120)
        assert reader.changed() and len(reader) == 1  # still its snapshot until refreshed
        statements: list[str] = []
        reader._snapshot.store._probe.set_trace_callback(statements.append)
        reader.changed()
        assert statements == ["SELECT value FROM settings WHERE key = 'version'"]
        assert reader.refresh() and not reader.changed()
        assert len(reader) == 3 and {
            hit.item.path for hit in reader.search(np.eye(1, DIM), fingerprint="m", top_k=3)[0]
        } == {"a", "b", "c"}
        assert not reader.refresh()
    finally:
        reader.close()


def test_two_objects_in_one_process(tmp_path):
    directory = tmp_path / "index"
    Index.create(directory, dim=DIM, fingerprint="m").close()
    with Index.open(directory) as writer, Index.open(directory) as other:
        assert not other.changed()
        ids = writer.add(np.eye(1, DIM, dtype=np.float32), [{"path": "a"}], fingerprint="m")
        assert other.changed() and not writer.changed()
        other.refresh()
        assert not other.changed() and other.get(int(ids[0])).path == "a"
        other.delete(ids)
        assert writer.changed() and writer.refresh() and len(writer) == 0
