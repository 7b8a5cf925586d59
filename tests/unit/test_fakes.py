"""The in-memory FakeStore stays a faithful stand-in: it offers every store method the shop-floor services call,
with `Store`'s signatures. (Its answers are compared with the real store's in
tests/integration/test_fake_store_contract.py.)"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import qualitybridge.services
from qualitybridge.store import Store
from tests.fakes import FakeStore

SERVICES = ("reporting", "confirmations", "spc_alarms", "order_control", "spc_monitor")
FAKE_ONLY = {"as_store", "called"}  # helpers of the fake, not store methods


def store_methods_called_by(service_module: str) -> set[str]:
    """Every `self._store.<name>` the service's source uses."""
    path = Path(qualitybridge.services.__file__).parent / f"{service_module}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "_store"
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "self"
    }


@pytest.mark.parametrize("service_module", SERVICES)
def test_the_fake_offers_every_store_method_the_service_calls(service_module: str) -> None:
    called = store_methods_called_by(service_module)
    assert called, f"services/{service_module}.py calls no store method any more: is this test still right?"
    missing = sorted(name for name in called if not callable(getattr(FakeStore, name, None)))
    assert not missing, f"FakeStore lacks {missing}, which services/{service_module}.py calls"


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if not name.startswith("_") and callable(member)
    }


def test_the_fakes_methods_have_the_stores_signatures() -> None:
    fake = {name: signature for name, signature in _public_methods(FakeStore).items() if name not in FAKE_ONLY}
    assert set(fake) <= {name for name in dir(Store) if not name.startswith("_")}, "FakeStore invents store methods"
    for name, signature in fake.items():
        real = inspect.signature(getattr(Store, name))
        assert str(signature) == str(real), f"FakeStore.{name}{signature} differs from Store.{name}{real}"
        assert inspect.iscoroutinefunction(getattr(FakeStore, name)) == inspect.iscoroutinefunction(
            getattr(Store, name)
        ), f"FakeStore.{name} and Store.{name} differ in being async"
