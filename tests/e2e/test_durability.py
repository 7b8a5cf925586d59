"""Nothing is lost: a report answered Good survives SIGKILL and reaches the ERP exactly once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.builders import first_characteristic, report, results_at_erp
from tests.harness import NAMESPACE_URI, Deployment, deployed, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from deployed(request.param, tmp_path_factory.mktemp(f"kill-{request.param}"))


async def _report_many(deployment: Deployment, count: int, tag: str) -> list[str]:
    result_ids = []
    async with deployment.session("machine1") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        key = await first_characteristic(client, idx, "1000417")
        for n in range(count):
            result_id, _evaluation = await report(client, idx, key, 20.0, client_result_id=f"{tag}-{n}")
            result_ids.append(result_id)
    return result_ids


def _booked(deployment: Deployment) -> Counter[str]:
    return Counter(r["body"]["result_id"] for r in results_at_erp(deployment))


async def test_sigkill_after_good_answers_loses_nothing_and_books_each_once(deployment: Deployment) -> None:
    assert deployment.server is not None
    await deployment.ensure_running("1000417")  # measurements need a Running order
    with deployment.erp() as erp:
        # Phase 1: the ERP is down, so every Good answer exists only in QualityBridge's store when it dies.
        erp.put("/sim/faults", json={"rate": 1.0, "kinds": ["error"]}).raise_for_status()
    held_back = await _report_many(deployment, 15, "outage")
    deployment.server.kill_hard()
    assert not set(held_back) & set(_booked(deployment)), "the ERP was down; nothing can have been booked"
    assert await deployment.stored_result_count() == len(held_back)

    with deployment.erp() as erp:
        # Phase 2: the ERP books but half its answers get lost, the case idempotency keys exist for.
        erp.put("/sim/faults", json={"rate": 0.5, "kinds": ["lost_response"]}).raise_for_status()
    deployment.server.start()
    in_flight = await _report_many(deployment, 15, "lossy")
    deployment.server.kill_hard()

    with deployment.erp() as erp:
        erp.delete("/sim/faults").raise_for_status()
    deployment.server.start()
    expected = set(held_back) | set(in_flight)

    def all_booked() -> Counter[str]:
        booked = _booked(deployment)
        return booked if expected <= set(booked) else Counter()

    booked = wait_for(all_booked, 30.0, "every Good result at the ERP")
    assert {result_id: booked[result_id] for result_id in expected} == dict.fromkeys(expected, 1)
    with deployment.erp() as erp:
        stats: dict[str, Any] = erp.get("/stats").json()
    print(
        f"\n{deployment.backend}: {len(expected)} results answered Good, {len(expected)} booked once each; "
        f"simulator stats {stats}"
    )
