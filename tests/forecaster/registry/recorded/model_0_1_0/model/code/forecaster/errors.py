"""Errors the library raises on purpose; callers map them to messages or HTTP codes."""


class ForecasterError(Exception):
    """Base class of every error that names what is wrong with an input."""


class DataError(ForecasterError, ValueError):
    """Input data is malformed: names the field, the ticker and the date."""


class SourceError(ForecasterError):
    """A data source (file, yfinance) could not deliver what was asked."""


class ModelNotFoundError(ForecasterError):
    """A model URI, name, alias or version does not resolve in the registry."""


class RegistryUnavailableError(ForecasterError):
    """The tracking server or registry cannot be reached."""


class ModelLoadError(ForecasterError):
    """A registered model version resolves, but its artifact cannot be loaded (corrupt or missing
    files, unreadable config, unsupported format): names the model, the version and the cause."""
