"""reidkit: person re-identification toolkit."""

from __future__ import annotations

__version__ = "0.1.0"
