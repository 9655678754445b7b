"""Inputs from files, as the command line reads them: models (:mod:`.models`), points
(:mod:`.points`) and a first forward pass that says what shape a model expects
(:mod:`.checks`). Every problem is an :class:`InputError` of one line."""
from splinecam.io.checks import check_forward
from splinecam.io.errors import InputError
from splinecam.io.models import LoadedModel, load_model
from splinecam.io.points import load_point, load_points

__all__ = ["InputError", "LoadedModel", "load_model", "load_point", "load_points", "check_forward"]
