"""The segment view of the search page in headless Chromium: identity timelines, and segments that play.

Skipped when chromium or the ``playwright`` package is absent. With ``REIDKIT_SCREENSHOT=path.png`` set, a
screenshot of the page playing a segment is saved as ``path-segments.png``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("faiss", reason="needs faiss-cpu: pip install 'reidkit[faiss]'")
pytest.importorskip("fastapi", reason="needs FastAPI: pip install 'reidkit[serve]'")
pytest.importorskip("cv2", reason="the test run's video needs opencv")

from reidkit.index import Index, index_tracks  # noqa: E402
from reidkit.serve import BackgroundServer, create_app  # noqa: E402
from segments_data import ColourEmbedder, query_photo, write_tracked_run  # noqa: E402

VIDEO = "document.querySelector('.identity video')"


def _bar(page, local_id_of: dict, key: tuple[str, int]):
    return page.locator(f".segment[data-id='{local_id_of[key]}']")


def test_timeline_shows_segments_and_plays_them(browser, tmp_path):
    embedder = ColourEmbedder()
    run = write_tracked_run(tmp_path / "run", embedder)
    with Index.create(tmp_path / "index", dim=embedder.dim, fingerprint=embedder.fingerprint) as index:
        index_tracks(index, run)
        id_of = {(item.camera, item.extra["local_id"]): i for i, item in index.items(index.ids()).items()}
    query = query_photo(tmp_path / "query.png")
    with BackgroundServer(create_app(tmp_path / "index", embedder, token=None)) as server:
        page = browser.new_page(viewport={"width": 1100, "height": 620})
        page.goto(server.url + "/")
        page.fill("#top_k", "2")
        page.set_input_files("#file", str(query))
        page.wait_for_selector(".identity")
        assert page.locator(".identity").count() == 1
        assert "1 person in tracked video, 0 images" in page.inner_text("#summary")
        assert page.locator(".hit").count() == 0  # tracklets are shown as segments, not as a grid
        card = page.locator(".identity")
        assert "#1 person 1" in card.locator("h2").inner_text()
        assert "3 segments on cam1, cam2" in card.locator("h2").inner_text()
        assert [lane.get_attribute("data-camera") for lane in card.locator(".lane").all()] == ["cam1", "cam2"]
        assert card.locator(".lane[data-camera='cam1'] .segment").count() == 2
        assert card.locator(".lane[data-camera='cam2'] .segment.novideo").count() == 1
        # bars placed by time: 2.0-4.9 s, 6.0-7.9 s (cam2), 9.0-9.9 s, on one axis
        boxes = {
            key: _bar(page, id_of, key).bounding_box() for key in [("cam1", 1), ("cam2", 3), ("cam1", 4)]
        }
        scale = boxes[("cam1", 1)]["width"] / 2.9
        for key, (start, length) in {("cam2", 3): (6.0, 1.9), ("cam1", 4): (9.0, 0.9)}.items():
            assert boxes[key]["x"] - boxes[("cam1", 1)]["x"] == pytest.approx((start - 2.0) * scale, abs=2)
            assert boxes[key]["width"] == pytest.approx(length * scale, abs=2)
        assert card.locator(".axis").inner_text().split() == ["22:13:22", "22:13:25", "22:13:29"]

        _bar(page, id_of, ("cam1", 1)).click()
        page.wait_for_function(f"{VIDEO} && {VIDEO}.currentTime >= 2.0 && !{VIDEO}.paused", timeout=30000)
        caption = card.locator(".caption").inner_text()
        assert "camera cam1" in caption and "2023-11-14 22:13:22.000 – 22:13:24.900 UTC" in caption
        page.wait_for_function(f"{VIDEO}.videoWidth === 64")
        target = os.environ.get("REIDKIT_SCREENSHOT")
        if target:
            page.wait_for_timeout(500)
            page.screenshot(path=str(Path(target).with_name(Path(target).stem + "-segments.png")))
        # it stops at the end of the segment (frame 50: 5.0 s into the video)
        page.wait_for_function(f"{VIDEO}.paused", timeout=30000)
        assert 4.8 <= page.evaluate(f"{VIDEO}.currentTime") <= 5.5
        # another segment of the same camera: the player seeks there
        _bar(page, id_of, ("cam1", 4)).click()
        page.wait_for_function(f"{VIDEO}.currentTime >= 9.0", timeout=30000)
        assert page.evaluate(f"{VIDEO}.currentTime") <= 10.0
        assert "active" in _bar(page, id_of, ("cam1", 4)).get_attribute("class")
        # a camera without video: its crop and times, no player
        _bar(page, id_of, ("cam2", 3)).click()
        page.wait_for_function(f"{VIDEO}.hidden && {VIDEO}.paused")
        assert "no video for this camera" in card.locator(".caption").inner_text()
        page.wait_for_function(
            "(() => { const i = document.querySelector('.stage img'); return !i.hidden && i.naturalWidth > 0; })()"
        )
        # release the media pipeline (and the server's range connection) before the page and the server go
        page.evaluate(
            "document.querySelectorAll('video').forEach(v => { v.pause(); v.removeAttribute('src'); v.load(); })"
        )
        page.close()
