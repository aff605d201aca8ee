from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidkit.embed import (
    FINGERPRINT_KEY,
    MODEL_NAME_KEY,
    PREPROCESS_KEY,
    Embedder,
    EmbeddingError,
    OnnxEmbedder,
    OpenVinoEmbedder,
    Preprocess,
)

onnx = pytest.importorskip("onnx", reason="needs onnx: pip install 'reidkit[onnx]'")
pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install 'reidkit[onnx]'")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
OMZ = SHARED / "omz"
REID_0267 = OMZ / "person-reidentification-retail-0267.onnx"
REID_0287 = OMZ / "person-reidentification-retail-0287" / "person-reidentification-retail-0287.xml"
DETECTOR = OMZ / "pedestrian-detection-adas-0002" / "pedestrian-detection-adas-0002.xml"
HEIGHT, WIDTH = 4, 2


def linear_onnx(
    path: Path, weight: np.ndarray, *, batch: int | str = "N", metadata=None, sqrt_of=None
) -> Path:
    """A network that flattens its [N, 3, 4, 2] input and multiplies by ``weight`` [24, D]."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Flatten", ["images"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "weight"], ["product"]),
    ]
    initialisers = [numpy_helper.from_array(weight.astype(np.float32), "weight")]
    if sqrt_of is not None:  # sqrt(product - offset): NaN when the product is below the offset
        initialisers.append(numpy_helper.from_array(np.float32(sqrt_of), "offset"))
        nodes += [
            helper.make_node("Sub", ["product", "offset"], ["shifted"]),
            helper.make_node("Sqrt", ["shifted"], ["out"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["product"], ["out"]))
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, HEIGHT, WIDTH])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [batch, weight.shape[1]])],
        initialisers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def random_images(rng: np.random.Generator, count: int, size=(5, 9)) -> list[Image.Image]:
    return [
        Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))
        for _ in range(count)
    ]


def naive_embedding(image: Image.Image, weight: np.ndarray, preprocess: Preprocess) -> np.ndarray:
    """Reference: preprocess pixel by pixel, flatten, multiply, add the mirror's, normalise."""
    resized = np.asarray(image.convert("RGB").resize((WIDTH, HEIGHT), Image.BILINEAR), dtype=np.float64)
    order = [2, 1, 0] if preprocess.channel_order == "BGR" else [0, 1, 2]
    scale = 1.0 if preprocess.pixel_range == 255.0 else 1.0 / 255.0

    def network_input(pixels: np.ndarray) -> np.ndarray:
        values = np.zeros((3, HEIGHT, WIDTH))
        for channel in range(3):
            for y in range(HEIGHT):
                for x in range(WIDTH):
                    value = pixels[y, x, order[channel]] * scale
                    values[channel, y, x] = (value - preprocess.mean[channel]) / preprocess.std[channel]
        return values.reshape(-1)

    feature = network_input(resized) @ weight
    if preprocess.flip:
        feature = feature + network_input(resized[:, ::-1]) @ weight
    return feature / np.linalg.norm(feature)


def test_preprocess_hand_computed():
    image = Image.fromarray(np.array([[[255, 0, 0], [0, 128, 255]]], dtype=np.uint8))  # 1 x 2, RGB
    bgr = Preprocess(
        height=1, width=2, channel_order="BGR", pixel_range=255.0, mean=(10, 20, 30), std=(2, 2, 2)
    )
    np.testing.assert_allclose(bgr([image])[0], [[[-5, 122.5]], [[-10, 54]], [[112.5, -15]]])
    rgb = Preprocess(height=1, width=2, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 1.0))
    np.testing.assert_allclose(
        rgb([image])[0], [[[1, -1]], [[-2, (128 / 255 - 0.5) / 0.25]], [[-0.5, 0.5]]], atol=1e-6
    )
    with pytest.raises(EmbeddingError, match="channel_order"):
        Preprocess(height=1, width=2, channel_order="GRB")
    with pytest.raises(EmbeddingError, match="pixel_range"):
        Preprocess(height=1, width=2, pixel_range=2.0)


@pytest.mark.parametrize("runtime", [OnnxEmbedder, OpenVinoEmbedder])
@pytest.mark.parametrize("preset", ["imagenet", "bgr255"])
@pytest.mark.parametrize("flip", [False, True])
def test_embeddings_match_naive_computation(tmp_path, runtime, preset, flip):
    if runtime is OpenVinoEmbedder:
        pytest.importorskip("openvino", reason="needs openvino: pip install 'reidkit[openvino]'")
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((3 * HEIGHT * WIDTH, 6))
    embedder = runtime(linear_onnx(tmp_path / "m.onnx", weight), preprocess=preset, flip=flip, batch_size=2)
    assert isinstance(embedder, Embedder)
    assert (embedder.dim, embedder.input_size) == (6, (HEIGHT, WIDTH))
    images = random_images(rng, 5)
    features = embedder.embed_images(images)
    assert features.dtype == np.float32 and features.shape == (5, 6)
    expected = np.stack([naive_embedding(image, weight, embedder.preprocess) for image in images])
    np.testing.assert_allclose(features, expected, atol=1e-4)
    assert embedder.embed_images([]).shape == (0, 6)


def test_fixed_batch_network_runs_image_by_image(tmp_path):
    rng = np.random.default_rng(4)
    weight = rng.standard_normal((24, 3))
    fixed = OnnxEmbedder(linear_onnx(tmp_path / "fixed.onnx", weight, batch=1), preprocess="imagenet")
    dynamic = OnnxEmbedder(linear_onnx(tmp_path / "dynamic.onnx", weight), preprocess="imagenet")
    images = random_images(rng, 3)
    np.testing.assert_allclose(fixed.embed_images(images), dynamic.embed_images(images), atol=1e-6)


def test_metadata_sets_preprocessing_and_fingerprint(tmp_path):
    rng = np.random.default_rng(5)
    weight = rng.standard_normal((24, 4))
    preprocess = Preprocess(height=HEIGHT, width=WIDTH, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4), flip=True)
    metadata = {PREPROCESS_KEY: preprocess.to_json(), FINGERPRINT_KEY: "abc123", MODEL_NAME_KEY: "baseline"}
    path = linear_onnx(tmp_path / "m.onnx", weight, metadata=metadata)
    embedder = OnnxEmbedder(path)
    assert (embedder.preprocess, embedder.fingerprint, embedder.name) == (preprocess, "abc123", "baseline")
    pytest.importorskip("openvino")
    assert OpenVinoEmbedder(path).fingerprint == "abc123"
    # changing the preprocessing changes what the network computes: the fingerprint must change too
    unflipped = OnnxEmbedder(path, flip=False)
    assert unflipped.fingerprint not in (
        "abc123",
        OnnxEmbedder(path, preprocess="imagenet", flip=True).fingerprint,
    )


def test_bad_model_files(tmp_path):
    weight = np.ones((24, 2))
    with pytest.raises(EmbeddingError, match="does not exist"):
        OnnxEmbedder(tmp_path / "missing.onnx", preprocess="imagenet")
    (tmp_path / "garbage.onnx").write_bytes(b"not a network")
    with pytest.raises(EmbeddingError, match="garbage.onnx cannot be loaded"):
        OnnxEmbedder(tmp_path / "garbage.onnx", preprocess="imagenet")
    path = linear_onnx(tmp_path / "m.onnx", weight)
    with pytest.raises(EmbeddingError, match="no reidkit preprocessing metadata.*bgr255"):
        OnnxEmbedder(path)
    with pytest.raises(EmbeddingError, match="unknown preprocess preset 'caffe'"):
        OnnxEmbedder(path, preprocess="caffe")
    with pytest.raises(EmbeddingError, match="expects inputs of 4x2"):
        OnnxEmbedder(path, preprocess=Preprocess(height=8, width=4))


def test_non_finite_output_is_refused(tmp_path):
    weight = np.ones((24, 2))
    embedder = OnnxEmbedder(linear_onnx(tmp_path / "nan.onnx", weight, sqrt_of=1e6), preprocess="imagenet")
    with pytest.raises(EmbeddingError, match="non-finite values .* for 2 of 2 images"):
        embedder.embed_images(random_images(np.random.default_rng(0), 2))


# ------------------------------------------------------------------------ real third-party models
def _require_shared() -> None:
    if not OMZ.is_dir() or not (SHARED / "vtest.avi").is_file():
        pytest.skip(f"shared models/video not found at {SHARED}: the real-model tests need ../shared/data")
    pytest.importorskip("openvino", reason="needs openvino: pip install 'reidkit[openvino]'")
    pytest.importorskip("cv2", reason="needs opencv: pip install 'reidkit[video]'")


def _detect(compiled, frame: np.ndarray) -> list[tuple[int, int, int, int]]:
    import cv2

    height, width = frame.shape[:2]
    blob = cv2.resize(frame, (672, 384)).transpose(2, 0, 1)[None].astype(np.float32)
    rows = compiled(blob)[0][0, 0]
    return [
        (int(x0 * width), int(y0 * height), int(x1 * width), int(y1 * height))
        for _, _, confidence, x0, y0, x1, y1 in rows
        if confidence > 0.6
    ]


def _iou(a, b) -> float:
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def video_people():
    """Pedestrian crops from frames t and t+2 of the PETS video, and the pairs that are the same person
    (matched by box overlap: people move a few pixels in 0.2 s; a box that overlaps two others is dropped)."""
    _require_shared()
    import cv2
    import openvino

    compiled = openvino.Core().compile_model(str(DETECTOR), "CPU")
    capture = cv2.VideoCapture(str(SHARED / "vtest.avi"))
    wanted = {100, 102, 300, 302}
    frames, number = {}, 0
    while len(frames) < len(wanted):
        ok, frame = capture.read()
        if not ok:
            break
        if number in wanted:
            frames[number] = frame
        number += 1
    capture.release()
    samples = []
    for start in (100, 300):
        boxes = [_detect(compiled, frames[start]), _detect(compiled, frames[start + 2])]
        crops = [
            [
                Image.fromarray(cv2.cvtColor(frames[t][y0:y1, x0:x1], cv2.COLOR_BGR2RGB))
                for x0, y0, x1, y1 in b
            ]
            for t, b in zip((start, start + 2), boxes, strict=True)
        ]
        pairs = []
        for i, a in enumerate(boxes[0]):
            overlaps = sorted(((_iou(a, b), j) for j, b in enumerate(boxes[1])), reverse=True)
            if overlaps and overlaps[0][0] > 0.4 and (len(overlaps) == 1 or overlaps[1][0] < 0.1):
                pairs.append((i, overlaps[0][1]))
        samples.append((crops[0], crops[1], pairs))
    assert sum(len(p) for _, _, p in samples) >= 4
    return samples


def _check_same_person_is_closest(embedder, video_people) -> None:
    for first, second, pairs in video_people:
        a, b = embedder.embed_images(first), embedder.embed_images(second)
        assert a.shape[1] == 256 and np.isfinite(a).all()
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
        distances = 1.0 - a @ b.T
        for i, j in pairs:
            others = np.delete(distances[i], j)
            assert distances[i, j] < others.min() - 0.2, (i, j, distances[i])


def test_openvino_ir_0287_separates_people(video_people):
    embedder = OpenVinoEmbedder(REID_0287, preprocess="bgr255")
    assert (embedder.dim, embedder.input_size) == (256, (256, 128))
    _check_same_person_is_closest(embedder, video_people)


def test_openvino_runs_the_0267_onnx_file(video_people):
    embedder = OpenVinoEmbedder(REID_0267, preprocess="imagenet")
    assert embedder.dim == 256
    _check_same_person_is_closest(embedder, video_people)


def test_onnxruntime_nan_on_0267_is_reported(video_people):
    with pytest.raises(EmbeddingError, match="onnxruntime returned non-finite"):
        OnnxEmbedder(REID_0267, preprocess="imagenet").embed_images(video_people[0][0][:2])


def test_metadata_json_is_plain(tmp_path):
    preprocess = Preprocess(
        height=4, width=2, channel_order="BGR", pixel_range=255.0, mean=(1, 2, 3), std=(1, 1, 1)
    )
    assert Preprocess.from_mapping(json.loads(preprocess.to_json()), where="x") == preprocess
