"""Stripe webhooks, signed by the official `stripe` library, against the real
`agentgate` binary.

The gateway runs with `payments = "stripe"` against a small local stand-in
for Stripe's API (it only has to create PaymentIntents and refunds), so the
order it makes carries a real PaymentIntent id and metadata. Events about
that order are then signed with `stripe.WebhookSignature`'s own header
generator and posted to `/webhooks/stripe`: valid ones act once, and
forged, stale or unsigned ones are refused with 400 and the standard error
body.

Run:
    cargo build --bin agentgate
    AGENTGATE_BIN=target/debug/agentgate python -m pytest tests/python/test_stripe_webhooks.py
"""

import json
import os
import pathlib
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe
from stripe import WebhookSignature

SECRET = "whsec_agentgate_pytest_" + uuid.uuid4().hex
TEE = "v-organic-cotton-tee-black"


def sign(payload: str, secret: str = SECRET, timestamp=None) -> str:
    """The library's own header, as Stripe would send it."""
    return WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)


# --- A stand-in for Stripe's API --------------------------------------------


class FakeStripe(BaseHTTPRequestHandler):
    """Creates PaymentIntents (succeeded at once) and refunds, replaying by
    Idempotency-Key like Stripe does, and records what it was sent."""

    intents = {}
    by_key = {}
    requests = []

    def log_message(self, *args):
        pass

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        key = self.headers.get("Idempotency-Key")
        FakeStripe.requests.append((self.path, key, form, self.headers.get("Authorization")))
        if key in FakeStripe.by_key:
            return self._send(200, FakeStripe.by_key[key])
        if self.path == "/v1/payment_intents":
            pi = {
                "id": "pi_pytest_%d" % (len(FakeStripe.intents) + 1),
                "object": "payment_intent",
                "amount": int(form["amount"]),
                "amount_received": int(form["amount"]),
                "currency": form["currency"],
                "status": "succeeded",
                "metadata": {
                    k[len("metadata[") : -1]: v for k, v in form.items() if k.startswith("metadata[")
                },
            }
            FakeStripe.intents[pi["id"]] = pi
            answer = pi
        elif self.path == "/v1/refunds":
            answer = {
                "id": "re_pytest_%d" % len(FakeStripe.by_key),
                "object": "refund",
                "amount": int(form["amount"]),
                "payment_intent": form["payment_intent"],
                "status": "succeeded",
            }
        else:
            return self._send(404, {"error": {"type": "invalid_request_error", "message": "no route"}})
        FakeStripe.by_key[key] = answer
        self._send(200, answer)

    def do_GET(self):
        FakeStripe.requests.append((self.path, None, {}, self.headers.get("Authorization")))
        if self.path.startswith("/v1/payment_intents"):
            return self._send(200, {"object": "list", "has_more": False, "data": list(FakeStripe.intents.values())})
        self._send(404, {"error": {"type": "invalid_request_error"}})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None):
    data = body.encode() if isinstance(body, str) else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None and "Content-Type" not in (headers or {}):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.fixture(scope="module")
def gateway():
    stripe_api = ThreadingHTTPServer(("127.0.0.1", 0), FakeStripe)
    threading.Thread(target=stripe_api.serve_forever, daemon=True).start()
    port = free_port()
    data = tempfile.mkdtemp(prefix="agentgate-stripe-")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("AGENTGATE_") or k == "AGENTGATE_BIN"
    }
    env.update(
        {
            "AGENTGATE_PAYMENTS": "stripe",
            "AGENTGATE_STRIPE_API_BASE": "http://127.0.0.1:%d" % stripe_api.server_address[1],
            "AGENTGATE_STRIPE_SECRET_KEY": "sk_test_pytest",
            "AGENTGATE_STRIPE_WEBHOOK_SECRET": SECRET,
            "AGENTGATE_STRIPE_MAX_RETRIES": "0",
        }
    )
    proc = subprocess.Popen(
        [os.environ["AGENTGATE_BIN"], "serve", "--listen", "127.0.0.1:%d" % port, "--data-dir", data],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = "http://127.0.0.1:%d" % port
    try:
        for _ in range(200):
            try:
                if http("GET", base + "/health")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        else:
            pytest.fail("the gateway did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        stripe_api.shutdown()


@pytest.fixture(scope="module")
def order(gateway):
    """A checkout completed through the Stripe adapter: the order, and the
    PaymentIntent the stand-in made for it."""
    instrument = {
        "id": "i1",
        "handler_id": "stripe",
        "type": "card",
        "credential": {"type": "token", "token": "pm_card_visa"},
    }
    body = {
        "line_items": [{"item": {"id": TEE}, "quantity": 1}],
        "buyer": {"email": "ada@example.com"},
        "fulfillment": {
            "methods": [
                {
                    "type": "shipping",
                    "destinations": [
                        {
                            "street_address": "1 Main St",
                            "address_locality": "Springfield",
                            "address_region": "IL",
                            "postal_code": "62701",
                            "address_country": "US",
                        }
                    ],
                    "groups": [{"selected_option_id": "us-standard"}],
                }
            ]
        },
        "payment": {"instruments": [instrument]},
    }
    key = {"Idempotency-Key": str(uuid.uuid4())}
    status, created = http("POST", gateway + "/ucp/v1/checkout-sessions", body, key)
    assert status == 201, created
    complete = {"payment": {"instruments": [instrument]}}
    status, done = http(
        "POST",
        gateway + "/ucp/v1/checkout-sessions/%s/complete" % created["id"],
        complete,
        {"Idempotency-Key": str(uuid.uuid4())},
    )
    assert status == 200 and done["status"] == "completed", done
    (pi,) = FakeStripe.intents.values()
    return {"id": done["order"]["id"], "checkout_id": created["id"], "pi": pi}


def event(event_type, obj, event_id=None):
    return json.dumps(
        {
            "id": event_id or "evt_" + uuid.uuid4().hex,
            "object": "event",
            "api_version": "2026-01-28.clover",
            "created": int(time.time()),
            "livemode": False,
            "type": event_type,
            "data": {"object": obj},
        }
    )


def post(gateway, payload, header):
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    return http("POST", gateway + "/webhooks/stripe", payload, headers)


def refund_event(order, event_id=None, amount=None):
    pi = order["pi"]
    return event(
        "charge.refunded",
        {
            "id": "ch_pytest_1",
            "object": "charge",
            "payment_intent": pi["id"],
            "amount": pi["amount"],
            "amount_refunded": pi["amount"] if amount is None else amount,
            "refunded": amount is None,
            "currency": pi["currency"],
            "metadata": pi["metadata"],
        },
        event_id,
    )


def get_order(gateway, order):
    status, body = http("GET", gateway + "/ucp/v1/orders/" + order["id"])
    assert status == 200, body
    return body


def test_the_charge_went_through_the_stripe_adapter(order):
    creates = [r for r in FakeStripe.requests if r[0] == "/v1/payment_intents" and r[1]]
    path, key, form, auth = creates[0]
    assert auth == "Bearer sk_test_pytest"
    assert form["payment_method"] == "pm_card_visa" and form["confirm"] == "true"
    assert form["metadata[order_id]"] == order["id"]
    assert form["metadata[checkout_id]"] == order["checkout_id"]
    assert key == form["metadata[charge_key]"] and key.startswith(order["checkout_id"] + ":charge:")


def test_the_library_accepts_what_it_signs(order):
    # The header format is the library's; the gateway must agree with it.
    payload = refund_event(order)
    header = sign(payload)
    assert header.startswith("t=") and ",v1=" in header
    assert stripe.Webhook.construct_event(payload, header, SECRET)["type"] == "charge.refunded"


@pytest.mark.parametrize(
    "name, header",
    [
        ("missing", lambda p: None),
        ("forged", lambda p: sign(p, secret="whsec_not_the_secret")),
        ("stale", lambda p: sign(p, timestamp=int(time.time()) - 600)),
        ("from the future", lambda p: sign(p, timestamp=int(time.time()) + 600)),
        ("signed over another body", lambda p: sign(p.replace("charge.refunded", "charge.captured"))),
        ("garbage", lambda p: "t=abc,v1=zz"),
    ],
)
def test_bad_signatures_are_refused_with_400(gateway, order, name, header):
    payload = refund_event(order)
    status, body = post(gateway, payload, header(payload))
    assert status == 400, (name, body)
    assert body["error"]["code"] == "webhook_signature_invalid", (name, body)
    assert body["error"]["retryable"] is False
    assert SECRET not in json.dumps(body)
    assert get_order(gateway, order).get("adjustments") is None, name


def test_a_succeeded_event_for_a_paid_order_changes_nothing(gateway, order):
    payload = event("payment_intent.succeeded", order["pi"])
    status, body = post(gateway, payload, sign(payload))
    assert (status, body["effect"]) == (200, "unchanged"), body


def test_unknown_events_are_acknowledged_and_ignored(gateway):
    payload = event("customer.created", {"id": "cus_1", "object": "customer"})
    status, body = post(gateway, payload, sign(payload))
    assert (status, body["effect"]) == (200, "ignored"), body


def test_a_refund_moves_the_order_once(gateway, order):
    event_id = "evt_" + uuid.uuid4().hex
    payload = refund_event(order, event_id)
    # A secret being rolled: two v1 signatures, one of them good.
    rolled = sign(payload, secret="whsec_old_secret") + ",v1=" + sign(payload).split("v1=")[1]
    status, body = post(gateway, payload, rolled)
    assert (status, body["effect"]) == (200, "applied"), body
    refunded = get_order(gateway, order)
    (adjustment,) = refunded["adjustments"]
    assert adjustment["type"] == "refund"
    assert adjustment["totals"][0]["amount"] == -order["pi"]["amount"]

    # Stripe delivers again: a duplicate, acknowledged, nothing changes.
    status, body = post(gateway, payload, sign(payload))
    assert (status, body["effect"]) == (200, "duplicate"), body
    assert get_order(gateway, order) == refunded
    # The same fact under a new event id changes nothing either.
    again = refund_event(order)
    status, body = post(gateway, again, sign(again))
    assert (status, body["effect"]) == (200, "unchanged"), body
    assert get_order(gateway, order) == refunded
