"""Datasets that exist without network access: sklearn's digits and Debian's Fashion-MNIST."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# numpy (and trainer.utils, which imports it) only where files are written: checking them
# on every start needs neither, and numpy costs ~0.2 s of start-up.

__all__ = [
    "DIGITS_FILES",
    "DIGITS_N_SAMPLES",
    "DIGITS_TEST_SIZE",
    "FASHION_MNIST_DIR",
    "digits_dataset_arrays",
    "digits_dataset_valid",
    "fashion_mnist_available",
    "write_digits_dataset",
]

# The digits dataset is written under the MNIST file names so the unmodified
# tutorial script (which globs for those names) can train on it (trainer.utils.MNIST_FILE_NAMES;
# a test keeps the two equal).
DIGITS_FILES: Final[dict[str, str]] = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
# The same four files, as digits_dataset_arrays() writes them, shipped beside this module.
BUNDLED_DIGITS: Final = Path(__file__).with_name("digits")
_IDX_IMAGES_MAGIC: Final = 0x00000803
_IDX_LABELS_MAGIC: Final = 0x00000801
DIGITS_N_SAMPLES: Final = 1797
DIGITS_TEST_SIZE: Final = 0.25
_DIGITS_SPLIT_SEED: Final = 0
_DIGITS_MAX_VALUE: Final = 16

# Installed by Debian's `dataset-fashion-mnist` package, flat, with the MNIST
# file names (train-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, ...).
FASHION_MNIST_DIR: Final = Path("/usr/share/datasets/fashion-mnist")


def digits_dataset_arrays() -> dict[str, npt.NDArray[np.uint8]]:
    """The digits train/test split as uint8 arrays keyed like DIGITS_FILES."""
    # Imported here, not at module level: scikit-learn (and scipy) would add ~1 s and ~60 MB
    # to every service start, and are only needed the first time the files are written.
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # Pixels are 0..16; stretch to MNIST's 0..255 so the script's "/ 255.0" gives
    # 0..1 here too. np.rint rounds the only half case (8 -> 127.5) to 128.
    images = np.rint(digits.images * (255.0 / _DIGITS_MAX_VALUE)).astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    # A fixed stratified split, so every run (and every machine) trains and
    # scores on exactly the same 1347/450 images.
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        labels,
        test_size=DIGITS_TEST_SIZE,
        random_state=_DIGITS_SPLIT_SEED,
        stratify=labels,
    )
    return {
        "train_images": np.ascontiguousarray(x_train),
        "train_labels": np.ascontiguousarray(y_train),
        "test_images": np.ascontiguousarray(x_test),
        "test_labels": np.ascontiguousarray(y_test),
    }


def _idx_shape(path: Path, *, label: bool) -> tuple[int, int]:
    """(items, values per item) of a gzipped IDX file, read as trainer.utils.load_data reads it
    (every byte inflated, CRC checked, magic and length checked) but into no array."""
    raw = path.read_bytes()
    data = bytearray()
    try:
        while raw:
            decoder = zlib.decompressobj(wbits=31)
            data += decoder.decompress(raw)
            if not decoder.eof:
                raise ValueError(f"{path}: truncated gzip stream")
            raw = decoder.unused_data.lstrip(b"\x00")
    except zlib.error as exc:
        raise ValueError(f"{path}: corrupt gzip data ({exc})") from exc
    if len(data) < 4 or struct.unpack(">I", data[:4])[0] != (_IDX_LABELS_MAGIC if label else _IDX_IMAGES_MAGIC):
        raise ValueError(f"{path}: not an IDX {'label' if label else 'image'} file")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != math.prod(dims):
        raise ValueError(f"{path}: IDX dimensions {dims} do not match its data")
    return dims[0], 1 if label else math.prod(dims[1:])


def digits_dataset_valid(folder: Path) -> bool:
    """True when `folder` directly holds a complete, readable digits dataset."""
    try:
        train_x = _idx_shape(folder / DIGITS_FILES["train_images"], label=False)
        train_y = _idx_shape(folder / DIGITS_FILES["train_labels"], label=True)
        test_x = _idx_shape(folder / DIGITS_FILES["test_images"], label=False)
        test_y = _idx_shape(folder / DIGITS_FILES["test_labels"], label=True)
    except (OSError, ValueError):
        return False
    return (
        train_x[0] == train_y[0]
        and test_x[0] == test_y[0]
        and train_x[0] + test_x[0] == DIGITS_N_SAMPLES
        and train_x[1] == test_x[1] == 64
    )


def write_digits_dataset(folder: Path) -> None:
    """Write the digits dataset as four MNIST-named IDX files into `folder` (idempotent)."""
    folder = Path(folder)
    if digits_dataset_valid(folder):
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Build everything in a sibling temp dir first: when `folder` does not exist
    # yet a single rename publishes all four files at once, so a crash (or a
    # concurrent reader) never sees half a dataset.
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        if digits_dataset_valid(BUNDLED_DIGITS):
            # The files shipped with the package (a test checks they hold exactly what
            # digits_dataset_arrays() makes): a new data dir needs no scikit-learn (~1.3 s).
            for file_name in DIGITS_FILES.values():
                _write_durably(staging / file_name, (BUNDLED_DIGITS / file_name).read_bytes())
        else:
            from trainer.utils import write_idx_gz

            arrays = digits_dataset_arrays()
            for key, file_name in DIGITS_FILES.items():
                write_idx_gz(staging / file_name, arrays[key])
        os.chmod(staging, 0o755)  # mkdtemp makes 0700; the dataset is not secret
        try:
            # rename(2) also replaces an *empty* directory, e.g. a fresh tmp_path.
            os.rename(staging, folder)
        except OSError:
            # `folder` exists with other content (a partial or stale dataset, or
            # another writer won the race). Move file by file: each os.replace is
            # atomic and the bytes are deterministic, so racing writers agree.
            for file_name in DIGITS_FILES.values():
                os.replace(staging / file_name, folder / file_name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)


def _write_durably(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, 0o644)


def fashion_mnist_available(path: Path = FASHION_MNIST_DIR) -> bool:
    """True when all four Fashion-MNIST IDX files are found under `path` (at any depth, as
    trainer.utils.find_mnist_files finds them)."""
    if not path.is_dir():
        return False
    return all(any(m.is_file() for m in path.glob(f"**/{name}")) for name in DIGITS_FILES.values())
