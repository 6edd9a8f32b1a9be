"""Personal avatars: the whole chain trained on one person's footage (``avatar create``), the
``NAME.avatar`` folder, and its held-out report."""

from lipforcing.avatar.bundle import Avatar, list_avatars, stream_inputs

__all__ = ["Avatar", "list_avatars", "stream_inputs"]
