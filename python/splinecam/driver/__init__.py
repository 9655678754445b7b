"""The driver: the layer loop of :func:`partition` (:mod:`.engine`), where refinements
run (:mod:`.backends`), when a value is zero (:mod:`.tolerance`), argument and value
checks (:mod:`.checks`) and slices computed in tiles (:mod:`.tiles`)."""
from splinecam.driver.engine import MemoryLimitExceeded, partition
from splinecam.driver.tiles import TiledPartition, partition_tiled

__all__ = ["partition", "partition_tiled", "TiledPartition", "MemoryLimitExceeded"]
