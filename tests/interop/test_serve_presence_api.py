"""`start_live_lab(presence_api=True)` (what `sbcsim serve` runs) serves the Graph-shaped
presence API on a real socket: an agent's platform gets a token and reads presence over HTTP."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from sbcsim.cli import main
from sbcsim.endpoints.teams_users import tenant_guid
from sbcsim.serve import start_live_lab
from sbcsim.testing.kamailio import free_loopback_block
from sbcsim.topology import load_topology

WAIT = 10.0


@pytest.mark.interop
async def test_serve_answers_token_and_presence_requests_over_http(tmp_path: Path) -> None:
    topology = load_topology(None)
    block = free_loopback_block()
    # move every listener to a free loopback block so the test never collides with a running lab
    data = topology.model_dump(mode="json")
    data["microsoft"]["proxies"] = [
        {**p, "address": a}
        for p, a in zip(data["microsoft"]["proxies"], block.proxies, strict=True)
    ]
    data["pstn"]["address"] = block.pstn
    graph_host = block.pstn.rsplit(".", 1)[0] + ".200"
    with socket.socket() as probe:  # a free port on that address
        probe.bind((graph_host, 0))
        graph_port = probe.getsockname()[1]
    data["contact_center"]["graph_address"] = graph_host
    data["contact_center"]["graph_port"] = graph_port
    topology = type(topology).model_validate(data)
    certs = tmp_path / "certs"
    assert CliRunner().invoke(main, ["certs", "--out", str(certs)]).exit_code == 0
    lab = await asyncio.wait_for(start_live_lab(topology, certs, presence_api=True), WAIT)
    try:
        assert lab.api_url is not None
        cc = topology.contact_center
        assert cc is not None
        tenant = topology.tenant(cc.customer_list()[0].tenant)
        timeout = aiohttp.ClientTimeout(total=WAIT)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            form = {
                "grant_type": "client_credentials",
                "client_id": str(cc.app.client_id),
                "client_secret": cc.app.client_secret,
                "scope": "https://graph.microsoft.com/.default",
            }
            async with http.post(
                f"{lab.api_url}/{tenant_guid(tenant)}/oauth2/v2.0/token", data=form
            ) as r:
                assert r.status == 200
                token = (await r.json())["access_token"]
            user = tenant.users[0]
            async with http.get(
                f"{lab.api_url}/v1.0/users/{user.graph_id}/presence",
                headers={"Authorization": f"Bearer {token}"},
            ) as r:
                assert r.status == 200
                body = await r.json()
            assert body["id"] == user.graph_id
            assert body["availability"] == user.presence.availability
            async with http.get(f"{lab.api_url}/v1.0/users/{user.graph_id}/presence") as r:
                assert r.status == 401
        assert any(who.startswith("presence API") for who, _, _ in lab.listening)
    finally:
        await asyncio.wait_for(lab.aclose(), WAIT)
