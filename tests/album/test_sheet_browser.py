"""The contact sheet in a real headless browser (Debian ``chromium`` driven by Playwright).

Skipped when chromium or the ``playwright`` package is absent. Set ``REIDKIT_SCREENSHOT=path.png`` to save a
screenshot of the sheet.
"""

from __future__ import annotations

import os

import pytest

from reidkit.album import cluster_album

pytest.importorskip("sklearn", reason="album clustering needs scikit-learn")



def test_contact_sheet_rows_thumbnails_and_mistakes(browser, colour_album, colour_embedder, tmp_path):
    # a photo of person 2 named as person 3: it lands in person 2's row and is flagged there; a photo of
    # person 1 named as a distractor (unknown identity) lands in person 1's row and is not flagged
    (colour_album / "day2" / "0000_c1s1_000009_00.jpg").write_bytes(
        (colour_album / "day1" / "0001_c1s1_000000_00.jpg").read_bytes()
    )
    (colour_album / "day2" / "0003_c2s1_000009_00.jpg").write_bytes(
        (colour_album / "day1" / "0002_c1s1_000000_00.jpg").read_bytes()
    )
    out = tmp_path / "sheet"
    cluster_album(
        colour_album,
        colour_embedder,
        out,
        method="agglomerative",
        parameters={"threshold": 0.05},
        labels_from_names="market1501",
    )
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    page.goto((out / "index.html").as_uri())
    page.wait_for_function("[...document.images].every(i => i.complete)")
    rows = page.eval_on_selector_all(
        "section",
        "s => s.map(e => [e.dataset.cluster, e.querySelectorAll('img').length, e.querySelector('h2').innerText])",
    )
    assert [(c, n) for c, n, _ in rows] == [("0", 5), ("1", 4), ("2", 2), ("-1", 1)]
    assert (
        "person 1: 4 of 5" in rows[0][2]
        and "person 2: 3 of 4" in rows[1][2]
        and rows[3][2].startswith("Unclustered")
    )
    sizes = page.eval_on_selector_all("img", "i => i.map(x => [x.naturalWidth, x.width, x.height])")
    assert sizes == [[64, 64, 128]] * 12  # every thumbnail loaded, laid out at its size before it loads
    flagged = page.eval_on_selector_all("figure.other figcaption", "f => f.map(e => e.innerText)")
    assert flagged == ["person 3"]
    border = page.eval_on_selector("figure.other img", "i => getComputedStyle(i).borderTopColor")
    assert border == "rgb(210, 40, 40)"
    assert "adjusted Rand index" in page.inner_text("header")
    page.click("section[data-cluster='2'] a")  # a thumbnail opens its original photo
    page.wait_for_load_state()
    assert page.url.endswith("day2/0003_c1s1_000000_00.jpg")
    if os.environ.get("REIDKIT_SCREENSHOT"):
        page.go_back()
        page.screenshot(path=os.environ["REIDKIT_SCREENSHOT"], full_page=True)
    page.close()
