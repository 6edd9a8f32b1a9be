"""lipforcing.analysis."""
