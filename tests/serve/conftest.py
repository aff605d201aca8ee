"""Fixtures of the service tests: the stand-in model, the 12-person gallery and its client (from test_serve)."""

from __future__ import annotations

import pytest

pytest.importorskip("faiss", reason="needs faiss-cpu: pip install 'reidkit[faiss]'")
pytest.importorskip("fastapi", reason="needs FastAPI: pip install 'reidkit[serve]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from test_serve import client, gallery  # noqa: E402, F401  (fixtures shared with tests/test_serve.py)
