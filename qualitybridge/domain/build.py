"""Who this server is: the identity it shows as OPC UA BuildInfo, in `qualitybridge --version` and on /metrics.

SoftwareVersion is the installed distribution's version (pyproject.toml). BuildNumber and BuildDate come from
the build: a packager or the Dockerfile sets QUALITYBRIDGE_BUILD_NUMBER (e.g. the git commit) and
QUALITYBRIDGE_BUILD_DATE (ISO 8601); a source install reports build "source" and the time it was installed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata

__all__ = ["PRODUCT_NAME", "PRODUCT_URI", "BuildIdentity", "installed_build"]

DISTRIBUTION = "qualitybridge"
PRODUCT_NAME = "QualityBridge"
PRODUCT_URI = "https://qualitybridge.dev"
MANUFACTURER_NAME = "QualityBridge project"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class BuildIdentity:
    software_version: str
    build_number: str
    build_date: datetime
    product_name: str = PRODUCT_NAME
    product_uri: str = PRODUCT_URI
    manufacturer_name: str = MANUFACTURER_NAME

    def __str__(self) -> str:
        return f"{self.product_name} {self.software_version} (build {self.build_number}, {self.build_date:%Y-%m-%d})"


def _install_date(distribution: metadata.Distribution | None) -> datetime:
    # The metadata folder (.dist-info or .egg-info) is written when the package is built and installed.
    folder = getattr(distribution, "_path", None)
    try:
        return datetime.fromtimestamp(os.stat(folder).st_mtime, UTC) if folder is not None else _EPOCH
    except (OSError, TypeError):
        return _EPOCH


def installed_build(environ: dict[str, str] | None = None) -> BuildIdentity:
    """The identity of the installed package, with build number and date from the environment when set."""
    env = os.environ if environ is None else environ
    try:
        distribution: metadata.Distribution | None = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare source tree
        distribution = None
    version = distribution.version if distribution is not None else "0+unknown"
    date_text = env.get("QUALITYBRIDGE_BUILD_DATE", "")
    try:
        build_date = datetime.fromisoformat(date_text) if date_text else _install_date(distribution)
    except ValueError:
        build_date = _install_date(distribution)
    if build_date.tzinfo is None:
        build_date = build_date.replace(tzinfo=UTC)
    return BuildIdentity(
        software_version=version,
        build_number=env.get("QUALITYBRIDGE_BUILD_NUMBER", "") or "source",
        build_date=build_date,
    )
