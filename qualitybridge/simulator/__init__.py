"""Reference ERP/QMS simulator: speaks the generic ERP REST contract v1 that QualityBridge's adapters use.

The web app is imported lazily so that `python -m qualitybridge.simulator.app` does not import its own module
twice (runpy warns about that) and so that importing the state or seed data does not pull in FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qualitybridge.simulator.seed import seed_equipment, seed_orders
from qualitybridge.simulator.state import SimulatorState

if TYPE_CHECKING:
    from qualitybridge.simulator.app import create_app, run, serve

__all__ = ["SimulatorState", "create_app", "run", "seed_equipment", "seed_orders", "serve"]

_APP_EXPORTS = frozenset({"create_app", "run", "serve"})


def __getattr__(name: str) -> Any:
    if name in _APP_EXPORTS:
        from qualitybridge.simulator import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
