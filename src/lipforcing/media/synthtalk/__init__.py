"""lipforcing.media.synthtalk."""
