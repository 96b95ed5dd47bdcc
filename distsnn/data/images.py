"""Test sets stored as image files: a folder of class subfolders of JPEG/PNG files (Keras'
``image_dataset_from_directory`` layout).

Classes are the sorted subfolder names, or the order given by a class-names file (one
folder name per line); examples are sorted by class, then file name. Each rank decodes only
its own examples (Pillow), one chunk at a time: optionally resized so the shorter side is
``resize`` pixels, centre-cropped to ``crop`` x ``crop``, as uint8 (scale with --scale).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from distsnn.data.files import DataError, DatasetInfo

EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclass
class ImageFolder:
    """The files and labels of an image folder, and how to decode them."""

    root: Path
    files: list[Path]
    labels: np.ndarray
    classes: list[str]
    channels: int
    resize: Optional[int] = None
    crop: Optional[int] = None

    @classmethod
    def scan(cls, root, channels: int, resize: Optional[int] = None,
             crop: Optional[int] = None, class_names: Optional[Path] = None) -> "ImageFolder":
        root = Path(root)
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        if class_names is not None:
            classes = [c.strip() for c in Path(class_names).read_text().splitlines() if c.strip()]
            missing = sorted(set(found) - set(classes))
            if missing:
                raise DataError(f"{root}: subfolders {missing} are not in {class_names}")
        else:
            classes = found
        files, labels = [], []
        for index, name in enumerate(classes):
            folder = root / name
            images = sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS) \
                if folder.is_dir() else []
            files += images
            labels += [index] * len(images)
        if not files:
            raise DataError(f"{root}: no .jpg/.jpeg/.png files in class subfolders; expected "
                            f"{root}/<class>/<image>.jpg")
        if channels not in (1, 3):
            raise DataError(f"images give 1 or 3 channels, but the network input has {channels}")
        return cls(root, files, np.array(labels, np.int64), classes, channels, resize, crop)

    def info(self) -> DatasetInfo:
        """What the folder holds (decodes the first image for the shape)."""
        return DatasetInfo(path=self.root, format="images", n_examples=len(self.files),
                           x_shape=self.decode(0).shape, x_dtype=np.dtype(np.uint8),
                           y_dtype=np.dtype(np.int64), has_labels=True, x_name="images",
                           y_name="folders")

    def identity(self) -> str:
        """A hash of the file names, sizes and labels (for the journal)."""
        digest = hashlib.sha256()
        for path, label in zip(self.files, self.labels):
            digest.update(f"{path.relative_to(self.root)}:{path.stat().st_size}:{label}\n".encode())
        return digest.hexdigest()[:16]

    def decode(self, index: int) -> np.ndarray:
        from PIL import Image
        path = self.files[index]
        try:
            with Image.open(path) as image:
                image = image.convert("L" if self.channels == 1 else "RGB")
                if self.resize:
                    w, h = image.size
                    factor = self.resize / min(w, h)
                    image = image.resize((max(1, round(w * factor)), max(1, round(h * factor))),
                                         Image.BILINEAR)
                if self.crop:
                    w, h = image.size
                    left, top = (w - self.crop) // 2, (h - self.crop) // 2
                    image = image.crop((left, top, left + self.crop, top + self.crop))
                array = np.asarray(image, np.uint8)
        except OSError as err:
            raise DataError(f"{path}: cannot decode the image ({err})") from err
        return array.reshape(array.shape[:2] + (self.channels,))

    def iter_rows(self, ranges: list[tuple[int, int]], chunk: int
                  ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(first_row, x, y)`` like :func:`distsnn.data.iter_rows`, decoding only these."""
        for start, stop in ranges:
            for a in range(start, stop, chunk):
                b = min(a + chunk, stop)
                images = [self.decode(i) for i in range(a, b)]
                shapes = {im.shape for im in images}
                if len(shapes) > 1:
                    raise DataError(f"{self.root}: images {a}..{b - 1} differ in size "
                                    f"({sorted(shapes)}); pass --resize and --crop")
                yield a, np.stack(images), self.labels[a:b]
