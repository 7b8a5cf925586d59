"""Events up the notifier tree: what QualityBridge raises reaches clients subscribed at the Server object too.

asyncua delivers an event only to monitored items on the node that emitted it (monitored_item_service.py:304), not
along HasNotifier references. The NodeSet declares Server → QualityBridge (HasNotifier, EventNotifier set), so
UaExpert's Event View and SCADA alarm clients subscribe at Server; this hands the same event (same EventId) to the
subscriptions of each further notifier as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from asyncua import Server, ua

__all__ = ["SERVER_OBJECT", "trigger_along"]

SERVER_OBJECT = ua.NodeId(ua.Int32(ua.ObjectIds.Server))


async def trigger_along(
    server: Server,
    generator: Any,
    notifiers: Sequence[ua.NodeId],
    *,
    time_attr: datetime | None = None,
    message: str | None = None,
) -> None:
    """Fire the generator's event at its emitting node, then at each of `notifiers` (e.g. the Server object)."""
    await generator.trigger(time_attr=time_attr, message=message)
    event = generator.event
    emitting = event.emitting_node
    subscriptions = server.iserver.subscription_service
    try:
        for notifier in notifiers:
            event.emitting_node = notifier
            await subscriptions.trigger_event(event)
    finally:
        event.emitting_node = emitting
