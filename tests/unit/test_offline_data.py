"""service.catalog.offline_data: the bundled digits dataset and Debian's Fashion-MNIST."""

from __future__ import annotations

import gzip
import hashlib
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from service.catalog import offline_data
from service.catalog.offline_data import (
    BUNDLED_DIGITS,
    DIGITS_FILES,
    FASHION_MNIST_DIR,
    digits_dataset_arrays,
    digits_dataset_valid,
    fashion_mnist_available,
    write_digits_dataset,
)
from trainer.utils import MNIST_FILE_NAMES, find_mnist_files, load_data, load_mnist, write_idx_gz


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_file_names_are_the_mnist_names() -> None:
    assert set(DIGITS_FILES.values()) == {
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    }
    assert DIGITS_FILES == MNIST_FILE_NAMES


def test_writes_exactly_four_files_and_no_leftovers(tmp_path: Path) -> None:
    write_digits_dataset(tmp_path / "digits")

    assert sorted(p.name for p in (tmp_path / "digits").iterdir()) == sorted(DIGITS_FILES.values())
    assert [p.name for p in tmp_path.iterdir()] == ["digits"]  # the staging dir is gone
    assert find_mnist_files(tmp_path / "digits") == {k: tmp_path / "digits" / v for k, v in DIGITS_FILES.items()}


def test_split_shapes_and_value_ranges(tmp_path: Path) -> None:
    write_digits_dataset(tmp_path)

    data = load_mnist(tmp_path)

    assert data["train_images"].shape == (1347, 64)
    assert data["test_images"].shape == (450, 64)
    assert data["train_labels"].shape == (1347,)
    assert data["test_labels"].shape == (450,)
    for key in ("train_images", "test_images"):
        assert data[key].min() == 0
        assert data[key].max() == 255
    assert set(np.unique(data["train_labels"]).tolist()) == set(range(10))
    assert set(np.unique(data["test_labels"]).tolist()) == set(range(10))


def test_images_are_stored_as_8x8(tmp_path: Path) -> None:
    write_digits_dataset(tmp_path)

    raw = gzip.decompress((tmp_path / DIGITS_FILES["train_images"]).read_bytes())

    assert struct.unpack(">IIII", raw[:16]) == (0x803, 1347, 8, 8)


def test_pixels_are_rescaled_sklearn_digits(tmp_path: Path) -> None:
    write_digits_dataset(tmp_path)
    data = load_mnist(tmp_path)
    digits = load_digits()

    expected = np.rint(digits.data * 255 / 16).astype(np.uint8)
    assert set(expected[digits.data == 8].tolist()) == {128}  # the one .5 case (127.5) rounds up
    # Train + test together are exactly the 1797 digits, each with its label.
    written = Counter(
        (row.tobytes(), int(label))
        for split in ("train", "test")
        for row, label in zip(data[f"{split}_images"], data[f"{split}_labels"], strict=True)
    )
    original = Counter((row.tobytes(), int(label)) for row, label in zip(expected, digits.target, strict=True))
    assert written == original


def test_split_is_stratified(tmp_path: Path) -> None:
    write_digits_dataset(tmp_path)
    data = load_mnist(tmp_path)

    test_counts = np.bincount(data["test_labels"], minlength=10)
    total_counts = np.bincount(load_digits().target, minlength=10)
    np.testing.assert_allclose(test_counts, total_counts * 0.25, atol=1)


def test_split_is_fixed_across_writes(tmp_path: Path) -> None:
    write_digits_dataset(tmp_path / "a")
    write_digits_dataset(tmp_path / "b")

    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")


def test_second_call_does_not_rewrite(tmp_path: Path) -> None:
    write_digits_dataset(tmp_path)
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tmp_path.iterdir()}

    write_digits_dataset(tmp_path)

    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tmp_path.iterdir()} == before


def test_missing_file_is_restored(tmp_path: Path) -> None:
    write_digits_dataset(tmp_path)
    original = _digests(tmp_path)
    (tmp_path / DIGITS_FILES["test_labels"]).unlink()
    assert not digits_dataset_valid(tmp_path)

    write_digits_dataset(tmp_path)

    assert _digests(tmp_path) == original


def test_corrupt_file_is_replaced(tmp_path: Path) -> None:
    write_digits_dataset(tmp_path)
    original = _digests(tmp_path)
    (tmp_path / DIGITS_FILES["train_images"]).write_bytes(b"not gzip")
    assert not digits_dataset_valid(tmp_path)

    write_digits_dataset(tmp_path)

    assert _digests(tmp_path) == original
    assert digits_dataset_valid(tmp_path)


def test_existing_unrelated_files_are_kept(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("keep me")

    write_digits_dataset(tmp_path)

    assert (tmp_path / "README").read_text() == "keep me"
    assert digits_dataset_valid(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*DIGITS_FILES.values(), "README"])


def test_missing_parents_are_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "digits"

    write_digits_dataset(target)

    assert digits_dataset_valid(target)


def test_a_valid_dataset_of_other_size_is_not_digits(tmp_path: Path) -> None:
    write_digits_dataset(tmp_path)
    labels = load_data(tmp_path / DIGITS_FILES["test_labels"], label=True)
    assert labels.shape == (450, 1)

    write_idx_gz(tmp_path / DIGITS_FILES["test_labels"], labels.reshape(-1)[:-1])

    assert not digits_dataset_valid(tmp_path)
    write_digits_dataset(tmp_path)
    assert digits_dataset_valid(tmp_path)


def test_fashion_mnist_unavailable_for_empty_or_missing_folder(tmp_path: Path) -> None:
    assert not fashion_mnist_available(tmp_path)
    assert not fashion_mnist_available(tmp_path / "absent")


def test_fashion_mnist_available_accepts_nested_layout(tmp_path: Path) -> None:
    write_digits_dataset(tmp_path / "raw" / "nested")

    assert fashion_mnist_available(tmp_path)


def test_fashion_mnist_needs_all_four_files(tmp_path: Path) -> None:
    write_digits_dataset(tmp_path)
    (tmp_path / DIGITS_FILES["train_labels"]).unlink()

    assert not fashion_mnist_available(tmp_path)


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist_is_detected() -> None:
    assert fashion_mnist_available()
    # Debian's package installs the four files flat, under the MNIST names.
    assert find_mnist_files(FASHION_MNIST_DIR) == {k: FASHION_MNIST_DIR / v for k, v in MNIST_FILE_NAMES.items()}


def test_the_bundled_files_hold_what_scikit_learn_makes() -> None:
    bundled = load_mnist(BUNDLED_DIGITS)
    for key, expected in digits_dataset_arrays().items():
        np.testing.assert_array_equal(bundled[key].reshape(expected.shape), expected)


def test_without_the_bundle_they_are_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offline_data, "BUNDLED_DIGITS", tmp_path / "absent")
    write_digits_dataset(tmp_path / "made")
    copied = tmp_path / "copied"
    monkeypatch.undo()
    write_digits_dataset(copied)
    assert digits_dataset_valid(tmp_path / "made")
    for key, made in load_mnist(tmp_path / "made").items():
        np.testing.assert_array_equal(load_mnist(copied)[key], made)
