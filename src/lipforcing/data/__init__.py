"""lipforcing.data."""
