"""The search page in a real headless browser (Debian ``chromium`` driven by Playwright).

Skipped when chromium or the ``playwright`` package is absent. Set ``REIDKIT_SCREENSHOT=path.png`` to save a
screenshot of the page with real results (the pedestrian-video test; the README's picture).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("faiss", reason="needs faiss-cpu: pip install 'reidkit[faiss]'")
pytest.importorskip("fastapi", reason="needs FastAPI: pip install 'reidkit[serve]'")

from reidkit.index import Index  # noqa: E402
from reidkit.serve import BackgroundServer, create_app  # noqa: E402
from segments_data import ColourEmbedder  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _person(top, bottom) -> Image.Image:
    image = Image.new("RGB", (32, 64), top)
    image.paste(Image.new("RGB", (32, 32), bottom), (0, 32))
    return image


def _build_index(directory: Path, embedder, images: list[Image.Image], items: list[dict]) -> Path:
    for image, item in zip(images, items, strict=True):
        image.save(item["path"])
    with Index.create(
        directory / "index", dim=embedder.dim, fingerprint=embedder.fingerprint, model_name=embedder.name
    ) as index:
        index.add(embedder.embed_images(images), items, fingerprint=embedder.fingerprint)
    return directory / "index"


def test_page_upload_drop_results_and_enlarge(browser, tmp_path):
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40)]
    images, items = [], []
    for top in colours:
        for bottom in colours:
            if top != bottom:
                items.append(
                    {
                        "path": str(tmp_path / f"{len(images)}.png"),
                        "camera": f"cam{len(images) % 3}",
                        "timestamp": 1.7e9 + 60 * len(images),
                    }
                )
                images.append(_person(top, bottom))
    index_dir = _build_index(tmp_path, ColourEmbedder(), images, items)
    query = tmp_path / "query.png"
    images[4].save(query)
    (tmp_path / "notes.txt").write_text("not an image")
    app = create_app(index_dir, ColourEmbedder(), token=None)
    with BackgroundServer(app) as server:
        page = browser.new_page()
        page.goto(server.url + "/")
        page.wait_for_function("document.getElementById('status').textContent.includes('12 gallery images')")
        page.fill("#top_k", "5")
        page.set_input_files("#file", str(query))
        page.wait_for_selector(".hit")
        cards = page.locator(".hit")
        assert cards.count() == 5
        first = cards.nth(0)
        assert first.locator(".distance").inner_text() == "0.000"
        assert "camera cam1" in first.inner_text()  # item 4 is on cam1
        assert "2023-11-14" in first.inner_text()  # 1.7e9 + 240 s, shown as a UTC date-time
        page.wait_for_function(
            "[...document.querySelectorAll('.hit img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        first.click()
        page.wait_for_selector("#viewer.open")
        page.wait_for_function("document.getElementById('viewer-image').naturalWidth === 32")
        assert "#1" in page.inner_text("#viewer-caption")
        page.keyboard.press("Escape")
        page.wait_for_selector("#viewer:not(.open)", state="attached")
        # drop a different photo: a camera filter, then the ranked list changes to that person
        page.fill("#camera", "cam0")
        images[9].save(tmp_path / "dropped.png")
        payload = list((tmp_path / "dropped.png").read_bytes())
        page.evaluate(
            """(bytes) => {
                const file = new File([new Uint8Array(bytes)], "dropped.png", {type: "image/png"});
                const transfer = new DataTransfer();
                transfer.items.add(file);
                document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
            }""",
            payload,
        )
        page.wait_for_function(
            "document.querySelector('.hit') && document.querySelector('.hit').dataset.id === '10'"
        )
        assert all("camera cam0" in text for text in page.locator(".hit .meta").all_inner_texts())
        # a file that is not an image: the service's message is shown, not a blank page
        page.set_input_files("#file", str(tmp_path / "notes.txt"))
        page.wait_for_function(
            "document.getElementById('message').textContent.includes('not a readable image')"
        )
        assert page.get_attribute("#message", "class") == "error"
        page.close()


def _video_people(count_frames: int = 6):
    """Pedestrian crops from the PETS video (OMZ detector), with their frame numbers."""
    import cv2
    import openvino

    detector = openvino.Core().compile_model(
        str(SHARED / "omz/pedestrian-detection-adas-0002/pedestrian-detection-adas-0002.xml"), "CPU"
    )
    capture = cv2.VideoCapture(str(SHARED / "vtest.avi"))
    crops = []
    for number in range(0, 10 * count_frames * 4, 1):
        ok, frame = capture.read()
        if not ok:
            break
        if number % 40:
            continue
        height, width = frame.shape[:2]
        blob = cv2.resize(frame, (672, 384)).transpose(2, 0, 1)[None].astype(np.float32)
        for _, _, confidence, x0, y0, x1, y1 in detector(blob)[0][0, 0]:
            if confidence > 0.7:
                box = int(x0 * width), int(y0 * height), int(x1 * width), int(y1 * height)
                crop = frame[max(box[1], 0) : box[3], max(box[0], 0) : box[2]]
                if crop.size:
                    crops.append((number, Image.fromarray(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))))
    capture.release()
    return crops


def test_page_with_real_pedestrians(browser, tmp_path):
    if not (SHARED / "omz").is_dir():
        pytest.skip(
            f"shared models/video not found at {SHARED}: the real-pedestrian page test needs ../shared/data"
        )
    pytest.importorskip("cv2", reason="needs opencv: pip install 'reidkit[video]'")
    pytest.importorskip("openvino", reason="needs openvino: pip install 'reidkit[openvino]'")
    from reidkit.embed import OpenVinoEmbedder

    embedder = OpenVinoEmbedder(
        SHARED / "omz/person-reidentification-retail-0287/person-reidentification-retail-0287.xml",
        preprocess="bgr255",
    )
    people = _video_people()
    query_frame, query_image = people.pop(len(people) // 2)
    images = [image for _, image in people]
    items = [
        {"path": str(tmp_path / f"{n}.jpg"), "camera": "1", "timestamp": 1.7e9 + frame / 10.0, "frame": frame}
        for n, (frame, _) in enumerate(people)
    ]
    index_dir = _build_index(tmp_path, embedder, images, items)
    query_image.save(tmp_path / "query.jpg")
    with BackgroundServer(create_app(index_dir, embedder, token=None)) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 760})
        page.goto(server.url + "/")
        page.fill("#top_k", "10")
        page.set_input_files("#file", str(tmp_path / "query.jpg"))
        page.wait_for_selector(".hit")
        page.wait_for_function(
            "[...document.querySelectorAll('.hit img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        distances = [float(text) for text in page.locator(".hit .distance").all_inner_texts()]
        assert distances == sorted(distances) and len(distances) == 10
        # the same person four seconds earlier or later is the closest gallery crop
        first_id = int(page.locator(".hit").nth(0).get_attribute("data-id"))
        assert abs(people[first_id - 1][0] - query_frame) == 40
        target = os.environ.get("REIDKIT_SCREENSHOT")
        if target:
            page.screenshot(path=target, full_page=False)
        page.close()
