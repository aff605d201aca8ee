"""The search page: one self-contained HTML file (upload or drop a photo, see the ranked gallery).

The file is package data, ``reidkit/static/index.html``; the page calls ``POST /search`` and shows the
thumbnails from ``GET /gallery/{id}/image``.
"""

from __future__ import annotations

from importlib import resources

#: the page, relative to the ``reidkit`` package.
PAGE_RESOURCE = "static/index.html"


def read_page() -> str:
    """The HTML of the search page."""
    return resources.files("reidkit").joinpath(PAGE_RESOURCE).read_text(encoding="utf-8")
