"""Fixtures of the index tests: ``backend`` runs a test on the FAISS folder and on a Milvus Lite collection."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["faiss", "milvus"])
def backend(request) -> str:
    if request.param == "milvus":
        pytest.importorskip(
            "pymilvus", reason="the Milvus backend needs pymilvus: pip install 'reidkit[milvus]'"
        )
        pytest.importorskip("milvus_lite", reason="the Milvus tests run on Milvus Lite")
    return request.param
