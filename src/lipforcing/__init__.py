"""lipforcing: real-time streaming lip sync with Lip Forcing (arXiv 2606.11180)."""

__version__ = "0.1.0"
