"""The official Python MCP SDK (mcp 2.x) as a buying agent.

Driven by tests/mcp_python.rs, which starts `agentgate serve` and passes:
  AGENTGATE_BIN              the agentgate binary (also started here for stdio)
  AGENTGATE_MCP_URL          the /mcp endpoint of the running server
  AGENTGATE_TEST_STDIO_DATA  a data dir for the stdio servers this file starts
  AGENTGATE_TEST_USER_KEY    the user's ES256 private key (PEM)
  AGENTGATE_TEST_USER_JWKS   its public JWKS, which the merchant trusts

The agent signs its AP2 mandates with the binary's own CLI
(`agentgate mandate intent|payment`), as docs/mandates.md describes. Every
purchase runs over streamable HTTP and over stdio, with the 2026-07-28
discovery flow ("auto") and with the 2025-11-25 handshake ("legacy").
"""

import os
import subprocess
import tempfile
import uuid

import anyio
import pytest
from mcp import Client, StdioServerParameters

BIN = os.environ["AGENTGATE_BIN"]
URL = os.environ["AGENTGATE_MCP_URL"]
STDIO_DATA = os.environ["AGENTGATE_TEST_STDIO_DATA"]
USER_KEY = os.environ["AGENTGATE_TEST_USER_KEY"]
USER_JWKS = os.environ["AGENTGATE_TEST_USER_JWKS"]

TRANSPORTS = ["http", "stdio"]
MODES = ["auto", "legacy"]

ADDRESS = {
    "buyer_email": "ada@example.com",
    "buyer_first_name": "Ada",
    "ship_to_name": "Ada Lovelace",
    "ship_to_street": "1 Main St",
    "ship_to_city": "Springfield",
    "ship_to_region": "IL",
    "ship_to_postal_code": "62701",
    "ship_to_country": "US",
}


def server(transport):
    if transport == "http":
        return URL
    return StdioServerParameters(
        command=BIN,
        args=["stdio", "--data-dir", STDIO_DATA],
        env={"AGENTGATE_TRUSTED_AGENT_JWKS_FILE": USER_JWKS, "RUST_LOG": "warn"},
    )


def run(transport, mode, scenario):
    """Runs `scenario(client)` against a fresh client connection."""

    async def main():
        async with Client(server(transport), mode=mode) as client:
            await scenario(client)

    anyio.run(main)


def agentgate(*args):
    out = subprocess.run([BIN, *args], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def sign_intent(max_amount):
    return agentgate(
        "mandate", "intent",
        "--max-amount", str(max_amount),
        "--currency", "USD",
        "--key", USER_KEY,
        "--description", "a linen shirt for the summer",
    )


def sign_payment(cart_mandate, token="success_token"):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cart.jws")
        with open(path, "w") as f:
            f.write(cart_mandate)
        return agentgate(
            "mandate", "payment", "--cart-mandate", path, "--token", token, "--key", USER_KEY
        )


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


async def ready_checkout(client):
    """Search, cart, and negotiate until the checkout is ready; returns the
    ids and the total the merchant computed."""
    page = await ok(client, "scout_inventory", {"query": "linen shirt", "in_stock_only": True})
    variant = next(
        v for p in page["products"] for v in p["variants"] if v["stock_state"] == "in_stock"
    )
    cart = await ok(
        client, "manage_cart", {"action": "create", "variant_id": variant["variant_id"]}
    )
    assert cart["subtotal"] == variant["price"]
    terms = await ok(client, "negotiate_terms", {"cart_id": cart["cart_id"]})
    checkout = terms["checkout"]
    assert checkout["status"] == "incomplete"
    assert "$.buyer.email" in checkout["missing"]
    ids = {"cart_id": cart["cart_id"], "checkout_id": checkout["checkout_id"]}
    terms = await ok(client, "negotiate_terms", {**ids, **ADDRESS})
    if terms["checkout"]["status"] != "ready_for_complete":
        option = terms["checkout"]["fulfillment_options"][0]["id"]
        terms = await ok(client, "negotiate_terms", {**ids, "fulfillment_option_id": option})
    assert terms["checkout"]["status"] == "ready_for_complete", terms
    assert terms["checkout"]["missing"] == []
    return ids, terms["checkout"]["totals"]["total"]["amount"]


async def cart_mandate(client, ids, intent):
    terms = await ok(client, "negotiate_terms", {**ids, "intent_mandate": intent})
    assert terms["cart_mandate"] is not None, terms
    return terms["cart_mandate"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_tools_resources_and_prompts_are_listed(transport, mode):
    async def scenario(client):
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == {
            "scout_inventory",
            "manage_cart",
            "negotiate_terms",
            "execute_checkout",
            "track_order",
        }
        for tool in tools.values():
            assert tool.output_schema is not None, tool.name
            assert tool.description and len(tool.description) > 80, tool.name
        assert tools["scout_inventory"].annotations.read_only_hint is True
        assert tools["execute_checkout"].annotations.destructive_hint is True
        assert tools["execute_checkout"].annotations.idempotent_hint is True
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        assert "agentgate://policies" in resources
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert prompts == {"purchase_with_confirmation", "order_status_briefing"}

    run(transport, mode, scenario)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_whole_purchase_with_mandates(transport, mode):
    async def scenario(client):
        ids, total = await ready_checkout(client)
        intent = sign_intent(total + 2000)
        mandate = await cart_mandate(client, ids, intent)
        assert mandate["total"]["amount"] == total
        payment = sign_payment(mandate["token"])
        result = await ok(
            client,
            "execute_checkout",
            {
                "checkout_id": ids["checkout_id"],
                "intent_mandate": intent,
                "cart_mandate": mandate["token"],
                "payment_mandate": payment,
                "idempotency_key": str(uuid.uuid4()),
            },
        )
        assert result["status"] == "paid"
        assert result["charged"]["amount"] == total
        assert result["replayed"] is False
        assert result["receipt"].count(".") == 2
        order = await ok(client, "track_order", {"order_id": result["order_id"]})
        assert order["status"] == "paid"
        assert order["totals"]["total"]["amount"] == total
        assert order["payment"]["reference"] == result["payment_reference"]
        contents = await client.read_resource(f"agentgate://orders/{result['order_id']}")
        assert result["order_id"] in contents.contents[0].text

    run(transport, mode, scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_rejections_an_invalid_mandate_a_retry_and_a_changed_retry(transport):
    async def scenario(client):
        ids, total = await ready_checkout(client)
        intent = sign_intent(total)
        mandate = await cart_mandate(client, ids, intent)
        payment = sign_payment(mandate["token"])
        args = {
            "checkout_id": ids["checkout_id"],
            "intent_mandate": intent,
            "cart_mandate": mandate["token"],
            "payment_mandate": payment,
            "idempotency_key": str(uuid.uuid4()),
        }

        # 1. An invalid mandate: the payment signature does not verify.
        head, sig = payment.rsplit(".", 1)
        forged = head + "." + ("A" if sig[0] != "A" else "B") + sig[1:]
        body = await err(client, "execute_checkout", {**args, "payment_mandate": forged})
        assert body["code"] == "mandate_invalid_signature", body
        assert body["retryable"] is False

        # The refusal changed nothing: the real chain still pays, once.
        first = await ok(client, "execute_checkout", args)
        assert first["status"] == "paid" and first["replayed"] is False

        # 2. A retry with the same key returns the same order; no second charge.
        again = await ok(client, "execute_checkout", args)
        assert again["replayed"] is True
        assert again["order_id"] == first["order_id"]
        assert again["payment_reference"] == first["payment_reference"]
        assert again["receipt"] == first["receipt"]

        # 3. The same key with a changed body is a conflict.
        changed = {**args, "payment_mandate": sign_payment(mandate["token"])}
        body = await err(client, "execute_checkout", changed)
        assert body["code"] == "idempotency_conflict", body

        order = await ok(client, "track_order", {"order_id": first["order_id"]})
        assert order["payment"]["amount"]["amount"] == total

    run(transport, "auto", scenario)


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
            ("track_order", {"order_id": "ord_nosuchorder"}, "not_found"),
            ("negotiate_terms", {"cart_id": "cart_x", "ship_to_city": "Paris"}, "invalid_input"),
        ]
        for name, args, code in cases:
            body = await err(client, name, args)
            assert body["code"] == code, (name, args, body)

    run(transport, "auto", scenario)
