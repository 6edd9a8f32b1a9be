"""User-facing errors.

Library code raises :class:`UserError` (or a subclass) for bad input it can explain in one line:
a missing or corrupt file, a video with no face, a checkpoint of the wrong architecture. The CLI
prints ``error: <message>`` and exits non-zero; any other exception is a bug and is reported as
one line too, with the traceback only when ``LIPFORCING_DEBUG=1``.
"""


class UserError(Exception):
    """Bad input that the user can fix; the message is shown as is."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt or made for another architecture."""


class MediaError(UserError):
    """A media file that cannot be read, has no usable stream, or has no face."""
