"""An ERP and a QMS as one source and one target: `[erp]` for orders, results and confirmations, `[qms]` for test
equipment and SPC alarms. Without `[qms]` the factory hands out the ERP adapter alone, as before.

The QMS is asked only for gauges (`GET /api/v1/equipment`), never for orders. The watermark joins the two
sources' own as JSON, so each resumes its own delta.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Protocol

from qualitybridge.adapters.rest_erp import RestErpClient
from qualitybridge.domain.model import ErpSnapshot, MasterDataChanges, TestEquipment
from qualitybridge.domain.ports import PostingOutcome
from qualitybridge.domain.postings import OutboxEntry

__all__ = ["ErpWithQms", "FullErp"]


class FullErp(Protocol):
    """What an ERP adapter of this package offers: all three ports at once."""

    @property
    def source_id(self) -> str: ...
    async def fetch_changes(self, since: str) -> MasterDataChanges: ...
    async def fetch_all(self) -> MasterDataChanges: ...
    async def post_batch(self, entries: Sequence[OutboxEntry]) -> Sequence[PostingOutcome]: ...
    async def fetch_snapshot(self) -> ErpSnapshot: ...
    async def post(self, entry: OutboxEntry) -> str: ...
    async def aclose(self) -> None: ...


def _merged(orders: MasterDataChanges, equipment: tuple[TestEquipment, ...], revision: str) -> MasterDataChanges:
    return MasterDataChanges(
        orders=orders.orders,
        withdrawn=orders.withdrawn,
        equipment=equipment,
        watermark=json.dumps({"erp": orders.watermark, "qms": revision}),
        full=orders.full,
        findings=orders.findings,
    )


class ErpWithQms:
    """Orders from the ERP, gauges from the QMS; SPC alarms to the QMS, every other posting to the ERP."""

    def __init__(self, erp: FullErp, qms: RestErpClient) -> None:
        self._erp = erp
        self._qms = qms

    @property
    def source_id(self) -> str:
        return "erp+qms"

    async def fetch_all(self) -> MasterDataChanges:
        orders = await self._erp.fetch_all()
        # Gauges are the QMS's: whatever the ERP adapter lists of them is not used.
        equipment, revision = await self._qms.fetch_equipment()
        return _merged(orders, equipment, revision)

    async def fetch_changes(self, since: str) -> MasterDataChanges:
        try:
            marks = json.loads(since)
            erp_since, qms_since = str(marks["erp"]), str(marks["qms"])
        except (ValueError, KeyError, TypeError):
            return await self.fetch_all()
        orders = await self._erp.fetch_changes(erp_since)
        equipment, revision = await self._qms.fetch_equipment(qms_since)
        return _merged(orders, equipment, revision)

    async def fetch_snapshot(self) -> ErpSnapshot:
        changes = await self.fetch_all()
        return ErpSnapshot(orders=changes.orders, equipment=changes.equipment)

    async def post_batch(self, entries: Sequence[OutboxEntry]) -> Sequence[PostingOutcome]:
        # By the stored kind, not the posting: the REST target sends a measurement from its stored JSON, undecoded.
        alarms = [entry for entry in entries if entry.kind == "spc_alarm"]
        others = [entry for entry in entries if entry.kind != "spc_alarm"]
        outcomes: list[PostingOutcome] = []
        if others:
            outcomes += await self._erp.post_batch(others)
        if alarms:
            outcomes += await self._qms.post_batch(alarms)
        return outcomes

    async def post(self, entry: OutboxEntry) -> str:
        if entry.kind == "spc_alarm":
            return await self._qms.post(entry)
        return await self._erp.post(entry)

    async def aclose(self) -> None:
        await self._erp.aclose()
        await self._qms.aclose()
