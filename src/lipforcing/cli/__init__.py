"""lipforcing.cli."""
