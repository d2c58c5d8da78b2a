"""Every exception modelsync raises on purpose. Flat, as in rq: one module, no hierarchy games."""

from __future__ import annotations

from pathlib import Path


class ModelsyncError(Exception):
    """Base class: an error modelsync expected and can describe."""


class ConfigError(ModelsyncError):
    """The configuration file (or the environment) is wrong; names the file and the key."""

    def __init__(self, source: Path | str, key: str, message: str) -> None:
        self.source = str(source)
        self.key = key
        self.message = message
        where = f"{self.source}: {key}" if key else self.source
        super().__init__(f"{where}: {message}")


class UnsafeKeyError(ModelsyncError):
    """An object key that could escape the models directory or reach modelsync's own files."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"unsafe object key {key!r}: {reason}")


class SchemaViolation(ModelsyncError):
    """A document failed its JSON schema; ``field`` is a dotted path to the failing part."""

    def __init__(self, schema: str, field: str, message: str) -> None:
        self.schema = schema
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class IntentError(ModelsyncError):
    """An intent file that cannot be read, fails its schema, or disagrees with its key."""


class StorageError(ModelsyncError):
    """The S3 endpoint could not be reached or answered with an error."""


class ObjectChangedError(ModelsyncError):
    """An object was overwritten or deleted between the listing and its download.

    Not an outage (the bucket answered): the version is listed again and retried on its own,
    the others go on.
    """


class PublishError(ModelsyncError):
    """A version could not be staged or published (disk full, permission denied, bad data)."""


class InsufficientSpaceError(PublishError):
    """A version's downloads would not fit on the models volume (with its margin): refused
    before the first byte, so the served version stays and nothing is half-written."""


class OvmsConfigError(ModelsyncError):
    """The OVMS config.json on disk or the one modelsync built is not valid."""
