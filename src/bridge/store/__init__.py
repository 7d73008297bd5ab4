"""bridge's persistence: the only package that speaks SQL.

``Store(url)`` builds an engine; ``Store.open(url)`` also migrates. Work happens in ``store.session()``
transactions (a :class:`Tx`); the outbox's claim/complete/fail run in their own. JSON values keep dates as
ISO strings: re-coerce loaded field values with :func:`bridge.fields.coerce`.
"""

from bridge.store.store import OutboxItem, Store
from bridge.store.tx import Tx
from bridge.store.values import jsonable

__all__ = ["OutboxItem", "Store", "Tx", "jsonable"]
