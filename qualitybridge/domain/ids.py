"""Identifiers QualityBridge gives what it accepts: random UUIDs, so that no two processes or restarts collide."""

from __future__ import annotations

import uuid

__all__ = ["new_record_id", "new_result_id"]


def new_result_id() -> str:
    """The id of an accepted measurement result (also the key of its ERP posting)."""
    return str(uuid.uuid4())


def new_record_id() -> str:
    """The id of a confirmation or SPC alarm record."""
    return str(uuid.uuid4())
