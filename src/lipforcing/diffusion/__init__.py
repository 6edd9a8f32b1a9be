"""lipforcing.diffusion."""
