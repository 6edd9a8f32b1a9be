"""lipforcing.distill."""
