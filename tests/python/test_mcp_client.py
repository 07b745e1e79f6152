"""The official Python MCP SDK (mcp 2.x) as a buying agent.

Driven by tests/mcp_python.rs, which starts `agentgate serve` and passes:
  AGENTGATE_BIN              the agentgate binary (also started here for stdio)
  AGENTGATE_MCP_URL          the /mcp endpoint of the running server
  AGENTGATE_TEST_STDIO_DATA  a data dir for the stdio servers this file starts

Every scenario runs over streamable HTTP and over stdio, and both with the
2026-07-28 discovery flow ("auto") and the 2025-11-25 handshake ("legacy").
"""

import os

import anyio
import pytest
from mcp import Client, StdioServerParameters

BIN = os.environ["AGENTGATE_BIN"]
URL = os.environ["AGENTGATE_MCP_URL"]
STDIO_DATA = os.environ["AGENTGATE_TEST_STDIO_DATA"]

TRANSPORTS = ["http", "stdio"]
MODES = ["auto", "legacy"]


def server(transport):
    if transport == "http":
        return URL
    return StdioServerParameters(command=BIN, args=["stdio", "--data-dir", STDIO_DATA])


def run(transport, mode, scenario):
    """Runs `scenario(client)` against a fresh client connection."""

    async def main():
        async with Client(server(transport), mode=mode) as client:
            await scenario(client)

    anyio.run(main)


async def ok(client, name, args):
    result = await client.call_tool(name, args)
    assert not result.is_error, f"{name} {args}: {result.structured_content}"
    return result.structured_content


async def err(client, name, args):
    result = await client.call_tool(name, args)
    assert result.is_error, f"{name} {args} should fail: {result.structured_content}"
    body = result.structured_content
    assert set(body) >= {"code", "message", "retryable"}, body
    return body


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_tools_resources_and_prompts_are_listed(transport, mode):
    async def scenario(client):
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {"scout_inventory", "manage_cart"} <= set(tools)
        for tool in tools.values():
            assert tool.output_schema is not None, tool.name
            assert tool.description and len(tool.description) > 80, tool.name
        assert tools["scout_inventory"].annotations.read_only_hint is True
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        assert "agentgate://policies" in resources
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert prompts == {"purchase_with_confirmation", "order_status_briefing"}

    run(transport, mode, scenario)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_cart_is_built_from_search_results(transport, mode):
    async def scenario(client):
        page = await ok(client, "scout_inventory", {"query": "linen", "in_stock_only": True})
        variant = next(
            v
            for p in page["products"]
            for v in p["variants"]
            if v["stock_state"] != "out_of_stock"
        )
        cart = await ok(
            client,
            "manage_cart",
            {"action": "create", "variant_id": variant["variant_id"], "quantity": 2},
        )
        assert cart["subtotal"] == 2 * variant["price"]
        assert cart["currency"] == variant["currency"]
        again = await ok(client, "manage_cart", {"action": "get", "cart_id": cart["cart_id"]})
        assert again["lines"] == cart["lines"]

    run(transport, mode, scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_input_mistakes_are_tool_errors(transport):
    async def scenario(client):
        cases = [
            ("manage_cart", {"action": "steal"}, "invalid_input"),
            ("manage_cart", {"action": "get", "cart_id": "cart_doesnotexist"}, "not_found"),
            (
                "manage_cart",
                {"action": "create", "variant_id": "v-linen-camp-shirt-m", "quantity": -3},
                "quantity_limit_exceeded",
            ),
            ("scout_inventory", {"limit": 500}, "invalid_input"),
        ]
        for name, args, code in cases:
            body = await err(client, name, args)
            assert body["code"] == code, (name, args, body)

    run(transport, "auto", scenario)
