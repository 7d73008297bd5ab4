"""bridge: an integration sync daemon for support operations.

Plugin authors import from here: the hook marker, the connector contract and the shared record types.
"""

from bridge.connector import Connector, ConnectorContext, Cursor, PullPage, PushResult, RateLimit, RemoteField
from bridge.errors import (
    BridgeError,
    ConfigError,
    ConnectorAuthError,
    ConnectorError,
    FatalConnectorError,
    RetriableConnectorError,
    SkippableRecordError,
)
from bridge.hookspecs import ConnectorRegister
from bridge.model import Change, Decision, FieldValue, Record, Write
from bridge.plugins import hookimpl
from bridge.settings import ConnectorSettings

__version__ = "0.1.0"

__all__ = [
    "BridgeError",
    "Change",
    "ConfigError",
    "Connector",
    "ConnectorAuthError",
    "ConnectorContext",
    "ConnectorError",
    "ConnectorRegister",
    "ConnectorSettings",
    "Cursor",
    "Decision",
    "FatalConnectorError",
    "FieldValue",
    "PullPage",
    "PushResult",
    "RateLimit",
    "Record",
    "RemoteField",
    "RetriableConnectorError",
    "SkippableRecordError",
    "Write",
    "__version__",
    "hookimpl",
]
