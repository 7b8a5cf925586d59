"""How long the master-data audit takes on a large plant: 100,000 rows in every input.

100,000 released orders (one operation, one characteristic each, 1,000 work centres), and export files of 100,000
MES parts, 100,000 routings, 100,000 QMS catalogue entries, 1,000 cost centres; 1 % of each planted as a gap.
Measures, in CPU seconds: reading the four CSV files, the five checks, and writing the Markdown and JSON reports.
Building the orders (what the ERP adapter does) is not measured.

Usage: .venv/bin/python bench/master_data_audit.py [ROWS]
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime

from qualitybridge.domain.master_data_audit import (
    AuditInputs,
    CostCentreAssignment,
    MesPart,
    QmsCharacteristic,
    ShopFloorRouting,
    run_audit,
)
from qualitybridge.domain.master_data_exports import (
    cost_centres_csv,
    mes_parts_csv,
    qms_catalogue_csv,
    read_cost_centres,
    read_mes_parts,
    read_qms_catalogue,
    read_shop_floor_routings,
    shop_floor_routings_csv,
)
from qualitybridge.domain.model import InspectionCharacteristic, Operation, ProductionOrder
from qualitybridge.services.master_data_audit_report import audit_json, audit_markdown


def _orders(rows: int) -> list[ProductionOrder]:
    orders = []
    for n in range(rows):
        characteristic = InspectionCharacteristic(
            characteristic_id=f"C{n % 9000 + 1000:04d}",
            name=f"Diameter {n}",
            nominal=12.009,
            lower_limit=12.0,
            upper_limit=12.018,
            unit="MMT",
            plan_version="P01",
        )
        work_centre = f"WC-{n % 1000:04d}"
        orders.append(
            ProductionOrder(
                order_no=f"{2_000_000 + n}",
                material_no=f"MAT-{100_000 + n:06d}",
                planned_quantity=10,
                work_centre=work_centre,
                routing_version="R01",
                plan_version="P01",
                operations=(
                    Operation(operation_no="0010", work_centre=work_centre, characteristics=(characteristic,)),
                ),
            )
        )
    return orders


def _exports(orders: list[ProductionOrder]) -> dict[str, str]:
    gap = 100  # every 100th row of each file differs from the ERP
    parts = [MesPart(o.material_no if i % gap else f"X-{i}") for i, o in enumerate(orders)]
    routings = [ShopFloorRouting(o.order_no, "R01" if i % gap else "R00", "P01") for i, o in enumerate(orders)]
    catalogue = [
        QmsCharacteristic(
            o.material_no, "0010", c.characteristic_id, c.name if i % gap else "other", "MMT", 12.0, 12.018, 3
        )
        for i, o in enumerate(orders)
        for c in o.operations[0].characteristics
    ]
    centres = [CostCentreAssignment(f"WC-{n:04d}", f"CC-{n:04d}" if n % gap else "") for n in range(1000)]
    return {
        "parts": mes_parts_csv(parts),
        "routings": shop_floor_routings_csv(routings),
        "catalogue": qms_catalogue_csv(catalogue),
        "centres": cost_centres_csv(centres),
    }


def main(rows: int) -> None:
    orders = _orders(rows)
    files = _exports(orders)
    began = time.process_time()
    inputs = AuditInputs(
        erp_orders=orders,
        mes_parts=read_mes_parts(files["parts"].splitlines(), "parts.csv"),
        shop_floor_routings=read_shop_floor_routings(files["routings"].splitlines(), "routings.csv"),
        qms_catalogue=read_qms_catalogue(files["catalogue"].splitlines(), "qms.csv"),
        cost_centres=read_cost_centres(files["centres"].splitlines(), "centres.csv"),
    )
    read = time.process_time()
    result = run_audit(inputs)
    checked = time.process_time()
    moment = datetime.now(UTC)
    markdown = audit_markdown(result, {}, moment)
    document = json.dumps(audit_json(result, {}, moment))
    written = time.process_time()
    records = {finding.code: len(finding.records) for finding in result.findings}
    print(f"rows per input          {rows}")
    print(f"read 4 CSV files        {read - began:.2f} s CPU")
    print(f"five checks             {checked - read:.2f} s CPU")
    sizes = f"{len(markdown) // 1024} KiB Markdown, {len(document) // 1024} KiB JSON"
    print(f"Markdown + JSON         {written - checked:.2f} s CPU ({sizes})")
    print(f"total                   {written - began:.2f} s CPU")
    print(f"findings                {records}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
