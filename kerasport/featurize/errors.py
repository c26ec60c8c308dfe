"""The one error featurize raises for bad inputs, so the CLI prints it without a traceback."""

from __future__ import annotations

from kerasport.errors import KerasportError


class FeaturizeError(KerasportError):
    """Inputs to featurize are missing, inconsistent, or cannot be read."""
