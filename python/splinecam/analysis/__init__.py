"""Analysis of a partition: statistics (:mod:`.stats`), sampling (:mod:`.sampling`),
exports (:mod:`.export`) and figures (:mod:`.plot`)."""
