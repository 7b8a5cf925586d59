"""The HTTP operations endpoint: /healthz, /readyz, /metrics (Prometheus) and a read-only status page.

| module        | what                                                                       |
| ------------- | -------------------------------------------------------------------------- |
| `readiness`   | the checks behind /readyz: store reachable, OPC UA endpoint open, ERP sync fresh |
| `status_page` | the HTML page at /, no build step, no scripts                              |
| `endpoint`    | a small HTTP/1.1 server on the app's event loop (asyncio streams)          |
"""

from qualitybridge.server.operations.endpoint import OperationsEndpoint
from qualitybridge.server.operations.readiness import Check, Readiness

__all__ = ["Check", "OperationsEndpoint", "Readiness"]
