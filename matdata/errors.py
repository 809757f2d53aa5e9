"""One exception family for the whole toolkit.

Library code raises a subclass of :class:`MatdataError`; the CLI turns any of them into a
single line naming what is wrong and what to do, and exits non-zero.  Per-item failures
during a scan or a build are not raised to the top: callers catch them and record a
:class:`~matdata.rejects.Reject` with ``error.reason``.
"""

from __future__ import annotations


class MatdataError(Exception):
    """Base class of every error matdata raises on purpose."""

    #: A short, stable, snake_case reason code (used in reject tables and QA flags).
    reason: str = "error"
    #: The CLI's exit status for this error.
    exit_code: int = 1

    def __init__(self, message: str, *, reason: str | None = None, hint: str | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.hint = hint

    def one_line(self) -> str:
        """The message plus the hint, as the CLI prints it."""
        msg = str(self)
        return f"{msg} ({self.hint})" if self.hint else msg


class ConfigError(MatdataError):
    """Bad options or arguments given by the user."""

    reason = "config"


class ImageDecodeError(MatdataError):
    """A file or byte string could not be turned into a usable image.

    ``reason`` is one of :data:`matdata.imageio.DECODE_REASONS`.
    """

    def __init__(self, name: str, reason: str, detail: str = ""):
        self.name = name
        self.detail = detail
        text = f"{name}: {reason.replace('_', ' ')}"
        super().__init__(f"{text}: {detail}" if detail else text, reason=reason)


class SourceError(MatdataError):
    """A dataset source (a folder tree, a manifest) is missing or unusable as a whole."""

    reason = "source"


class ItemError(MatdataError):
    """One item of a source is unusable (missing matte, size mismatch, bad annotation...)."""

    def __init__(self, name: str, reason: str, detail: str = ""):
        self.name = name
        self.detail = detail
        text = f"{name}: {reason.replace('_', ' ')}"
        super().__init__(f"{text}: {detail}" if detail else text, reason=reason)


class DatasetError(MatdataError):
    """A built dataset (dataset.json, shards) is missing, inconsistent or corrupt."""

    reason = "dataset"


class CheckpointError(MatdataError):
    """A weights file does not fit the network it is loaded into, or is not a safe state_dict."""

    reason = "checkpoint"


class DeviceError(MatdataError):
    """A compute device was asked for that this machine does not have."""

    reason = "device"


class Interrupted(MatdataError):
    """The user stopped a command (Ctrl-C); the message says what was kept and how to go on.

    The CLI prints it as one ``interrupted:`` line and exits 130 (the shell's code for
    SIGINT).
    """

    reason = "interrupted"
    exit_code = 130
