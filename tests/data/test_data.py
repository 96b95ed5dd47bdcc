"""Dataset files and per-rank shards: .npz (stored and compressed), .npy, HDF5."""
from __future__ import annotations

import tracemalloc

import h5py
import numpy as np
import pytest

from distsnn.data import DataError, DatasetInfo, inspect_dataset, read_shard
from distsnn.parallel.sharding import shard_bounds

# --- shard_bounds ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_shards_cover_every_example_exactly_once(size):
    for n in list(range(size, 40)) + [97, 1000, 10_001]:
        bounds = [shard_bounds(n, rank, size) for rank in range(size)]
        covered = np.concatenate([np.arange(start, stop) for start, stop in bounds])
        assert np.array_equal(covered, np.arange(n)), (n, size, bounds)  # in order, no gaps
        # the same split as numpy.array_split: first n % size ranks get one more
        expected = [len(part) for part in np.array_split(np.arange(n), size)]
        assert [stop - start for start, stop in bounds] == expected
        assert all(stop > start for start, stop in bounds)  # nobody is left empty


def test_uneven_split_example():
    assert [shard_bounds(10, r, 4) for r in range(4)] == [(0, 3), (3, 6), (6, 8), (8, 10)]


@pytest.mark.parametrize("n, size", [(0, 1), (1, 2), (3, 5), (4, 5)])
def test_more_ranks_than_examples_is_an_error(n, size):
    with pytest.raises(ValueError, match="more ranks than examples") as err:
        shard_bounds(n, 0, size)
    assert f"n={n}" in str(err.value) and f"{size} ranks" in str(err.value)


def test_bad_rank_or_size():
    with pytest.raises(ValueError):
        shard_bounds(10, 4, 4)
    with pytest.raises(ValueError):
        shard_bounds(10, 0, 0)


# --- files -----------------------------------------------------------------------------------

N = 53  # prime: every shard count splits it unevenly


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(N, 6, 5, 3), dtype=np.uint8)  # 4-D NHWC images
    floats = rng.normal(size=(N, 7)).astype(np.float32)
    labels = rng.integers(0, 10, size=N).astype(np.int64)
    return images, floats, labels


def write(tmp_path, kind: str, x: np.ndarray, y=None, x_name="x", y_name="y"):
    """Write ``x`` (and ``y``) in one of the formats; returns the path."""
    if kind in ("npz", "npz-compressed"):
        path = tmp_path / f"{kind}.npz"
        arrays = {x_name: x} if y is None else {x_name: x, y_name: y}
        (np.savez if kind == "npz" else np.savez_compressed)(path, **arrays)
    elif kind == "npy":
        path = tmp_path / "x.npy"
        np.save(path, x)
    elif kind in ("h5", "h5-chunked"):
        path = tmp_path / f"{kind}.h5"
        with h5py.File(path, "w") as f:
            options = dict(chunks=True, compression="gzip") if kind == "h5-chunked" else {}
            f.create_dataset(x_name, data=x, **options)
            if y is not None:
                f.create_dataset(y_name, data=y, **options)
    else:
        raise AssertionError(kind)
    return path


FORMATS = ["npz", "npz-compressed", "npy", "h5", "h5-chunked"]


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("which", ["images", "floats", "images-fortran"])
def test_read_shard_equals_slice(tmp_path, arrays, kind, which):
    images, floats, labels = arrays
    x = {"images": images, "floats": floats, "images-fortran": np.asfortranarray(images)}[which]
    has_labels = kind != "npy"
    path = write(tmp_path, kind, x, labels if has_labels else None)

    info = inspect_dataset(path)
    assert info.n_examples == N and info.x_shape == x.shape[1:] and info.x_dtype == x.dtype
    assert info.has_labels == has_labels

    for size in range(1, 6):
        xs, ys = [], []
        for rank in range(size):
            start, stop = shard_bounds(N, rank, size)
            xr, yr = read_shard(path, start, stop)
            assert xr.shape == (stop - start,) + x.shape[1:] and xr.dtype == x.dtype
            assert xr.flags.c_contiguous
            assert np.array_equal(xr, x[start:stop])
            if has_labels:
                assert yr.dtype.kind in "iu" and np.array_equal(yr, labels[start:stop])
            else:
                assert yr is None
            xs.append(xr)
            ys.append(yr)
        assert np.array_equal(np.concatenate(xs), x)
    # an empty range and single rows at both ends
    assert read_shard(path, 7, 7)[0].shape == (0,) + x.shape[1:]
    assert np.array_equal(read_shard(path, 0, 1)[0], x[:1])
    assert np.array_equal(read_shard(path, N - 1, N)[0], x[N - 1:])


def test_inspect_dataset_fields(tmp_path, arrays):
    images, _, labels = arrays
    path = write(tmp_path, "npz", images, labels.astype(np.int32))
    info = inspect_dataset(path)
    assert info == DatasetInfo(path=path, format="npz", n_examples=N, x_shape=(6, 5, 3),
                               x_dtype=np.dtype(np.uint8), y_dtype=np.dtype(np.int32),
                               has_labels=True, x_name="x", y_name="y")


def test_keras_names_x_test_y_test_accepted_in_npz(tmp_path, arrays):
    images, _, labels = arrays
    path = write(tmp_path, "npz-compressed", images, labels, x_name="x_test", y_name="y_test")
    info = inspect_dataset(path)
    assert (info.x_name, info.y_name, info.has_labels) == ("x_test", "y_test", True)
    x, y = read_shard(path, 10, 20)
    assert np.array_equal(x, images[10:20]) and np.array_equal(y, labels[10:20])


@pytest.mark.parametrize("kind", ["npz", "h5"])
def test_custom_array_names(tmp_path, arrays, kind):
    _, floats, labels = arrays
    path = write(tmp_path, kind, floats, labels, x_name="inputs", y_name="classes")
    x, y = read_shard(path, 3, 9, x_name="inputs", y_name="classes")
    assert np.array_equal(x, floats[3:9]) and np.array_equal(y, labels[3:9])


def test_hdf5_names_in_groups(tmp_path, arrays):
    _, floats, labels = arrays
    path = tmp_path / "grouped.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("test/x", data=floats)
        f.create_dataset("test/y", data=labels)
    x, y = read_shard(path, 0, 5, x_name="test/x", y_name="test/y")
    assert np.array_equal(x, floats[:5]) and np.array_equal(y, labels[:5])


def test_labels_column_vector_is_flattened(tmp_path, arrays):
    _, floats, labels = arrays
    path = write(tmp_path, "npz", floats, labels.reshape(-1, 1).astype(np.uint8))
    _, y = read_shard(path, 0, N)
    assert y.shape == (N,) and np.array_equal(y, labels)


def test_missing_labels_without_require_labels(tmp_path, arrays):
    _, floats, _ = arrays
    path = write(tmp_path, "npz", floats)
    info = inspect_dataset(path)
    assert not info.has_labels and info.y_name is None
    assert read_shard(path, 0, 4)[1] is None
    # and labels can be ignored on purpose
    path = write(tmp_path, "h5", floats, np.zeros(N, np.int64))
    assert read_shard(path, 0, 4, y_name=None)[1] is None


# --- errors ----------------------------------------------------------------------------------


def test_error_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found") as err:
        inspect_dataset(tmp_path / "nope.npz")
    assert "nope.npz" in str(err.value)


def test_error_unknown_extension(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2,3\n")
    with pytest.raises(DataError, match="unknown dataset format") as err:
        read_shard(path, 0, 1)
    assert "data.csv" in str(err.value) and ".npz" in str(err.value)


@pytest.mark.parametrize("kind", ["npz", "npz-compressed", "h5"])
def test_error_missing_array_lists_names_present(tmp_path, arrays, kind):
    _, floats, labels = arrays
    path = write(tmp_path, kind, floats, labels, x_name="inputs", y_name="targets")
    with pytest.raises(DataError) as err:
        inspect_dataset(path)
    message = str(err.value)
    assert str(path) in message and "'x'" in message
    assert "'inputs'" in message and "'targets'" in message
    # a labels name asked for explicitly
    with pytest.raises(DataError, match="'labels'") as err:
        read_shard(path, 0, 1, x_name="inputs", y_name="labels", require_labels=True)
    assert "'targets'" in str(err.value)


def test_error_npy_has_no_labels_when_required(tmp_path, arrays):
    path = write(tmp_path, "npy", arrays[1])
    with pytest.raises(DataError, match="no labels") as err:
        inspect_dataset(path, require_labels=True)
    assert "np.savez" in str(err.value)


@pytest.mark.parametrize("kind", ["npz", "h5"])
def test_error_lengths_differ(tmp_path, arrays, kind):
    _, floats, labels = arrays
    path = write(tmp_path, kind, floats, labels[:-3])
    with pytest.raises(DataError, match=f"{N} examples but labels 'y' have {N - 3}") as err:
        read_shard(path, 0, 5)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("bad_y, what", [
    (np.arange(N, dtype=np.float32), "not integers"),
    (np.eye(10, dtype=np.int64)[np.arange(N) % 10], "one-hot"),
    (np.eye(10, dtype=np.float32)[np.arange(N) % 10], "one-hot"),
])
@pytest.mark.parametrize("kind", ["npz", "h5"])
def test_error_labels_not_integer_classes(tmp_path, arrays, kind, bad_y, what):
    path = write(tmp_path, kind, arrays[1], bad_y)
    with pytest.raises(DataError, match=what) as err:
        inspect_dataset(path)
    assert str(path) in str(err.value) and "'y'" in str(err.value)


def test_error_rows_out_of_range(tmp_path, arrays):
    path = write(tmp_path, "npz", arrays[1], arrays[2])
    with pytest.raises(DataError, match=r"rows \[50, 60\) are outside the 53 examples"):
        read_shard(path, 50, 60)


def test_error_object_array(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([[1], [2, 3]], dtype=object))
    with pytest.raises(DataError, match="objects"):
        inspect_dataset(path)


def test_error_not_a_zip(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"this is not a zip file")
    with pytest.raises(DataError, match="broken.npz"):
        inspect_dataset(path)


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


# --- bounded memory --------------------------------------------------------------------------

ROWS, COLS = 10_000, 1_000  # 40 MB of float32


@pytest.fixture(scope="module")
def big_npz(tmp_path_factory):
    x = (np.arange(ROWS * COLS, dtype=np.int64) % 251).astype(np.float32).reshape(ROWS, COLS)
    x[:, 0] = np.arange(ROWS)  # each row identifiable
    directory = tmp_path_factory.mktemp("big")
    np.savez_compressed(directory / "compressed.npz", x=x, y=np.arange(ROWS) % 10)
    np.savez(directory / "stored.npz", x=x, y=np.arange(ROWS) % 10)
    np.savez_compressed(directory / "compressed-fortran.npz", x=np.asfortranarray(x),
                        y=np.arange(ROWS) % 10)
    return directory, x.nbytes


def peak_while(fn):
    tracemalloc.start()
    try:
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.mark.parametrize("name", ["compressed.npz", "stored.npz", "compressed-fortran.npz"])
def test_read_shard_never_holds_the_whole_array(big_npz, name):
    directory, nbytes = big_npz
    path = directory / name
    start, stop = 9_800, 9_900  # near the end: a compressed member is streamed through
    (x, y), peak = peak_while(lambda: read_shard(path, start, stop))
    assert x.shape == (100, COLS) and np.array_equal(x[:, 0], np.arange(start, stop))
    assert np.array_equal(y, np.arange(start, stop) % 10)
    shard_bytes = x.nbytes  # 400 kB
    assert peak < shard_bytes + 4 * 2**20, f"peak {peak / 2**20:.1f} MiB for {name}"
    assert peak < nbytes / 8


def test_tracemalloc_sees_a_full_load(big_npz):
    # The control for the test above: loading the whole array is visible to tracemalloc.
    directory, nbytes = big_npz
    _, peak = peak_while(lambda: np.load(directory / "compressed.npz")["x"][9_800:9_900].copy())
    assert peak >= nbytes
