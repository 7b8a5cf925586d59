"""The MeasurementReportedEventType's fields for one result: the same whether the event is raised live (view.py) or
read back from the store as history (history.py), so that a client's event view and its history read agree."""

from __future__ import annotations

from typing import Any

from qualitybridge.domain.model import MeasurementResult, ResultEvaluation

__all__ = ["describe_result"]


def describe_result(event: Any, result: MeasurementResult) -> str:
    """Set the event's fields for `result`; answers the event's message text."""
    report = result.report
    event.OrderNumber = report.order_no
    event.OperationNumber = report.operation_no
    event.CharacteristicId = report.characteristic_id
    event.ResultId = result.result_id
    event.Value = report.value
    event.Evaluation = int(result.evaluation)
    event.Severity = 100 if result.evaluation is ResultEvaluation.OK else 600
    return (
        f"{report.order_no}/{report.operation_no}/{report.characteristic_id} = {report.value} "
        f"{result.unit}: {result.evaluation.name}"
    )
