"""Datasets: test-set files read one rank's shard at a time (:mod:`~distsnn.data.files`),
folders of images (:mod:`~distsnn.data.images`) and how stored examples become network
inputs (:mod:`~distsnn.data.inputs`: shape, scaling, checks). The network's input layout is
part of the IR (:mod:`distsnn.layout`); mlGeNN's spike-train helpers are
:mod:`distsnn.utils.data`."""
from distsnn.data.files import (
    SUPPORTED_EXTENSIONS,
    DataError,
    DatasetInfo,
    inspect_dataset,
    iter_rows,
    read_shard,
)

__all__ = ["SUPPORTED_EXTENSIONS", "DataError", "DatasetInfo", "inspect_dataset", "iter_rows",
           "read_shard"]
