"""The one exception tree of bridge.

::

    BridgeError
     ├── ConfigError                 the config is wrong: nothing starts until it is fixed
     ├── PluginLoadError             one plugin failed to load: it is reported, the others run
     ├── FieldValueError             a value does not fit a typed field (with the reason)
     ├── IdentityError               a change matches several records: nothing is written
     ├── StoreError                  the store cannot be opened: the command stops
     ├── ConnectorStartError         a connector failed to start: that system stops, the others run
     └── ConnectorError              raised by connectors, carries the system and record
          ├── ConnectorAuthError        stop that system, tell the operator
          ├── RetriableConnectorError   back off and try again (429, 5xx, timeouts)
          ├── FatalConnectorError       abort this run of that system
          └── SkippableRecordError      dead-letter the record, go on with the rest
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error bridge raises on purpose."""


class ConnectorStartError(BridgeError):
    """A connector's own start failed (a licence server down, a plugin's fault), not the config: a problem of
    that system alone. The message names the system and the cause."""


class ConfigError(BridgeError):
    """The configuration is invalid; carries every problem found, each with file, line and key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class PluginLoadError(BridgeError):
    """A plugin could not be loaded; it is recorded as failed and the other plugins still load."""


class FieldValueError(BridgeError, ValueError):
    """A value does not fit a typed field; the message says why (and lists the allowed options)."""


class IdentityError(BridgeError):
    """A change matched more than one record: nothing is written and the candidates are reported."""

    def __init__(self, message: str, candidates: list[str]) -> None:
        self.candidates = candidates
        super().__init__(f"{message}; candidates: {', '.join(candidates)}")


class StoreError(BridgeError, ValueError):
    """The store cannot be opened (a URL that does not parse, a server that does not answer, a file that
    cannot be opened): the command stops; the message names where, never a password."""


class ConnectorError(BridgeError):
    """An error talking to one system, naming the system and, where known, the record."""

    def __init__(self, message: str, *, system: str = "", record: str | None = None) -> None:
        self.system = system
        self.record = record
        where = system + (f" record {record}" if record else "")
        super().__init__(f"{where}: {message}" if where else message)


class ConnectorAuthError(ConnectorError):
    """Credentials were refused: that system is stopped until the operator fixes them."""


class RetriableConnectorError(ConnectorError):
    """A passing failure (429, 5xx, timeout): the call is retried with backoff."""

    def __init__(
        self, message: str, *, system: str = "", record: str | None = None, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, system=system, record=record)


class FatalConnectorError(ConnectorError):
    """The system cannot be used in this run: the run of that system stops, others go on."""


class SkippableRecordError(ConnectorError):
    """One record was refused for good: it goes to the dead letter with the vendor's reason."""


class BatchRefusedError(ConnectorError):
    """A call carrying several records' writes was refused as a whole (a 4xx other than authentication):
    one of them holds what the vendor cannot take, which one is not known, so the writes are sent again in
    halves (:func:`bridge.connector.send_apart`, or the core's split of a pushed batch)."""
