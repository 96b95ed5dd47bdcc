"""Test sets on disk, read one rank's contiguous shard at a time.

Formats (chosen by the file's extension):

* ``.npz`` -- numpy's zip of ``.npy`` members, stored (``np.savez``) or deflated
  (``np.savez_compressed``). Arrays ``x`` and ``y`` by default; ``x_test``/``y_test`` are
  accepted when ``x``/``y`` are absent (the Keras ``load_data()`` naming).
* ``.npy`` -- one array, the inputs ``x`` (no labels).
* ``.h5`` / ``.hdf5`` -- HDF5 datasets ``x`` and ``y`` (names may be paths, ``test/x``).

``x`` has one row per example (any trailing shape, e.g. ``(n, 32, 32, 3)`` images); ``y``,
when present, holds one integer class label per example (shape ``(n,)`` or ``(n, 1)``).

:func:`read_shard` reads only the rows asked for: HDF5 and ``.npy`` by slicing (h5py, a
memory map); a stored ``.npz`` member by seeking straight to the rows inside the zip file; a
compressed member by decompressing it as a stream and dropping everything before the first
row, so memory stays bounded by the shard plus a fixed-size buffer, never the whole array.
:func:`iter_rows` reads rows in chunks of a fixed number of examples, keeping each file (and
a compressed member's stream) open between chunks, so memory is bounded by one chunk.
"""
from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Union

import numpy as np
from numpy.lib import format as npy_format

from distsnn.errors import UserError

__all__ = ["DataError", "DatasetInfo", "inspect_dataset", "read_shard", "iter_rows",
           "SUPPORTED_EXTENSIONS"]

PathLike = Union[str, Path]
SUPPORTED_EXTENSIONS = (".npz", ".npy", ".h5", ".hdf5")
_HDF5_EXTENSIONS = (".h5", ".hdf5")
_CHUNK_BYTES = 1 << 18  # streaming buffer (256 KiB) for compressed members


class DataError(UserError, ValueError):
    """A dataset file that distsnn cannot use; the message says which file, what, and a fix."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset file holds (from headers only; no example data is read)."""

    path: Path
    format: str  # "npz", "npy" or "hdf5"
    n_examples: int
    x_shape: tuple  # shape of one example
    x_dtype: np.dtype
    y_dtype: Optional[np.dtype]
    has_labels: bool
    x_name: str  # the array names actually used (after the x_test/y_test fallback)
    y_name: Optional[str]


# ---------------------------------------------------------------------------------------------
# helpers


def _check_path(path: PathLike) -> tuple[Path, str]:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise DataError(f"{path}: unknown dataset format {path.suffix or '(no extension)'!r}; "
                        f"use one of {', '.join(SUPPORTED_EXTENSIONS)} (e.g. "
                        "np.savez('test.npz', x=x, y=y))")
    if not path.exists():
        raise DataError(f"{path}: dataset file not found; check the path (relative paths are "
                        f"taken from the working directory {Path.cwd()})")
    if not path.is_file():
        raise DataError(f"{path}: is not a file")
    return path, ("hdf5" if suffix in _HDF5_EXTENSIONS else suffix[1:])


def _missing(path: Path, what: str, name: str, present: list[str]) -> DataError:
    listed = ", ".join(repr(p) for p in present) or "none"
    return DataError(f"{path}: no array named {name!r} for the {what}; arrays present: "
                     f"{listed}. Name the right array (x_name=... / y_name=...) or re-save the "
                     f"file with {what} under {name!r}")


@dataclass(frozen=True)
class _ArrayHeader:
    shape: tuple
    dtype: np.dtype
    fortran_order: bool


def _read_npy_header(fp: BinaryIO, where: str) -> _ArrayHeader:
    try:
        version = npy_format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(fp)
        else:  # (3, 0): utf-8 field names; same layout as 2.0
            reader = getattr(npy_format, "_read_array_header", None)
            if reader is None:
                from numpy.lib import _format_impl  # numpy >= 2
                reader = _format_impl._read_array_header
            shape, fortran, dtype = reader(fp, version)
    except (ValueError, OSError, EOFError, struct.error, zipfile.BadZipFile) as err:
        raise DataError(f"{where}: not a valid .npy array ({err}); re-save it with np.save / "
                        "np.savez") from err
    if dtype.hasobject:
        raise DataError(f"{where}: holds Python objects (dtype {dtype}), which distsnn does not "
                        "unpickle; save a numeric array instead (np.asarray(x, np.float32))")
    return _ArrayHeader(tuple(shape), dtype, bool(fortran))


def _npz_names(zf: zipfile.ZipFile) -> list[str]:
    return [n[:-4] if n.endswith(".npy") else n for n in zf.namelist()]


def _npz_member(zf: zipfile.ZipFile, name: str) -> Optional[zipfile.ZipInfo]:
    for candidate in (name + ".npy", name):
        try:
            return zf.getinfo(candidate)
        except KeyError:
            pass
    return None


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(f"{path}: not a readable .npz (zip) file ({err}); re-save it with "
                        "np.savez / np.savez_compressed") from err


def _resolve_names(path: Path, present: list[str], x_name: str, y_name: Optional[str],
                   require_labels: bool, npz: bool) -> tuple[str, Optional[str]]:
    if x_name not in present:
        if npz and x_name == "x" and "x_test" in present:
            x_name = "x_test"
        else:
            raise _missing(path, "inputs (x)", x_name, present)
    if y_name is not None and y_name not in present:
        if npz and y_name == "y" and "y_test" in present:
            y_name = "y_test"
        elif require_labels:
            raise _missing(path, "labels (y)", y_name, present)
        else:
            y_name = None
    return x_name, y_name


def _check_arrays(path: Path, x_name: str, x: _ArrayHeader, y_name: Optional[str],
                  y: Optional[_ArrayHeader]) -> None:
    if len(x.shape) == 0:
        raise DataError(f"{path}: {x_name!r} is a scalar; it must have one row per example")
    if x.dtype.kind not in "biuf" and not x.dtype.names:  # records: event lists
        raise DataError(f"{path}: {x_name!r} has dtype {x.dtype}; inputs must be numbers "
                        "(convert with x.astype(np.float32))")
    if y is None:
        return
    if len(y.shape) == 0 or len(y.shape) > 2 or (len(y.shape) == 2 and y.shape[1] != 1):
        raise DataError(f"{path}: labels {y_name!r} have shape {y.shape}; distsnn needs one "
                        "integer class per example, shape (n,). For one-hot labels save "
                        "y.argmax(axis=1) instead")
    if y.dtype.kind not in "iu":
        raise DataError(f"{path}: labels {y_name!r} have dtype {y.dtype}, not integers; save "
                        "integer class indices, e.g. y.astype(np.int64) (or y.argmax(axis=1) "
                        "for one-hot labels)")
    if y.shape[0] != x.shape[0]:
        raise DataError(f"{path}: {x_name!r} has {x.shape[0]} examples but labels {y_name!r} "
                        f"have {y.shape[0]}; x and y must have the same length")


# ---------------------------------------------------------------------------------------------
# per-format header readers: return (x_name, x_header, y_name, y_header)


def _npz_headers(path, x_name, y_name, require_labels):
    with _open_zip(path) as zf:
        x_name, y_name = _resolve_names(path, _npz_names(zf), x_name, y_name, require_labels,
                                        npz=True)
        headers = []
        for name in (x_name, y_name):
            if name is None:
                headers.append(None)
                continue
            with zf.open(_npz_member(zf, name)) as member:
                headers.append(_read_npy_header(member, f"{path}[{name}]"))
    return x_name, headers[0], y_name, headers[1]


def _npy_headers(path, x_name, y_name, require_labels):
    if require_labels:
        raise DataError(f"{path}: a .npy file holds one array (the inputs) and no labels; save "
                        "inputs and labels together with np.savez('test.npz', x=x, y=y)")
    with open(path, "rb") as fp:
        header = _read_npy_header(fp, str(path))
    return x_name, header, None, None


def _h5py():
    try:
        import h5py
    except ImportError as err:  # pragma: no cover - h5py is a dependency
        raise DataError("reading HDF5 datasets needs h5py: pip install h5py") from err
    return h5py


def _h5_datasets(h5file) -> list[str]:
    h5py = _h5py()
    names: list[str] = []
    h5file.visititems(lambda name, obj: names.append(name)
                      if isinstance(obj, h5py.Dataset) else None)
    return names


def _h5_open(path: Path):
    h5py = _h5py()
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file ({err})") from err


def _h5_headers(path, x_name, y_name, require_labels):
    with _h5_open(path) as f:
        present = _h5_datasets(f)
        x_name, y_name = _resolve_names(path, present, x_name.strip("/"),
                                        None if y_name is None else y_name.strip("/"),
                                        require_labels, npz=False)
        headers = []
        for name in (x_name, y_name):
            if name is None:
                headers.append(None)
                continue
            ds = f[name]
            if ds.dtype.hasobject:
                raise DataError(f"{path}[{name}]: dtype {ds.dtype} is not numeric")
            headers.append(_ArrayHeader(tuple(ds.shape), np.dtype(ds.dtype), False))
    return x_name, headers[0], y_name, headers[1]


_HEADER_READERS = {"npz": _npz_headers, "npy": _npy_headers, "hdf5": _h5_headers}


def _inspect(path, x_name, y_name, require_labels):
    path, fmt = _check_path(path)
    x_name, x, y_name, y = _HEADER_READERS[fmt](path, x_name, y_name, require_labels)
    _check_arrays(path, x_name, x, y_name, y)
    info = DatasetInfo(path=path, format=fmt, n_examples=int(x.shape[0]),
                       x_shape=tuple(int(d) for d in x.shape[1:]), x_dtype=x.dtype,
                       y_dtype=None if y is None else y.dtype, has_labels=y is not None,
                       x_name=x_name, y_name=y_name)
    return info, x, y


def inspect_dataset(path: PathLike, x_name: str = "x", y_name: Optional[str] = "y",
                    require_labels: bool = False) -> DatasetInfo:
    """Describe a dataset file from its headers, without reading any example.

    ``y_name=None`` ignores labels. When the labels array is missing the dataset has no
    labels (``has_labels`` False) unless ``require_labels`` is set, which makes it an error.
    Raises :class:`DataError` for a missing file, an unknown extension, a missing array,
    x and y of different lengths, or labels that are not integers.
    """
    return _inspect(path, x_name, y_name, require_labels)[0]


# ---------------------------------------------------------------------------------------------
# reading rows


def _read_exact(fp: BinaryIO, buffer: memoryview, where: str) -> None:
    """Fill ``buffer`` from ``fp`` in chunks of at most _CHUNK_BYTES."""
    done, total = 0, len(buffer)
    while done < total:
        want = min(_CHUNK_BYTES, total - done)
        got = fp.readinto(buffer[done:done + want])
        if not got:
            raise DataError(f"{where}: the file ends early (truncated?); re-save it")
        done += got


def _skip(fp: BinaryIO, nbytes: int, where: str) -> None:
    """Read and drop ``nbytes`` from a stream, in chunks of at most _CHUNK_BYTES."""
    scratch = bytearray(min(_CHUNK_BYTES, max(nbytes, 1)))
    view = memoryview(scratch)
    while nbytes > 0:
        want = min(len(scratch), nbytes)
        got = fp.readinto(view[:want])
        if not got:
            raise DataError(f"{where}: the file ends early (truncated?); re-save it")
        nbytes -= got


def _rows_c_order(fp: BinaryIO, header: _ArrayHeader, start: int, stop: int, where: str,
                  seekable: bool) -> np.ndarray:
    """Rows [start, stop) of a C-ordered array whose data begins at fp's current position."""
    row_shape = header.shape[1:]
    row_bytes = int(np.prod(row_shape, dtype=np.int64)) * header.dtype.itemsize
    out = np.empty((stop - start,) + row_shape, header.dtype)
    if seekable:
        fp.seek(start * row_bytes, io.SEEK_CUR)
    else:
        _skip(fp, start * row_bytes, where)
    _read_exact(fp, memoryview(out.reshape(-1).view(np.uint8)), where)
    return out


def _rows_fortran_stream(fp: BinaryIO, header: _ArrayHeader, start: int, stop: int,
                         where: str) -> np.ndarray:
    """Rows [start, stop) of a Fortran-ordered array, streamed (bounded memory).

    In Fortran order the first index varies fastest: the data is prod(shape[1:]) columns of
    n elements each, and the wanted rows are elements [start, stop) of every column.
    """
    n = header.shape[0]
    row_shape = header.shape[1:]
    m = stop - start
    n_columns = int(np.prod(row_shape, dtype=np.int64))
    itemsize = header.dtype.itemsize
    out = np.empty(m * n_columns, header.dtype)  # Fortran layout of shape (m,) + row_shape
    chunk_items = max(min(_CHUNK_BYTES // itemsize, 1 << 15), 1)  # index arrays ~256 KiB each
    total = (n_columns - 1) * n + stop  # nothing after the last wanted element is read
    buffer = np.empty(chunk_items, header.dtype)
    raw = memoryview(buffer.view(np.uint8))
    position = 0  # flat index of the next element in the stream
    while position < total:
        count = min(chunk_items, total - position)
        _read_exact(fp, raw[:count * itemsize], where)
        flat = np.arange(position, position + count, dtype=np.int64)
        column, row = np.divmod(flat, n)
        keep = (row >= start) & (row < stop)
        if keep.any():
            out[column[keep] * m + (row[keep] - start)] = buffer[:count][keep]
        position += count
    return np.ascontiguousarray(out.reshape((m,) + row_shape, order="F"))


def _npz_data_offset(raw: BinaryIO, info: zipfile.ZipInfo, where: str) -> int:
    """Where a stored member's bytes begin in the zip file (after its local header)."""
    raw.seek(info.header_offset)
    local = raw.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise DataError(f"{where}: damaged zip local header; re-save the file")
    name_length, extra_length = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_length + extra_length


def _npz_rows(path: Path, name: str, header: _ArrayHeader, start: int, stop: int):
    where = f"{path}[{name}]"
    with _open_zip(path) as zf:
        info = _npz_member(zf, name)
        if info.flag_bits & 0x1:
            raise DataError(f"{where}: the member is encrypted; save an unencrypted .npz")
        if info.compress_type == zipfile.ZIP_STORED:
            with open(path, "rb") as raw:
                raw.seek(_npz_data_offset(raw, info, where))
                _read_npy_header(raw, where)  # leaves raw at the first data byte
                if header.fortran_order and len(header.shape) > 1:
                    data = np.memmap(raw, dtype=header.dtype, mode="r", offset=raw.tell(),
                                     shape=header.shape, order="F")
                    return np.ascontiguousarray(data[start:stop])
                return _rows_c_order(raw, header, start, stop, where, seekable=True)
        with zf.open(info) as member:  # deflated (or bzip2/lzma): decompress as a stream
            _read_npy_header(member, where)
            if header.fortran_order and len(header.shape) > 1:
                return _rows_fortran_stream(member, header, start, stop, where)
            return _rows_c_order(member, header, start, stop, where, seekable=False)


def _npy_rows(path: Path, header: _ArrayHeader, start: int, stop: int):
    data = np.load(path, mmap_mode="r", allow_pickle=False)
    return np.ascontiguousarray(data[start:stop])


def read_shard(path: PathLike, start: int, stop: int, x_name: str = "x",
               y_name: Optional[str] = "y", require_labels: bool = False
               ) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Rows ``[start, stop)`` of the inputs and labels, reading only those rows.

    Returns ``(x, y)`` with ``x.shape == (stop - start,) + info.x_shape`` (C-contiguous) and
    ``y`` a 1-D integer array, or None when the file has no labels. Names and errors as for
    :func:`inspect_dataset`; a rank's ``start, stop`` come from
    :func:`distsnn.parallel.sharding.shard_bounds`.
    """
    info, x_header, y_header = _inspect(path, x_name, y_name, require_labels)
    n = info.n_examples
    if not (0 <= start <= stop <= n):
        raise DataError(f"{info.path}: rows [{start}, {stop}) are outside the {n} examples "
                        f"of {info.x_name!r}")
    path = info.path
    arrays = []
    for name, header in ((info.x_name, x_header), (info.y_name, y_header)):
        if name is None:
            arrays.append(None)
        elif info.format == "npz":
            arrays.append(_npz_rows(path, name, header, start, stop))
        elif info.format == "npy":
            arrays.append(_npy_rows(path, header, start, stop))
        else:
            with _h5_open(path) as f:
                arrays.append(np.ascontiguousarray(f[name][start:stop]))
    x, y = arrays
    if y is not None:
        y = y.reshape(-1)
    return x, y


def iter_rows(path: PathLike, ranges: list[tuple[int, int]], chunk: int, x_name: str = "x",
              y_name: Optional[str] = "y", require_labels: bool = False
              ) -> Iterator[tuple[int, np.ndarray, Optional[np.ndarray]]]:
    """``(first_row, x, y)`` for the rows of ``ranges`` (sorted ``[start, stop)`` pairs), at
    most ``chunk`` rows at a time; only those rows are read. Names and errors as for
    :func:`read_shard`."""
    info, x_header, y_header = _inspect(path, x_name, y_name, require_labels)
    for start, stop in ranges:
        if not (0 <= start <= stop <= info.n_examples):
            raise DataError(f"{info.path}: rows [{start}, {stop}) are outside the "
                            f"{info.n_examples} examples of {info.x_name!r}")
    readers = [_row_reader(info, name, header, ranges, chunk)
               for name, header in ((info.x_name, x_header), (info.y_name, y_header))
               if name is not None]
    for start, stop in ranges:
        for a in range(start, stop, chunk):
            arrays = [next(reader) for reader in readers]
            y = arrays[1].reshape(-1) if len(arrays) > 1 else None
            yield a, arrays[0], y


def _row_reader(info: DatasetInfo, name: str, header: _ArrayHeader,
                ranges: list[tuple[int, int]], chunk: int) -> Iterator[np.ndarray]:
    """Chunks of one array's rows, in the order :func:`iter_rows` asks for them."""
    pieces = [(a, min(a + chunk, stop)) for start, stop in ranges for a in range(start, stop, chunk)]
    if info.format == "hdf5":
        with _h5_open(info.path) as f:
            for a, b in pieces:
                yield np.ascontiguousarray(f[name][a:b])
    elif info.format == "npy":
        data = np.load(info.path, mmap_mode="r", allow_pickle=False)
        for a, b in pieces:
            yield np.ascontiguousarray(data[a:b])
    else:
        yield from _npz_row_reader(info.path, name, header, pieces)


def _npz_row_reader(path: Path, name: str, header: _ArrayHeader,
                    pieces: list[tuple[int, int]]) -> Iterator[np.ndarray]:
    with _open_zip(path) as zf:
        info = _npz_member(zf, name)
        streamed = (info.compress_type != zipfile.ZIP_STORED
                    and not (header.fortran_order and len(header.shape) > 1))
    if not streamed:  # stored members seek to each chunk; Fortran order re-reads (rare)
        for a, b in pieces:
            yield _npz_rows(path, name, header, a, b)
        return
    where = f"{path}[{name}]"
    with _open_zip(path) as zf, zf.open(_npz_member(zf, name)) as member:
        _read_npy_header(member, where)
        position = 0
        for a, b in pieces:  # one decompression pass: skip forward to each chunk
            yield _rows_c_order(member, header, a - position, b - position, where,
                                seekable=False)
            position = b
