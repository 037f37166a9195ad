"""What every request passes on both protocols: the token, per-client slots, field bounds, and
how much of a store failure a client may learn.

A client learns the kind of failure in our words (unreachable, credentials refused, our own
bug); the store's own text (ClickHouse's syntax errors quote the SQL) goes to the server log
only, since it tells an attacker about our queries and the store's version and layout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator

from netspectra.errors import QueryError, StorageAuthError, StorageError, StorageRefusedError

logger = logging.getLogger(__name__)

#: Longest task name a request may give (configured names are short; ClickHouse 18.16 refuses a
#: query text over 256 KiB with a syntax error, so a longer name must never reach it).
MAX_TASK_NAME = 1024


def check_task_name(name: str) -> str:
    """``name`` if a task could be called that; QueryError otherwise."""
    if len(name) > MAX_TASK_NAME:
        raise QueryError(f"task name of {len(name)} characters; task names have at most {MAX_TASK_NAME}")
    return name


def bearer_token_matches(given: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>``, the scheme case-insensitive (RFC 6750 / RFC 7235)."""
    if not isinstance(given, str):
        return False
    scheme, _, credentials = given.strip().partition(" ")
    matches = hmac.compare_digest(credentials.strip().encode(), token.encode())
    return scheme.lower() == "bearer" and matches


def storage_http_status(error: StorageError) -> tuple[int, str]:
    """The HTTP status and client message for a store failure."""
    if isinstance(error, StorageRefusedError):
        return 500, "internal error: the store rejected a query; see the server log"
    if isinstance(error, StorageAuthError):
        return 503, "the store refused the api's credentials; see the server log"
    return 503, "the store is unreachable; try again later (details in the server log)"


def log_storage_error(what: str, error: StorageError) -> None:
    """The server-side record of a store failure, with the store's own words."""
    if isinstance(error, StorageRefusedError):
        logger.error("%s: the store rejected our query: %s", what, error, exc_info=error)
    elif isinstance(error, StorageAuthError):
        logger.error("%s: authentication failed: %s", what, error)
    else:
        logger.warning("%s: %s", what, error)


class ClientLimiter:
    """At most ``limit`` calls running at once per client address; the others wait in turn.

    The store answers one query at a time (chdb) or a few (the ClickHouse pool), in arrival
    order: without a bound per client, one client's hundred calls queue ahead of everyone else's.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def slot(self, client: str) -> AsyncIterator[None]:
        semaphore, users = self._slots.get(client, (None, 0))
        if semaphore is None:
            semaphore = asyncio.Semaphore(self.limit)
        self._slots[client] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._slots[client]
            if users == 1:
                del self._slots[client]
            else:
                self._slots[client] = (semaphore, users - 1)
