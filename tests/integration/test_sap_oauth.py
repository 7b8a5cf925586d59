"""OAuth2 client credentials for the SAP adapter: a bearer token from the token endpoint, fetched once, fetched
again when SAP answers 401; the client secret goes to the token endpoint only."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from qualitybridge.adapters.sap_s4hana import ClientCredentials, SapS4HanaClient
from qualitybridge.domain.ports import ErpRejected


async def test_bearer_token_is_fetched_once_and_renewed_after_a_401() -> None:
    issued: list[str] = []
    token_requests: list[httpx.Request] = []

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        token_requests.append(request)
        issued.append(f"token-{len(issued) + 1}")
        return httpx.Response(200, json={"access_token": issued[-1], "token_type": "bearer", "expires_in": 3600})

    seen: list[str] = []

    def sap(request: httpx.Request) -> httpx.Response:
        authorization = request.headers.get("authorization", "")
        seen.append(authorization)
        if len(seen) == 2:  # the token expired at SAP between two requests
            return httpx.Response(401, json={"error": {"code": "401", "message": {"value": "token expired"}}})
        return httpx.Response(200, json={"d": {"results": []}})

    auth = ClientCredentials(
        "https://idp.example/oauth/token", "QB_CLIENT", "secret", transport=httpx.MockTransport(token_endpoint)
    )
    client = SapS4HanaClient(
        "https://s4.example", plant="1010", sap_client="100", auth=auth, transport=httpx.MockTransport(sap)
    )
    assert (await client.fetch_all()).orders == ()
    assert (await client.fetch_all()).orders == ()
    assert seen == ["Bearer token-1", "Bearer token-1", "Bearer token-2"]
    assert len(token_requests) == 2
    basic = base64.b64decode(token_requests[0].headers["authorization"].removeprefix("Basic ")).decode()
    assert basic == "QB_CLIENT:secret"
    assert token_requests[0].content == b"grant_type=client_credentials"
    assert all("secret" not in header for header in seen)
    await client.aclose()


async def test_odata_error_bodies_become_readable_messages() -> None:
    def sap(request: httpx.Request) -> httpx.Response:
        body = {"error": {"code": "/IWBEP/CM_MGW_RT/022", "message": {"lang": "en", "value": "Invalid filter"}}}
        return httpx.Response(400, content=json.dumps(body).encode(), headers={"content-type": "application/json"})

    client = SapS4HanaClient("https://s4.example", plant="1010", auth=("U", "P"), transport=httpx.MockTransport(sap))
    with pytest.raises(ErpRejected) as refused:
        await client.fetch_all()
    assert str(refused.value) == (
        "SAP GET /API_PRODUCTION_ORDER_2_SRV/A_ProductionOrder_2: HTTP 400 /IWBEP/CM_MGW_RT/022: Invalid filter"
    )
    await client.aclose()
