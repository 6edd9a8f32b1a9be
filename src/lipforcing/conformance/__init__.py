"""Stand-ins in the exact released layouts (random weights, reduced depth) for the conformance
suite: key tables (:mod:`~lipforcing.conformance.layouts`) and writers."""
