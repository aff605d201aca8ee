"""Custom datasets: pattern, folders and CSV modes, the no-camera mode, the split by identity, bad input."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from reidkit.data.folder import list_images, load_custom, split_by_identity
from reidkit.data.records import NO_CAMERA, Sample, Split
from reidkit.errors import DatasetError

PATTERN = r"(?P<pid>\d+)_c(?P<camid>\d+)"


def touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")


def flat_names(pids: range, cameras: tuple[int, ...] = (1, 2), images: int = 2) -> list[str]:
    return [
        f"{pid:04d}_c{camera}_{image}.jpg" for pid in pids for camera in cameras for image in range(images)
    ]


def check_split_by_identity(split: Split, all_names: set[str], *, cameras: bool) -> None:
    """Invariants of a split by identity (train pids are relabelled, so compare test ids via file names)."""
    names = {
        part: [Path(s.path).name for s in getattr(split, part)] for part in ("train", "query", "gallery")
    }
    assert sorted(names["train"] + names["query"] + names["gallery"]) == sorted(all_names)
    assert not set(names["query"]) & set(names["gallery"])
    train_ids = {int(name[:4]) for name in names["train"]}
    test_ids = {s.pid for s in split.query + split.gallery}
    assert not train_ids & test_ids
    assert sorted({s.pid for s in split.train}) == list(range(len(train_ids)))
    counts = Counter((s.pid, s.camid) for s in split.query)
    assert set(counts.values()) == {1}  # at most one query per identity per camera
    if cameras:  # one query per camera for each test identity seen in >= 2 cameras
        for pid in test_ids:
            images = [s for s in split.query + split.gallery if s.pid == pid]
            cams = {s.camid for s in images}
            expected = cams if len(cams) >= 2 else set()
            assert {c for p, c in counts if p == pid} == expected


# ---------------------------------------------------------------------------------------------------------------
# pattern mode


def test_pattern_mode_with_split_folders(tmp_path: Path) -> None:
    touch(
        tmp_path / "train",
        "0005_c1_a.jpg",
        "0005_c3_b.jpg",
        "0009_c2_a.png",
        "nested/0011_c1_z.jpg",
        "notes.txt",
    )
    touch(tmp_path / "query", "0001_c1_q.jpg", "0002_c2_q.jpg")
    touch(tmp_path / "gallery", "0001_c2_g.jpg", "0002_c3_g.jpg", "0002_c1_g.jpg")
    split = load_custom(tmp_path, pattern=PATTERN)
    assert split.name == "custom" and split.has_camids and split.extra["mode"] == "pattern"
    by_name = {Path(s.path).name: (s.pid, s.camid) for s in split.train + split.query + split.gallery}
    # cameras 1, 2, 3 -> 0, 1, 2 (over all splits); train ids 5, 9, 11 -> 0, 1, 2
    assert by_name == {
        "0005_c1_a.jpg": (0, 0),
        "0005_c3_b.jpg": (0, 2),
        "0009_c2_a.png": (1, 1),
        "0011_c1_z.jpg": (2, 0),
        "0001_c1_q.jpg": (1, 0),
        "0002_c2_q.jpg": (2, 1),
        "0001_c2_g.jpg": (1, 1),
        "0002_c3_g.jpg": (2, 2),
        "0002_c1_g.jpg": (2, 0),
    }
    assert (len(split.train), len(split.query), len(split.gallery)) == (4, 2, 3)
    assert split.extra["camera_names"] == ["1", "2", "3"]


def test_pattern_mode_split_by_identity_is_seeded(tmp_path: Path) -> None:
    names = flat_names(range(1, 11), cameras=(1, 2, 3)) + ["0011_c2_0.jpg", "0011_c2_1.jpg"]  # 11: one camera
    touch(tmp_path, *names)
    split = load_custom(tmp_path, pattern=PATTERN, train_fraction=0.6, seed=3)
    check_split_by_identity(split, set(names), cameras=True)
    assert split.num_train_pids == round(11 * 0.6)
    assert split == load_custom(tmp_path, pattern=PATTERN, train_fraction=0.6, seed=3)
    train_sets = {
        frozenset(Path(s.path).name[:4] for s in load_custom(tmp_path, pattern=PATTERN, seed=seed).train)
        for seed in range(5)
    }
    assert len(train_sets) > 1  # the seed changes the split
    assert split.extra["split_by_identity"] == {"train_fraction": 0.6, "seed": 3}


def test_pattern_mode_junk_ids_are_dropped(tmp_path: Path) -> None:
    names = flat_names(range(1, 5))
    touch(tmp_path, *names, "-1_c1_0.jpg", "-1_c2_5.jpg")
    split = load_custom(tmp_path, pattern=r"(?P<pid>-?\d+)_c(?P<camid>\d+)")
    assert split.extra["junk_dropped"] == 2
    check_split_by_identity(split, set(names), cameras=True)


def test_pattern_mode_bad_names_are_counted(tmp_path: Path) -> None:
    touch(tmp_path / "train", "0001_c1.jpg")
    touch(tmp_path / "query", "0001_c1.jpg", *(f"img{i}.jpg" for i in range(8)))
    touch(tmp_path / "gallery", "0001_c1.jpg")
    with pytest.raises(DatasetError) as error:
        load_custom(tmp_path, pattern=PATTERN)
    message = str(error.value)
    assert f"8 of 9 image file name(s) in {tmp_path / 'query'} do not match the pattern" in message
    assert "'img0.jpg', 'img1.jpg', 'img2.jpg', 'img3.jpg', 'img4.jpg' (and 3 more)" in message


def test_pattern_without_camera_group_explains_the_no_camera_mode(tmp_path: Path) -> None:
    touch(tmp_path, *(f"{pid:04d}_{image}.jpg" for pid in range(6) for image in range(3)))
    with pytest.raises(DatasetError, match=r"no named group \(\?P<camid>...\).*cameras=False"):
        load_custom(tmp_path, pattern=r"(?P<pid>\d+)_")
    split = load_custom(tmp_path, pattern=r"(?P<pid>\d+)_", cameras=False, seed=1)
    assert not split.has_camids
    assert all(s.camid == NO_CAMERA for s in split.train + split.query + split.gallery)
    # every test identity (3 images each) gets exactly one query
    test_ids = {s.pid for s in split.gallery}
    assert sorted(s.pid for s in split.query) == sorted(test_ids) and len(test_ids) == 3
    assert len(split.gallery) == 2 * len(test_ids)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"(?P<pid>\d+", "is not a valid regular expression"),
        (r"(\d+)_c(?P<camid>\d+)", r"has no named group \(\?P<pid>...\)"),
    ],
)
def test_bad_patterns(tmp_path: Path, pattern: str, message: str) -> None:
    touch(tmp_path, "0001_c1.jpg")
    with pytest.raises(DatasetError, match=message):
        load_custom(tmp_path, pattern=pattern)


def test_pattern_mode_needs_a_pattern(tmp_path: Path) -> None:
    touch(tmp_path, "0001_c1.jpg")
    with pytest.raises(DatasetError, match="pattern mode needs pattern="):
        load_custom(tmp_path, mode="pattern")


# ---------------------------------------------------------------------------------------------------------------
# folders mode


def test_folders_mode_named_identities_split_by_identity(tmp_path: Path) -> None:
    people = ["alice", "bob", "carol", "dave", "erin", "frank"]
    for person in people:
        touch(tmp_path / person, *(f"cam{camera}_{image}.jpg" for camera in (1, 2) for image in range(2)))
    split = load_custom(tmp_path, camera_pattern=r"cam(?P<camid>\d+)", seed=0)
    assert split.extra["mode"] == "folders"
    assert split.extra["identity_names"] == sorted(people)
    assert (len(split.train), len(split.query), len(split.gallery)) == (12, 6, 6)
    for sample in split.query + split.gallery:  # test ids are the sorted-name numbers of the folders
        assert split.extra["identity_names"][sample.pid] == Path(sample.path).parent.name
        assert sample.camid == int(Path(sample.path).name[3]) - 1
    train_folders = sorted({Path(s.path).parent.name for s in split.train})
    assert len(train_folders) == 3 and not set(train_folders) & {
        Path(s.path).parent.name for s in split.gallery
    }


def test_folders_mode_with_split_folders_and_integer_names(tmp_path: Path) -> None:
    touch(tmp_path / "train", "0003/x_c1.jpg", "0003/y_c2.jpg", "0008/z_c2.jpg")
    touch(tmp_path / "query", "0011/q_c1.jpg")
    touch(tmp_path / "gallery", "0011/g_c2.jpg", "0012/g_c1.jpg")
    split = load_custom(
        tmp_path, mode="folders", pattern=r"_c(?P<camid>\d+)"
    )  # pattern's camid group is used
    assert sorted((s.pid, s.camid) for s in split.train) == [(0, 0), (0, 1), (1, 1)]
    assert [(s.pid, s.camid) for s in split.query] == [(11, 0)]
    assert sorted((s.pid, s.camid) for s in split.gallery) == [(11, 1), (12, 0)]
    assert "identity_names" not in split.extra


def test_folders_mode_without_cameras(tmp_path: Path) -> None:
    for person in range(8):
        touch(tmp_path / f"p{person}", *(f"{image}.jpg" for image in range(1 + person % 3)))
    with pytest.raises(DatasetError, match="camera_pattern=.*none was given.*cameras=False"):
        load_custom(tmp_path)
    split = load_custom(tmp_path, cameras=False, seed=2)
    assert not split.has_camids
    assert {s.camid for s in split.train + split.query + split.gallery} == {NO_CAMERA}
    counts = Counter(s.pid for s in split.query + split.gallery)
    assert sorted(s.pid for s in split.query) == sorted(pid for pid, count in counts.items() if count >= 2)


def test_folders_mode_rejects_loose_images_and_unmatched_names(tmp_path: Path) -> None:
    touch(tmp_path, "a/0_c1.jpg", "a/1_c2.jpg", "b/0_c1.jpg", "b/x.jpg", "b/y.jpg")
    with pytest.raises(
        DatasetError, match=r"2 of 5 image file name\(s\) under .* camera pattern.*'b/x.jpg', 'b/y.jpg'"
    ):
        load_custom(tmp_path, camera_pattern=r"_c(?P<camid>\d+)")
    touch(tmp_path, "loose.jpg")
    with pytest.raises(DatasetError, match="holds 1 image.s. directly .*'loose.jpg'.*inside a sub-folder"):
        load_custom(tmp_path, camera_pattern=r"_c(?P<camid>\d+)")


# ---------------------------------------------------------------------------------------------------------------
# CSV mode


def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_csv_mode_with_split_column(tmp_path: Path) -> None:
    touch(tmp_path / "images", "a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg")
    absolute = tmp_path / "images" / "e.jpg"
    write_csv(
        tmp_path / "labels.csv",
        "path,pid,camid,split\n"
        "images/a.jpg,7,0,train\n"
        "images/b.jpg,4,1,Train\n"
        "images/c.jpg,2,0,query\n"
        "images/d.jpg,2,1,gallery\n"
        f"{absolute},9,1,gallery\n",
    )
    split = load_custom(tmp_path)  # labels.csv picks CSV mode
    assert split.extra["mode"] == "csv"
    assert sorted((Path(s.path).name, s.pid, s.camid) for s in split.train) == [
        ("a.jpg", 1, 0),
        ("b.jpg", 0, 1),
    ]
    assert [(Path(s.path).name, s.pid, s.camid) for s in split.query] == [("c.jpg", 2, 0)]
    assert [(Path(s.path).name, s.pid, s.camid) for s in split.gallery] == [("d.jpg", 2, 1), ("e.jpg", 9, 1)]
    assert split.query[0].path == str(tmp_path / "images" / "c.jpg")
    # the CSV file itself as the root: same split
    assert load_custom(tmp_path / "labels.csv") == split


def test_csv_mode_split_by_identity_and_split_folders(tmp_path: Path) -> None:
    rows = [
        (f"{pid}_{camera}_{image}.jpg", pid, camera)
        for pid in range(6)
        for camera in (3, 5)
        for image in range(2)
    ]
    touch(tmp_path / "all", *(name for name, _, _ in rows))
    text = "path,pid,camid\n" + "".join(f"{name},{pid},{camera}\n" for name, pid, camera in rows)
    write_csv(tmp_path / "all" / "people.csv", text)
    split = load_custom(tmp_path / "all", csv_file="people.csv", seed=4)
    assert split.extra["camera_names"] == ["3", "5"]
    check_names = {Path(s.path).name for s in split.train + split.query + split.gallery}
    assert check_names == {name for name, _, _ in rows}
    assert (len(split.train), len(split.query), len(split.gallery)) == (12, 6, 6)
    assert all(s.camid in (0, 1) for s in split.query)

    for part, pids in (("train", (1, 2)), ("query", (3,)), ("gallery", (3, 4))):
        touch(tmp_path / "split" / part, *(f"{pid}.jpg" for pid in pids))
        write_csv(
            tmp_path / "split" / part / "labels.csv",
            "path,pid,camid\n" + "".join(f"{pid}.jpg,{pid},{pid % 2}\n" for pid in pids),
        )
    split = load_custom(tmp_path / "split", mode="csv")
    assert [len(split.train), len(split.query), len(split.gallery)] == [2, 1, 2]
    assert sorted(s.pid for s in split.gallery) == [3, 4]


def test_csv_mode_without_cameras(tmp_path: Path) -> None:
    touch(tmp_path, *(f"{i}.jpg" for i in range(12)))
    write_csv(tmp_path / "labels.csv", "path,pid\n" + "".join(f"{i}.jpg,{i // 3}\n" for i in range(12)))
    with pytest.raises(DatasetError, match="has no camid column .*cameras=False"):
        load_custom(tmp_path)
    split = load_custom(tmp_path, cameras=False)
    assert (
        not split.has_camids and len(split.query) == 2 and len(split.gallery) == 4 and len(split.train) == 6
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "path,camid\na.jpg,0\n",
            re.escape(
                "missing the column(s) pid: expected a header line path,pid,camid[,split], found 'path,camid'"
            ),
        ),
        ("", "missing the column.s. path, pid, camid: .*found 'an empty file'"),
        ("path,pid,camid\na.jpg,1,0\na.jpg,bob,0\n", "labels.csv line 3: pid 'bob' is not an integer"),
        ("path,pid,camid\na.jpg,1,0\na.jpg,1,c2\n", "labels.csv line 3: camid 'c2' is not an integer"),
        ("path,pid,camid\na.jpg,1\n", "labels.csv line 2: expected 3 fields .path,pid,camid., found 2"),
        (
            "path,pid,camid\na.jpg,1,0,extra\n",
            "labels.csv line 2: expected 3 fields .path,pid,camid., found 4",
        ),
        ("path,pid,camid\n,1,0\n", "labels.csv line 2: the path field is empty"),
        (
            "path,pid,camid,split\na.jpg,1,0,test\n",
            "labels.csv line 2: split 'test' is not one of train, query, gallery",
        ),
        ("path,pid,camid\n", "no images found"),
    ],
)
def test_csv_bad_input(tmp_path: Path, text: str, message: str) -> None:
    touch(tmp_path, "a.jpg")
    write_csv(tmp_path / "labels.csv", text)
    with pytest.raises(DatasetError, match=message):
        load_custom(tmp_path)


def test_csv_referring_to_missing_images(tmp_path: Path) -> None:
    touch(tmp_path, "a.jpg")
    write_csv(tmp_path / "labels.csv", "path,pid,camid\na.jpg,1,0\nb.jpg,1,1\nsub/c.jpg,2,0\n")
    with pytest.raises(DatasetError) as error:
        load_custom(tmp_path)
    message = str(error.value)
    assert f"{tmp_path / 'labels.csv'} refers to 2 of 3 image(s) that do not exist" in message
    assert re.search(r"'.*/b\.jpg', '.*/sub/c\.jpg'$", message)


def test_csv_file_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"CSV file .*people.csv does not exist .*path,pid,camid"):
        load_custom(tmp_path, csv_file="people.csv")


# ---------------------------------------------------------------------------------------------------------------
# shared bad input and helpers


def test_missing_root_and_unknown_mode(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nowhere does not exist"):
        load_custom(tmp_path / "nowhere", pattern=PATTERN)
    with pytest.raises(
        DatasetError, match="unknown custom dataset mode 'regex'; choose from pattern, folders, csv"
    ):
        load_custom(tmp_path, mode="regex")


def test_partial_split_folders(tmp_path: Path) -> None:
    touch(tmp_path / "train", "0001_c1.jpg")
    touch(tmp_path / "query", "0002_c1.jpg")
    with pytest.raises(DatasetError, match="has train/, query/ but not gallery/"):
        load_custom(tmp_path, pattern=PATTERN)


def test_empty_splits(tmp_path: Path) -> None:
    touch(tmp_path / "a", *flat_names(range(4), cameras=(1,)))  # one camera only: no cross-camera query
    with pytest.raises(
        DatasetError, match="query split .* is empty: no test identity appears in two or more cameras"
    ):
        load_custom(tmp_path / "a", pattern=PATTERN)
    touch(tmp_path / "b" / "train", "0001_c1.jpg")
    touch(tmp_path / "b" / "query", "0002_c1.jpg")
    (tmp_path / "b" / "gallery").mkdir()
    with pytest.raises(
        DatasetError, match=f"the gallery split of the custom dataset is empty .*{tmp_path / 'b' / 'gallery'}"
    ):
        load_custom(tmp_path / "b", pattern=PATTERN)
    (tmp_path / "c").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        load_custom(tmp_path / "c", pattern=PATTERN)


def test_split_by_identity_needs_two_identities_and_a_valid_fraction() -> None:
    samples = [Sample(f"{i}.jpg", 1, i % 2) for i in range(4)]
    with pytest.raises(DatasetError, match="found 1 identity"):
        split_by_identity(samples, train_fraction=0.5, seed=0, cameras=True)
    with pytest.raises(DatasetError, match="train_fraction must lie strictly between 0 and 1"):
        split_by_identity(samples, train_fraction=1.0, seed=0, cameras=True)
    # with two identities each side gets one, whatever the fraction
    samples += [Sample(f"x{i}.jpg", 2, i % 2) for i in range(4)]
    for fraction in (0.01, 0.99):
        train, query, gallery = split_by_identity(samples, train_fraction=fraction, seed=0, cameras=True)
        assert len({s.pid for s in train}) == 1 and len(query) == 2 and len(gallery) == 2


def test_list_images_skips_hidden_and_non_images(tmp_path: Path) -> None:
    touch(tmp_path, "b.JPG", "a.png", ".hidden.jpg", "Thumbs.db", "notes.txt", "deep/c.jpeg", ".git/d.jpg")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG"]
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)] == [
        "a.png",
        "b.JPG",
        "deep/c.jpeg",
    ]
