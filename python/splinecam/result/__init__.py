"""The result: :class:`Partition` (regions, labelled edges, per-layer queries, decision
boundary) over the per-layer face arrays :class:`Layer`."""
from splinecam.result.partition import Layer, Partition, face_means

__all__ = ["Partition", "Layer", "face_means"]
