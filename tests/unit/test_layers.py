"""The layer contract: imports run one way, checked on the source with `ast` (no import is executed).

Low to high: domain < store < services < server | adapters < app < cli. A layer imports its own and lower
layers, never a higher one; server and adapters are siblings and do not import each other. Beside the stack:

- `qualitybridge.config` imports nothing of QualityBridge; store, server, adapters, app and cli may import it
  (the domain and the services do not: they get their settings as arguments);
- `qualitybridge.collector` (the garbage collector's thresholds of the long-running processes) imports nothing of
  QualityBridge; the CLI and the simulator import it;
- `qualitybridge.simulator` (a product part of its own) imports the domain, the collector and the REST contract of
  the adapters; only the CLI imports it;
- `qualitybridge` itself (the public surface in qualitybridge/__init__.py) re-exports domain and config; only
  app and cli may import it;
- adapters import the domain and the config only, never the store or the services (adapters/__init__.py);
- the domain imports no OPC UA, HTTP or SQL library.

Every import counts: module level, inside functions, under `if TYPE_CHECKING:`, relative ones resolved.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Source folder -> the import name it is installed under (server/ and adapters/ are mounted into the package).
SOURCE_FOLDERS = {
    "qualitybridge": "qualitybridge",
    "server": "qualitybridge.server",
    "adapters": "qualitybridge.adapters",
}

# Import-name prefix -> layer; the longest matching prefix wins. "qualitybridge" alone is the package's own
# __init__ (the public surface); any other module of the package must be listed here to have a layer.
LAYERS = {
    "qualitybridge": "surface",
    "qualitybridge.domain": "domain",
    "qualitybridge.config": "config",
    "qualitybridge.collector": "collector",
    "qualitybridge.store": "store",
    "qualitybridge.services": "services",
    "qualitybridge.server": "server",
    "qualitybridge.adapters": "adapters",
    "qualitybridge.app": "app",
    "qualitybridge.relay_process": "app",
    "qualitybridge.cli": "cli",
    "qualitybridge.__main__": "cli",
    "qualitybridge.simulator": "simulator",
}

# Layer -> the layers it may import (its own included).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "domain": frozenset({"domain"}),
    "config": frozenset({"config"}),
    "collector": frozenset({"collector"}),
    "store": frozenset({"store", "domain", "config"}),
    "services": frozenset({"services", "store", "domain"}),
    "server": frozenset({"server", "services", "store", "domain", "config"}),
    "adapters": frozenset({"adapters", "domain", "config"}),
    "app": frozenset({"app", "server", "adapters", "services", "store", "domain", "config", "surface"}),
    "cli": frozenset(
        {
            "cli",
            "app",
            "server",
            "adapters",
            "services",
            "store",
            "domain",
            "config",
            "surface",
            "simulator",
            "collector",
        }
    ),
    "surface": frozenset({"surface", "domain", "config"}),
    "simulator": frozenset({"simulator", "domain", "collector"}),
}
# Single modules of another layer a layer may import besides MAY_IMPORT.
MAY_ALSO_IMPORT = {"simulator": ("qualitybridge.adapters.rest_contract",)}
# Third-party libraries a layer must not import (top-level distribution import names).
MUST_NOT_IMPORT = {
    "domain": frozenset(
        {"asyncua", "httpx", "sqlalchemy", "alembic", "asyncpg", "aiosqlite", "fastapi", "starlette", "uvicorn"}
    ),
}


@dataclass(frozen=True)
class Violation:
    path: str  # relative to the checked root
    line: int
    importer: str
    imported: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported}: {self.reason}"


def modules(root: Path) -> Iterator[tuple[Path, str]]:
    """(file, import name) of every Python module in the source folders under `root`."""
    for folder, package in SOURCE_FOLDERS.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield path, ".".join((package, *parts))


def imported_names(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """(line, imported module or name) for every import statement in the file, wherever it stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            # `from qualitybridge import services` imports qualitybridge.services: judge each name as a submodule
            # when it is one we know, else as the module it comes from.
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                yield node.lineno, candidate if layer_of(candidate) not in (None, layer_of(source)) else source


def layer_of(module: str) -> str | None:
    """The layer of a first-party module, None for one without a layer (or a third-party module)."""
    if module == "qualitybridge":
        return LAYERS["qualitybridge"]
    matches = [prefix for prefix in LAYERS if prefix != "qualitybridge" and _within(module, prefix)]
    return LAYERS[max(matches, key=len)] if matches else None


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def check(root: Path) -> list[Violation]:
    """Every import under `root` that breaks the contract."""
    violations: list[Violation] = []
    for path, module in modules(root):
        relative = path.relative_to(root).as_posix()
        layer = layer_of(module)
        if layer is None:
            violations.append(Violation(relative, 1, module, "-", "the module has no layer; add it to LAYERS"))
            continue
        for line, imported in imported_names(path, module):
            reason = _breach(layer, imported)
            if reason:
                violations.append(Violation(relative, line, module, imported, reason))
    return violations


def _breach(layer: str, imported: str) -> str:
    top = imported.split(".")[0]
    if top != "qualitybridge":
        return f"{layer} must not import {top}" if top in MUST_NOT_IMPORT.get(layer, ()) else ""
    target = layer_of(imported)
    if target is None:
        return "the imported module has no layer; add it to LAYERS"
    if target in MAY_IMPORT[layer] or any(_within(imported, m) for m in MAY_ALSO_IMPORT.get(layer, ())):
        return ""
    return f"{layer} may import only {', '.join(sorted(MAY_IMPORT[layer]))}, not {target}"


def test_imports_run_one_way() -> None:
    violations = check(ROOT)
    assert not violations, "imports against the layer contract:\n" + "\n".join(map(str, violations))


def test_every_source_folder_has_modules_to_check() -> None:
    # A moved folder would leave the contract above with nothing to check, and passing.
    checked = [module for _path, module in modules(ROOT)]
    for prefix in LAYERS:
        assert any(_within(module, prefix) for module in checked), f"no module of {prefix} found under {ROOT}"


# ---------------------------------------------------------------------------------------------------------------
# The checker itself, on planted trees


def _plant(root: Path, files: dict[str, str]) -> None:
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")


def test_a_planted_upward_import_under_type_checking_is_reported(tmp_path: Path) -> None:
    _plant(
        tmp_path,
        {
            "qualitybridge/__init__.py": "",
            "qualitybridge/domain/__init__.py": "",
            "qualitybridge/domain/model.py": """\
                from __future__ import annotations

                from typing import TYPE_CHECKING

                from qualitybridge.domain import errors

                if TYPE_CHECKING:
                    from qualitybridge.services.reporting import ReportingService
                """,
            "qualitybridge/domain/errors.py": "",
            "qualitybridge/services/__init__.py": "from qualitybridge.domain.model import errors\n",
        },
    )
    assert [str(v) for v in check(tmp_path)] == [
        "qualitybridge/domain/model.py:8: qualitybridge.domain.model imports qualitybridge.services.reporting: "
        "domain may import only domain, not services"
    ]


@pytest.mark.parametrize(
    ("relative", "source", "expected"),
    [
        # refused: (line, imported) of the one violation
        ("qualitybridge/domain/ids.py", "import uuid\nimport sqlalchemy\n", (2, "sqlalchemy")),
        ("qualitybridge/domain/ids.py", "from asyncua import ua\n", (1, "asyncua")),
        (
            "qualitybridge/store/outbox.py",
            "def f():\n    from qualitybridge.app import App\n",
            (2, "qualitybridge.app"),
        ),
        ("qualitybridge/store/outbox.py", "from ..services import reporting\n", (1, "qualitybridge.services")),
        ("qualitybridge/services/x.py", "from qualitybridge.config import Config\n", (1, "qualitybridge.config")),
        ("qualitybridge/services/x.py", "import qualitybridge.server.methods\n", (1, "qualitybridge.server.methods")),
        ("server/methods/x.py", "import qualitybridge.adapters.rest_erp\n", (1, "qualitybridge.adapters.rest_erp")),
        ("adapters/rest_erp.py", "from qualitybridge.server import pki\n", (1, "qualitybridge.server")),
        ("adapters/rest_erp.py", "from qualitybridge import services\n", (1, "qualitybridge.services")),
        ("adapters/rest_erp.py", "from qualitybridge.store import Store\n", (1, "qualitybridge.store")),
        ("qualitybridge/config.py", "from qualitybridge.domain.model import X\n", (1, "qualitybridge.domain.model")),
        (
            "qualitybridge/simulator/app.py",
            "from qualitybridge.adapters.rest_erp import C\n",
            (1, "qualitybridge.adapters.rest_erp"),
        ),
        ("qualitybridge/app.py", "import qualitybridge.simulator\n", (1, "qualitybridge.simulator")),
        ("qualitybridge/server_helpers.py", "", (1, "-")),  # a new module without a layer
        ("qualitybridge/cli/x.py", "import qualitybridge.gadgets\n", (1, "qualitybridge.gadgets")),
        ("qualitybridge/services/x.py", "from qualitybridge import __version__\n", (1, "qualitybridge")),
        # allowed: no violation
        ("qualitybridge/domain/model.py", "import pydantic\nfrom . import errors\n", None),
        ("qualitybridge/store/outbox.py", "from qualitybridge.domain.postings import P\n", None),
        ("qualitybridge/store/outbox.py", "from qualitybridge.config import C\nimport sqlalchemy\n", None),
        ("qualitybridge/services/x.py", "from qualitybridge.store import Store\n", None),
        ("server/methods/x.py", "from qualitybridge.services.reporting import R\nimport asyncua\n", None),
        ("adapters/rest_erp.py", "from qualitybridge.domain.ports import ErpClient\nimport httpx\n", None),
        ("qualitybridge/app.py", "from qualitybridge.server import x\nfrom qualitybridge.adapters import y\n", None),
        ("qualitybridge/simulator/app.py", "from qualitybridge.adapters.rest_contract import OrderDTO\n", None),
        ("qualitybridge/cli/x.py", "from qualitybridge.simulator import serve\nfrom qualitybridge import app\n", None),
        ("qualitybridge/__main__.py", "from qualitybridge.cli import main\n", None),
        ("qualitybridge/__init__.py", "from qualitybridge.config import C\nfrom qualitybridge.domain import m\n", None),
    ],
)
def test_each_rule_is_enforced(tmp_path: Path, relative: str, source: str, expected: tuple[int, str] | None) -> None:
    _plant(tmp_path, {relative: source})
    found = [(v.path, v.line, v.imported) for v in check(tmp_path)]
    assert found == ([] if expected is None else [(relative, *expected)])
