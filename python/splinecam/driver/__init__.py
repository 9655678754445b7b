"""The driver: the layer loop of :func:`partition` (:mod:`.engine`), where refinements
run (:mod:`.backends`), when a value is zero (:mod:`.tolerance`), argument and value
checks (:mod:`.checks`), slices computed in tiles (:mod:`.tiles`) and stitched into one
partition (:mod:`.stitch`), many checkpoints of one architecture (:mod:`.many`)."""
from splinecam.driver.engine import MemoryLimitExceeded, partition
from splinecam.driver.many import partition_many
from splinecam.driver.tiles import partition_tiled

__all__ = ["partition", "partition_many", "partition_tiled", "MemoryLimitExceeded"]
