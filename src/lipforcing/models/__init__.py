"""lipforcing.models."""
