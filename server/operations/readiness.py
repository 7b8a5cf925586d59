"""/readyz: ready means a client can connect and its reports are stored against current master data.

- store: one round trip to the database answers within `store_timeout`;
- opcua: the OPC UA listener is open;
- erp: the last successful ERP sync is at most `max_sync_age` old (the bridge keeps serving the last known data
  through an ERP outage, but a plant wants to know).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["Check", "Readiness"]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


class Readiness:
    def __init__(
        self,
        *,
        store_ping: Callable[[], Awaitable[None]],
        store_name: str,
        endpoint_open: Callable[[], bool],
        endpoint_url: str,
        sync_age: Callable[[], float | None],
        max_sync_age: float,
        store_timeout: float = 5.0,
    ) -> None:
        self._store_ping = store_ping
        self._store_name = store_name
        self._endpoint_open = endpoint_open
        self._endpoint_url = endpoint_url
        self._sync_age = sync_age
        self._max_sync_age = max_sync_age
        self._store_timeout = store_timeout

    async def checks(self) -> list[Check]:
        return [await self._store(), self._opcua(), self._erp()]

    async def _store(self) -> Check:
        try:
            await asyncio.wait_for(self._store_ping(), self._store_timeout)
        except TimeoutError:
            return Check("store", False, f"{self._store_name} did not answer within {self._store_timeout:g} s")
        except Exception as exc:  # any driver error means: not reachable now
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return Check("store", False, f"{self._store_name} not reachable: {reason[:200]}")
        return Check("store", True, f"{self._store_name} reachable")

    def _opcua(self) -> Check:
        if self._endpoint_open():
            return Check("opcua", True, f"{self._endpoint_url} open")
        return Check("opcua", False, f"{self._endpoint_url} not open")

    def _erp(self) -> Check:
        age = self._sync_age()
        if age is None:
            return Check("erp", False, "no successful ERP sync yet")
        if age > self._max_sync_age:
            return Check("erp", False, f"last successful ERP sync {age:.0f} s ago (limit {self._max_sync_age:g} s)")
        return Check("erp", True, f"last successful ERP sync {age:.1f} s ago")
