from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from reidkit.checkpoint import Preprocess
from reidkit.data.image_dataset import ImageDataset
from reidkit.data.records import Sample
from reidkit.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TrainTransform,
    pad_crop,
    random_erasing,
    read_image,
)
from reidkit.errors import DatasetError


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, size=(40, 20, 3), dtype=np.uint8))


def test_inference_preprocess_resizes_and_normalises(image):
    out = Preprocess(32, 16).image(image)
    assert out.shape == (3, 32, 16) and out.dtype == np.float32
    plain = np.asarray(image.resize((16, 32), Image.BILINEAR), dtype=np.float32) / 255.0
    expected = (plain - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(out.transpose(1, 2, 0), expected, atol=1e-5)


def test_train_transform_is_a_function_of_its_seed(image):
    transform = TrainTransform(32, 16, color_jitter=0.3, random_erasing=1.0)
    a = transform(image, np.random.default_rng(5))
    b = transform(image, np.random.default_rng(5))
    c = transform(image, np.random.default_rng(6))
    assert a.shape == (3, 32, 16)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_flip_only_transform_mirrors(image):
    base = TrainTransform(32, 16, flip=0.0, pad=0, random_erasing=0.0)(image, np.random.default_rng(0))
    flipped = TrainTransform(32, 16, flip=1.0, pad=0, random_erasing=0.0)(image, np.random.default_rng(0))
    assert torch.allclose(flipped, torch.flip(base, dims=[2]))
    # without augmentation, training sees exactly the pixels inference sees
    assert torch.equal(base, torch.from_numpy(Preprocess(32, 16).image(image)))


def test_pad_crop_keeps_size_and_content():
    array = np.arange(4 * 3 * 3, dtype=np.float32).reshape(4, 3, 3) + 1
    rng = np.random.default_rng(1)
    offsets = set()
    for _ in range(30):
        out = pad_crop(array, 2, rng)
        assert out.shape == array.shape
        nonzero = out[out > 0]
        assert set(nonzero.tolist()) <= set(array.ravel().tolist())
        offsets.add(out.tobytes())
    assert len(offsets) > 1


def test_random_erasing_zeroes_one_rectangle():
    tensor = torch.ones(3, 64, 32)
    out = random_erasing(tensor, np.random.default_rng(2))
    zero = (out == 0).all(dim=0)
    rows, cols = torch.nonzero(zero, as_tuple=True)
    assert len(rows) > 0
    box = zero[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    assert box.all()  # a filled rectangle
    area = box.numel() / (64 * 32)
    assert 0.01 < area < 0.45
    assert torch.equal(tensor, torch.ones(3, 64, 32))  # input untouched


def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="missing.jpg does not exist"):
        read_image(str(tmp_path / "missing.jpg"))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DatasetError, match="corrupt.jpg cannot be read"):
        read_image(str(corrupt))
    good = tmp_path / "good.png"
    Image.new("L", (8, 16), 128).save(good)
    assert read_image(str(good)).mode == "RGB"


def test_image_dataset_items(tmp_path, image):
    path = tmp_path / "a.png"
    image.save(path)
    dataset = ImageDataset([Sample(str(path), 3, 1)], TrainTransform(32, 16))
    item = dataset[(0, 11)]
    assert item.image.shape == (3, 32, 16) and (item.pid, item.camid) == (3, 1)
    assert torch.equal(item.image, dataset[(0, 11)].image)
    assert len(dataset) == 1
