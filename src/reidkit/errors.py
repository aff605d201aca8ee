"""Exception types whose message is shown to the user as is (the CLI prints it and exits non-zero)."""

from __future__ import annotations


class ReidkitError(Exception):
    """Base class: bad input the user can fix. The message names the file/field and what was expected."""


class DatasetError(ReidkitError, ValueError):
    """A dataset folder, list file, file name or image is missing or malformed."""


class ConfigError(ReidkitError, ValueError):
    """An unknown config key or a bad value."""


class CheckpointError(ReidkitError, ValueError):
    """A checkpoint that is missing, corrupt, of another format version or of another model."""


class EmbeddingError(ReidkitError, RuntimeError):
    """A model file that cannot be used as an embedder, or one that produced unusable embeddings."""
