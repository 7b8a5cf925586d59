"""The domain model's own validation: what a characteristic, as the ERP sends it, must satisfy."""

from __future__ import annotations

import pytest

from qualitybridge.domain.model import InspectionCharacteristic


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_characteristic_rejects_non_finite_limits(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        InspectionCharacteristic(
            characteristic_id="C", name="n", nominal=bad, lower_limit=0, upper_limit=1, unit="MMT", plan_version="1"
        )
