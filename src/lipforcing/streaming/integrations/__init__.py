"""lipforcing.streaming.integrations."""
