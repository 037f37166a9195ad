"""One base exception, one subclass per boundary, so callers catch exactly what they can handle."""


class NetSpectraError(Exception):
    """Base of every error NetSpectra raises on purpose."""


class ConfigError(NetSpectraError):
    """The configuration file is missing, unreadable or invalid."""


class CaptureError(NetSpectraError):
    """A capture source cannot start or read (missing interface, privileges, dumpcap, bad file)."""


class WireError(NetSpectraError):
    """Bytes on the bus do not decode as the wire contract says."""


class BusError(NetSpectraError):
    """The message bus cannot be reached or refused an operation."""


class PluginError(NetSpectraError):
    """A sketch plugin failed to import, register or validate its parameters."""


class StorageError(NetSpectraError):
    """The store cannot be reached or refused a read or a write."""


class StorageAuthError(StorageError):
    """The store refused our credentials: a configuration fault, not an outage to wait out."""


class StorageRefusedError(StorageError):
    """The store was reached and rejected a statement; its text is for the server log, not clients."""


class QueryError(NetSpectraError):
    """A query request is invalid (bad address, port, unknown field or task)."""


class UnknownTaskError(QueryError):
    """A query names a task the store has never seen."""


class MergeRefusedError(NetSpectraError):
    """A sketch answer needs states that cannot be merged: an algorithm that cannot merge, asked
    for several engines or a window, or stored states that disagree (widths, seeds, fields).

    Not the request's fault and not an outage: the api answers FAILED_PRECONDITION with the message.
    """


class PermanentError(NetSpectraError):
    """A fault that a restart cannot cure (a port taken, a file missing): the process stops instead.

    Raise it (or a ConfigError) inside a role to tell the supervisor not to restart that role.
    """


class EngineIdInUseError(StorageError, PermanentError):
    """Another live engine already writes under this engine id to this store.

    Two engines counting under one id would overwrite each other's rows; restarting cannot cure
    that, so the process stops (PermanentError) with a message naming the other engine.
    """
