"""Synthetic domains: the default site is the generator as it was, every other site is deterministic, draws its own
people and differs measurably in the statistics it claims (light, colour casts, backgrounds, sharpness, palette)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidkit.cli import main
from reidkit.data import _synth_draw as draw
from reidkit.data import synth
from reidkit.data._synth_domains import DOMAINS, TEXTURES, Domain, get_domain, stream_seed
from reidkit.data.synth import generate, read_attributes
from reidkit.data.synth_tracklets import generate_tracklets
from reidkit.errors import ConfigError

TINY = {"ids": 4, "cams": 3, "seed": 2, "images_per_camera": 2}
OTHERS = [name for name in DOMAINS if name != "default"]


def _bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _images(root: Path) -> dict[int, list[np.ndarray]]:
    """camera (from 1) -> its images as float arrays [128, 64, 3], over all three folders."""
    by_camera: dict[int, list[np.ndarray]] = {}
    for path in sorted(root.rglob("*.jpg")):
        with Image.open(path) as image:
            by_camera.setdefault(int(path.name[6]), []).append(np.asarray(image, dtype=np.float64))
    return by_camera


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> dict[str, dict[int, list[np.ndarray]]]:
    """Every domain's images, 12 ids in 6 cameras (the same arguments for all, so only the site differs)."""
    root = tmp_path_factory.mktemp("domains")
    found = {}
    for name in DOMAINS:
        generate(root / name, ids=12, cams=6, seed=0, domain=name, images_per_camera=2)
        found[name] = _images(root / name)
    return found


def _all(images: dict[int, list[np.ndarray]]) -> np.ndarray:
    return np.stack([image for camera in sorted(images) for image in images[camera]])


# ------------------------------------------------------------------------------------------- the table
@pytest.mark.parametrize("name", list(DOMAINS))
def test_every_domain_is_well_formed(name):
    domain = get_domain(name)
    assert domain.name == name and domain.description
    assert 2 <= domain.cams <= synth.MAX_CAMERAS
    assert len(set(domain.textures)) == len(domain.textures) >= 2
    assert all(0 <= kind < len(TEXTURES) for kind in domain.textures)
    weights = domain.palette_weights(synth._CLOTHING)
    if name == "default":
        assert weights is None  # uniform, drawn as it always was
    else:
        assert weights is not None and abs(sum(weights) - 1.0) < 1e-9 and min(weights) >= 0.0


def test_the_default_domain_is_the_dataclass_defaults_and_keeps_the_seed():
    assert DOMAINS["default"] == Domain(name="default", description=DOMAINS["default"].description)
    assert stream_seed(7, DOMAINS["default"]) == 7
    keys = {stream_seed(7, DOMAINS[name]) for name in OTHERS}
    assert len(keys) == len(OTHERS) and 7 not in keys


def test_an_unknown_domain_is_refused_with_the_choices(tmp_path):
    for call in (generate, generate_tracklets):
        with pytest.raises(ConfigError, match=r"^domain: expected one of default, mall, street, night, got 'moon'"):
            call(tmp_path / "out", ids=4, cams=2, domain="moon")
    assert not any(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="palette names unknown colours"):
        Domain(name="x", description="x", palette=(("ultraviolet", 1.0),)).palette_weights(synth._CLOTHING)


# ------------------------------------------------------------------------------------------- bytes and seeds
def test_the_default_domain_writes_what_generate_wrote_without_a_domain(tmp_path):
    generate(tmp_path / "plain", **TINY, difficulty="hard", distractors=2)
    generate(tmp_path / "named", **TINY, difficulty="hard", distractors=2, domain="default")
    assert _bytes(tmp_path / "plain") == _bytes(tmp_path / "named")
    tracklets = {"ids": 3, "cams": 2, "seed": 1, "frames": 4, "occlusion": 0.5, "workers": 1}
    generate_tracklets(tmp_path / "t_plain", **tracklets)
    generate_tracklets(tmp_path / "t_named", **tracklets, domain="default")
    assert _bytes(tmp_path / "t_plain") == _bytes(tmp_path / "t_named")


@pytest.mark.parametrize("name", OTHERS)
def test_each_domain_gives_the_same_bytes_for_the_same_seed(tmp_path, name):
    generate(tmp_path / "a", **TINY, domain=name)
    generate(tmp_path / "b", **TINY, domain=name)
    generate(tmp_path / "c", **{**TINY, "seed": 3}, domain=name)
    a, b, c = (_bytes(tmp_path / folder) for folder in "abc")
    assert a == b
    images = [key for key in a if key.endswith(".jpg")]
    assert images and (a.keys() != c.keys() or any(a[key] != c[key] for key in images))


def test_domains_draw_other_people_from_the_same_seed(tmp_path):
    tables = {}
    for name in DOMAINS:
        generate(tmp_path / name, ids=8, cams=2, seed=4, domain=name, images_per_camera=2)
        tables[name] = read_attributes(tmp_path / name)
    names = list(tables)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            assert tables[first] != tables[second], (first, second)


@pytest.mark.parametrize("name", OTHERS)
def test_clothing_colours_follow_the_domain_palette(name):
    domain = get_domain(name)
    weights = np.asarray(domain.palette_weights(synth._CLOTHING))
    people, _ = synth._make_people(stream_seed(0, domain), 400, 200, 0, 1, domain)  # 400 groups of one
    for key in ("top_colour", "bottom_colour"):
        counts = Counter(person.codes[key] for person in people)
        share = np.asarray([counts[c] for c in range(len(weights))]) / len(people)
        assert np.all(share[weights == 0] == 0), key  # colours the site does not wear never appear
        assert np.abs(share - weights).max() < 0.06, (key, share.round(3), weights.round(3))
    uniform, _ = synth._make_people(0, 400, 200, 0, 1)
    share = np.bincount([p.codes["top_colour"] for p in uniform], minlength=len(weights)) / 400
    assert np.abs(share - 1 / len(weights)).max() < 0.04  # the default palette stays uniform


# ------------------------------------------------------------------------------------------- statistics
def test_night_is_dark_and_low_contrast_and_the_mall_is_bright(sites):
    mean = {name: _all(images).mean() for name, images in sites.items()}
    spread = {name: _all(images).std(axis=(1, 2, 3)).mean() for name, images in sites.items()}  # within images
    assert mean["night"] < 0.65 * mean["default"]
    assert spread["night"] < 0.7 * spread["default"]
    assert mean["mall"] > mean["default"] + 15


def _chromaticity(images: list[np.ndarray]) -> np.ndarray:
    """Mean red and blue share of the camera's pixels, ``[2]``."""
    pixels = np.stack(images).reshape(-1, 3).mean(axis=0)
    return pixels[[0, 2]] / pixels.sum()


def test_street_cameras_differ_more_in_colour_and_the_mall_light_is_warm(sites):
    cast = {}
    for name, images in sites.items():
        per_camera = np.stack([_chromaticity(images[camera]) for camera in sorted(images)])
        cast[name] = per_camera.std(axis=0).mean()  # spread of the cameras' colour balance
    assert cast["street"] > 1.5 * cast["default"]
    warmth = {name: _chromaticity([_all(images)]) for name, images in sites.items()}  # (red, blue) shares
    assert warmth["mall"][0] - warmth["mall"][1] > warmth["default"][0] - warmth["default"][1] + 0.05


def _detail(images: dict[int, list[np.ndarray]]) -> float:
    """Power of the grey images at 0.1..0.2 cycles per pixel over their power at 0.02..0.06 (fine detail against
    coarse shapes; sensor noise, flat over frequencies, adds little to either)."""
    grey = _all(images).mean(axis=-1)
    power = np.abs(np.fft.fft2(grey - grey.mean(axis=(1, 2), keepdims=True))) ** 2
    frequency = np.maximum(
        np.abs(np.fft.fftfreq(grey.shape[1]))[:, None], np.abs(np.fft.fftfreq(grey.shape[2]))[None, :]
    )
    fine = (frequency > 0.1) & (frequency <= 0.2)
    coarse = (frequency > 0.02) & (frequency <= 0.06)
    return float(power[:, fine].sum() / power[:, coarse].sum())


def test_the_mall_is_blurred_and_low_resolution(sites):
    assert _detail(sites["mall"]) < 0.5 * _detail(sites["default"])
    assert _detail(sites["street"]) > 0.8 * _detail(sites["default"])  # the street keeps the default optics


def test_backgrounds_differ_by_site(sites):
    """The image borders (left and right 6 columns) are mostly scene: walls above, ground below."""

    def border(images, rows: slice) -> float:
        stack = _all(images)[:, rows]
        return float(np.concatenate([stack[:, :, :6], stack[:, :, -6:]], axis=2).mean())

    walls = {name: border(images, slice(0, 60)) for name, images in sites.items()}
    ground = {name: border(images, slice(110, 128)) for name, images in sites.items()}
    assert walls["mall"] > walls["default"] + 20  # bright shop walls
    assert ground["street"] < ground["default"] - 20  # asphalt


def test_mall_floors_are_tiled_and_walls_come_from_the_site_textures():
    level = synth._LEVELS["medium"]
    for name in DOMAINS:
        domain = get_domain(name)
        cameras = [draw.make_camera(np.random.default_rng(cam), level, domain) for cam in range(8)]
        assert all(set(camera.texture_kinds) <= set(domain.textures) for camera in cameras)
        assert all(camera.floor_tiles == (name == "mall") for camera in cameras)
    # a tiled floor is a checkerboard: the ground below the horizon alternates between two levels
    camera = draw.make_camera(np.random.default_rng(0), level, get_domain("mall"))
    canvas = Image.new("RGB", (draw.CANVAS_W * draw.SUPERSAMPLE, draw.CANVAS_H * draw.SUPERSAMPLE))
    draw.draw_background(draw._Pen(canvas), camera, np.random.default_rng(1))
    floor = np.asarray(canvas)[-20 * draw.SUPERSAMPLE :, :, 1].astype(int)
    assert len(np.unique(floor)) >= 2 and np.abs(np.diff(floor, axis=1)).max() > 15


def test_each_domain_has_its_own_number_of_cameras_unless_given(tmp_path):
    for name in ("street", "night"):
        summary = generate(tmp_path / name, ids=3, seed=0, domain=name, images_per_camera=2)
        assert summary["cams"] == DOMAINS[name].cams
        cameras = {int(p.name[6]) for p in (tmp_path / name).rglob("*.jpg")}
        assert max(cameras) <= DOMAINS[name].cams
    summary = generate(tmp_path / "given", ids=3, cams=2, seed=0, domain="street", images_per_camera=2)
    assert summary["cams"] == 2
    assert generate(tmp_path / "default", ids=3, seed=0, images_per_camera=2)["cams"] == 6


# ------------------------------------------------------------------------------------------- records and CLI
def test_meta_and_summary_record_the_domain(tmp_path):
    summary = generate(tmp_path / "set", **TINY, domain="mall")
    meta = json.loads((tmp_path / "set" / "meta.json").read_text())
    assert summary["domain"] == meta["params"]["domain"] == "mall"
    summary = generate_tracklets(tmp_path / "clips", ids=3, cams=2, seed=0, frames=3, workers=1, domain="night")
    meta = json.loads((tmp_path / "clips" / "meta.json").read_text())
    assert summary["domain"] == meta["params"]["domain"] == "night"
    assert meta["params"]["cams"] == 2


def test_tracklets_of_a_domain_are_deterministic_and_in_its_light(tmp_path):
    arguments = {"ids": 3, "cams": 2, "seed": 0, "frames": 4, "occlusion": 0.0, "workers": 1}
    generate_tracklets(tmp_path / "a", **arguments, domain="night")
    generate_tracklets(tmp_path / "b", **arguments, domain="night")
    generate_tracklets(tmp_path / "day", **arguments)
    assert _bytes(tmp_path / "a") == _bytes(tmp_path / "b")
    night, day = (_all(_images(tmp_path / folder)).mean() for folder in ("a", "day"))
    assert night < 0.65 * day


def test_cli_synth_domain_flag(tmp_path, capsys):
    out = tmp_path / "mall"
    assert main(["synth", str(out), "--ids", "4", "--domain", "mall", "--workers", "1", "--quiet"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["params"]["domain"] == "mall" and meta["params"]["cams"] == DOMAINS["mall"].cams
    out = tmp_path / "night"
    argv = ["synth", str(out), "--ids", "3", "--cams", "2", "--domain", "night", "--tracklets", "--frames", "3"]
    assert main([*argv, "--workers", "1", "--quiet"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["params"]["domain"] == "night" and meta["params"]["cams"] == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", str(tmp_path / "bad"), "--domain", "moon"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'moon'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    assert "--domain {default,mall,street,night}" in capsys.readouterr().out
