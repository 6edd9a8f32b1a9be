"""lipforcing.evaluation."""
