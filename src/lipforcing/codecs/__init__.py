"""lipforcing.codecs."""
