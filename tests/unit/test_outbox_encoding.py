"""The outbox's one encoding of postings: what does not decode becomes an UnreadablePosting naming why, never a
guess, and only postings owed to the ERP can be queued."""

from __future__ import annotations

import json

import pytest

from qualitybridge.domain.postings import MeasurementPosting, UnreadablePosting, decode_posting
from qualitybridge.store.outbox import outbox_row
from tests.builders import NOW, result


def test_a_stored_posting_decodes_to_what_was_queued() -> None:
    posting = MeasurementPosting(result=result())
    row = outbox_row(posting, now=NOW)
    assert (row["kind"], row["idempotency_key"]) == ("measurement", f"mr-{posting.result.result_id}")
    assert decode_posting(row["kind"], row["payload"]) == posting


def test_a_damaged_payload_is_unreadable_with_the_field_named() -> None:
    decoded = decode_posting("measurement", {"result_id": "r-1"})
    assert isinstance(decoded, UnreadablePosting)
    assert decoded.stored_kind == "measurement"
    assert "errors in the payload" in decoded.reason
    assert "report" in decoded.reason


def test_an_unknown_kind_is_unreadable_not_guessed() -> None:
    decoded = decode_posting("invoice", {})
    assert decoded == UnreadablePosting(stored_kind="invoice", reason="unknown posting kind 'invoice'")


def test_an_unreadable_posting_is_never_queued() -> None:
    with pytest.raises(ValueError, match="never queued"):
        outbox_row(UnreadablePosting(stored_kind="measurement", reason="r"), now=NOW)


def test_a_payload_read_as_its_stored_json_text_decodes_as_the_parsed_one() -> None:
    posting = MeasurementPosting(result=result(client_result_id="plc-1"))
    row = outbox_row(posting, now=NOW)
    assert decode_posting("measurement", json.dumps(row["payload"])) == posting
    broken = decode_posting("measurement", '{"result_id": "r-1"')
    assert isinstance(broken, UnreadablePosting)
