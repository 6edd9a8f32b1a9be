"""lipforcing.media."""
