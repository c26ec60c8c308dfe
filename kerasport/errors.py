"""Errors shared by every stage, so callers can catch one family and print its message."""


class KerasportError(ValueError):
    """Base class: the message names the problem and is meant for the user."""


class BundleError(KerasportError):
    """A bundle is missing, unreadable, of an unknown format, or was tampered with."""


class InputError(KerasportError):
    """Examples handed to a classifier have the wrong shape, dtype or values."""


class ExportError(KerasportError):
    """A model could not be exported, or the exported model disagrees with the original."""


class BackendUnavailableError(BundleError):
    """A backend cannot run here: its extra is not installed, or no artifact fits this CPU.

    `load(backend="auto")` moves on to the next backend only on this error.
    """
