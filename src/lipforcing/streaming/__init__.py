"""lipforcing.streaming."""
