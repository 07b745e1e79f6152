"""AP2 v0.2 interop: an agent built from docs/mandates.md (section "AP2 v0.2")
with an independent SD-JWT implementation.

The agent side (keys, SD-JWTs, disclosures, delegation hops, the KB-JWT) uses
the PyPI `sd-jwt` library (OpenWallet Foundation) on `jwcrypto`; the merchant
side is the real `agentgate` binary: `mandate checkout-jwt` signs the checkout
as the gateway does, and `mandate verify-v2` runs the gateway's verifier. The
test checks that the gateway accepts the mandates and refuses tampered ones
with the documented codes.

Run:
    cargo build --bin agentgate
    AGENTGATE_BIN=target/debug/agentgate python -m pytest tests/python/test_sdjwt_interop.py
"""

import base64
import copy
import hashlib
import json
import os
import pathlib
import subprocess
import time

import pytest
from jwcrypto.jwk import JWK
from jwcrypto.jws import JWS
from sd_jwt.holder import SDJWTHolder
from sd_jwt.issuer import SDJWTIssuer
from sd_jwt.common import SDObj

MERCHANT_URL = "https://shop.example"
MERCHANT = {"id": MERCHANT_URL, "name": "Demo Shop", "website": MERCHANT_URL}
PLATFORM_KID = "python-platform-1"
VARIANT = "v-tshirt-red-m"


# --- What docs/mandates.md says, written out by hand -----------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sha256_b64url(text: str) -> str:
    """Every hash of the format: base64url(SHA-256(ASCII of the text))."""
    return b64url(hashlib.sha256(text.encode("ascii")).digest())


def jcs(value) -> bytes:
    """RFC 8785 for what a checkout holds (ASCII keys, integers, strings)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def checkout_jwt_of(checkout: dict) -> str:
    """The merchant_authorization with the checkout (without ap2) as payload."""
    header, signature = checkout["ap2"]["merchant_authorization"].split("..")
    body = {k: v for k, v in checkout.items() if k != "ap2"}
    return "%s.%s.%s" % (header, b64url(jcs(body)), signature)


def sd_jwt(claims: dict, key: JWK, typ: str, kid=None, holder=None) -> str:
    """One SD-JWT, `jwt~disclosures~`, signed with ES256."""
    header = {"typ": typ}
    if kid:
        header["kid"] = kid
    issuer = SDJWTIssuer(claims, key, holder_key=holder, extra_header_parameters=header)
    return issuer.sd_jwt_issuance


def mandate_item(mandate: dict):
    """The mandate as the one selectively disclosed element of delegate_payload."""
    return [SDObj(mandate)]


# --- Plumbing ---------------------------------------------------------------


@pytest.fixture(scope="session")
def agentgate() -> str:
    binary = os.environ.get("AGENTGATE_BIN")
    if not binary or not pathlib.Path(binary).is_file():
        pytest.fail("set AGENTGATE_BIN to a built agentgate binary (cargo build --bin agentgate)")
    return binary


def run(agentgate: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([agentgate, *args], capture_output=True, text=True, timeout=60)


class World:
    """A platform key (mandate roots), an agent key (delegated), and a merchant
    whose key and signed checkout come from the gateway's CLI."""

    def __init__(self, agentgate: str, tmp: pathlib.Path):
        self.bin = agentgate
        self.tmp = tmp
        self.now = int(time.time())
        self.platform = JWK.generate(kty="EC", crv="P-256", kid=PLATFORM_KID)
        self.agent = JWK.generate(kty="EC", crv="P-256")
        self.stranger = JWK.generate(kty="EC", crv="P-256")
        (tmp / "agent.jwks.json").write_text(
            json.dumps({"keys": [self.platform.export_public(as_dict=True)]})
        )
        out = run(
            agentgate,
            "keys", "generate",
            "--out", str(tmp / "merchant.pem"),
            "--jwks-out", str(tmp / "merchant.jwks.json"),
        )
        assert out.returncode == 0, out.stderr
        self.merchant_jwks = json.loads((tmp / "merchant.jwks.json").read_text())
        self.checkout = self.signed_checkout(3500)
        self.checkout_jwt = checkout_jwt_of(self.checkout)
        self.checkout_hash = sha256_b64url(self.checkout_jwt)

    def signed_checkout(self, total: int) -> dict:
        """A ready checkout, signed by the merchant (the gateway's CLI)."""
        checkout = {
            "id": "chk_python_0001",
            "merchant": MERCHANT,
            "status": "ready_for_complete",
            "currency": "USD",
            "line_items": [{"id": "li_1", "quantity": 2,
                            "item": {"id": VARIANT, "title": "T-shirt, red, M", "price": 1500},
                            "totals": [{"type": "total", "amount": 3000}]}],
            "totals": [{"type": "subtotal", "amount": 3000},
                       {"type": "fulfillment", "amount": total - 3000},
                       {"type": "total", "amount": total}],
            "links": [{"type": "terms_of_service", "url": MERCHANT_URL + "/terms"}],
        }
        path = self.tmp / ("checkout-%d.json" % total)
        path.write_text(json.dumps(checkout))
        out = run(self.bin, "mandate", "checkout-jwt",
                  "--key", str(self.tmp / "merchant.pem"), "--checkout", str(path))
        assert out.returncode == 0, out.stderr
        signed = json.loads(out.stdout)
        checkout["ap2"] = {"merchant_authorization": signed["merchant_authorization"]}
        return checkout

    # --- The agent's side ---

    def open_checkout(self) -> dict:
        return {
            "vct": "mandate.checkout.open.1",
            "constraints": [
                {"type": "checkout.line_items", "items": [{
                    "id": "shirts", "quantity": 2,
                    "acceptable_items": [SDObj({"id": VARIANT, "title": "T-shirt, red, M"}),
                                         SDObj({"id": "v-tshirt-blue-m", "title": "T-shirt, blue, M"})],
                }]},
                {"type": "checkout.allowed_merchants",
                 "allowed": [SDObj({"id": MERCHANT_URL, "name": "Demo Shop"})]},
            ],
            "cnf": {"jwk": self.agent.export_public(as_dict=True)},
            "iat": self.now - 3600,
            "exp": self.now + 86400,
        }

    def open_payment(self, open_checkout_hash: str) -> dict:
        return {
            "vct": "mandate.payment.open.1",
            "constraints": [
                {"type": "payment.reference", "conditional_transaction_id": open_checkout_hash},
                {"type": "payment.amount_range", "currency": "USD", "max": 5000, "min": 100},
                {"type": "payment.allowed_payees", "allowed": [SDObj(MERCHANT)]},
            ],
            "cnf": {"jwk": self.agent.export_public(as_dict=True)},
            "iat": self.now - 3600,
            "exp": self.now + 86400,
        }

    def closed_checkout(self, checkout_jwt: str) -> dict:
        return {
            "vct": "mandate.checkout.1",
            SDObj("checkout_jwt"): checkout_jwt,
            "checkout_hash": sha256_b64url(checkout_jwt),
        }

    def closed_payment(self, amount: int = 3500) -> dict:
        return {
            "vct": "mandate.payment.1",
            "transaction_id": self.checkout_hash,
            "payee": MERCHANT,
            "payment_amount": {"amount": amount, "currency": "USD"},
            "payment_instrument": {"id": "success_token", "type": "card", "description": "Visa 4242"},
        }

    def root(self, mandate: dict) -> str:
        claims = {"delegate_payload": mandate_item(mandate), "iat": self.now - 3600,
                  "exp": self.now + 86400}
        return sd_jwt(claims, self.platform, "dc+sd-jwt", kid=PLATFORM_KID)

    def close(self, root: str, mandate: dict, key=None, nonce=None) -> str:
        """The agent's closed hop on top of `root`, answering the merchant."""
        claims = {
            "delegate_payload": mandate_item(mandate),
            "iat": int(time.time()),
            "aud": MERCHANT_URL,
            "nonce": nonce or self.checkout_hash,
            "sd_hash": sha256_b64url(root),
        }
        # Each SD-JWT ends with "~"; one more "~" separates two of them.
        return root + "~" + sd_jwt(claims, key or self.agent, "kb+sd-jwt")

    def mandates(self, **edits):
        """The honest human-not-present pair, with `edits` applied."""
        open_checkout = edits.get("open_checkout", self.open_checkout())
        checkout_root = self.root(open_checkout)
        checkout = self.close(checkout_root, self.closed_checkout(edits.get("checkout_jwt", self.checkout_jwt)),
                              nonce=edits.get("nonce"))
        payment_root = self.root(edits.get("open_payment", self.open_payment(sha256_b64url(checkout_root))))
        payment = self.close(payment_root, edits.get("closed_payment", self.closed_payment()),
                             key=edits.get("payment_key"), nonce=edits.get("nonce"))
        return checkout, payment

    def verify(self, checkout_mandate: str, payment_mandate: str) -> subprocess.CompletedProcess:
        (self.tmp / "checkout.sdjwt").write_text(checkout_mandate)
        (self.tmp / "payment.sdjwt").write_text(payment_mandate)
        (self.tmp / "response.json").write_text(json.dumps(self.checkout))
        return run(
            self.bin, "mandate", "verify-v2",
            "--checkout-mandate", str(self.tmp / "checkout.sdjwt"),
            "--payment-mandate", str(self.tmp / "payment.sdjwt"),
            "--checkout", str(self.tmp / "response.json"),
            "--agent-jwks", str(self.tmp / "agent.jwks.json"),
            "--merchant-jwks", str(self.tmp / "merchant.jwks.json"),
            "--audience", MERCHANT_URL,
        )


@pytest.fixture()
def world(agentgate, tmp_path) -> World:
    return World(agentgate, tmp_path)


def accepted(out: subprocess.CompletedProcess):
    assert out.returncode == 0, out.stdout + out.stderr
    assert "mandates verified" in out.stdout, out.stdout


def refused(out: subprocess.CompletedProcess, code: str):
    assert out.returncode != 0, "accepted, expected %s:\n%s" % (code, out.stdout)
    assert ("✗ %s:" % code) in out.stdout, "expected %s:\n%s%s" % (code, out.stdout, out.stderr)


# --- The merchant's signature ------------------------------------------------


def test_the_merchant_authorization_verifies_with_jwcrypto(world):
    """A platform checks ap2.merchant_authorization before showing the checkout."""
    header = json.loads(base64.urlsafe_b64decode(world.checkout_jwt.split(".")[0] + "=="))
    assert set(header) == {"alg", "kid"} and header["alg"] == "ES256"
    key = JWK(**next(k for k in world.merchant_jwks["keys"] if k["kid"] == header["kid"]))
    token = JWS()
    token.deserialize(world.checkout_jwt)
    token.verify(key)
    assert json.loads(token.payload) == {k: v for k, v in world.checkout.items() if k != "ap2"}


# --- Accepted ----------------------------------------------------------------


def test_open_then_closed_mandates_are_accepted(world):
    accepted(world.verify(*world.mandates()))


def test_closed_mandates_with_an_rfc_9901_kb_jwt_are_accepted(world):
    """Human present: closed mandates bound to the agent key (cnf), and a
    KB-JWT made by the library's holder."""

    def presented(closed: dict, disclose: dict) -> str:
        claims = {"delegate_payload": mandate_item(closed), "iat": world.now - 60,
                  "exp": world.now + 3600}
        issuance = sd_jwt(claims, world.platform, "dc+sd-jwt", kid=PLATFORM_KID, holder=world.agent)
        holder = SDJWTHolder(issuance)
        holder.create_presentation(disclose, nonce=world.checkout_hash, aud=MERCHANT_URL,
                                   holder_key=world.agent, sign_alg="ES256")
        return holder.sd_jwt_presentation

    checkout = presented(world.closed_checkout(world.checkout_jwt),
                         {"delegate_payload": [{"checkout_jwt": True}]})
    payment = presented(world.closed_payment(), {"delegate_payload": [True]})
    accepted(world.verify(checkout, payment))


# --- Refused, with the documented codes --------------------------------------


def tamper_disclosure(presentation: str, edit) -> str:
    """Re-encodes the last disclosure whose value `edit` changes."""
    parts = presentation.split("~")
    for i in range(len(parts) - 1, -1, -1):
        if not parts[i] or "." in parts[i]:
            continue
        decoded = json.loads(base64.urlsafe_b64decode(parts[i] + "=" * (-len(parts[i]) % 4)))
        changed = copy.deepcopy(decoded)
        edit(changed)
        if changed != decoded:
            parts[i] = b64url(json.dumps(changed).encode())
            return "~".join(parts)
    raise AssertionError("no disclosure to tamper with")


def test_tampered_mandates_are_refused(world):
    checkout, payment = world.mandates()

    def set_amount(d):
        if isinstance(d[-1], dict) and "payment_amount" in d[-1]:
            d[-1]["payment_amount"]["amount"] = 1

    refused(world.verify(checkout, tamper_disclosure(payment, set_amount)), "mandate_invalid_signature")

    open_payment = world.open_payment("")
    open_payment["constraints"][1]["max"] = 3000
    refused(world.verify(*world.mandates(open_payment=open_payment)), "mandate_scope_mismatch")

    unknown = world.open_checkout()
    unknown["constraints"].append({"type": "checkout.max_price", "max": 4000})
    refused(world.verify(*world.mandates(open_checkout=unknown)), "mandate_malformed")

    refused(world.verify(*world.mandates(payment_key=world.stranger)), "mandate_invalid_signature")
    refused(world.verify(*world.mandates(nonce="another-challenge")), "mandate_scope_mismatch")
    refused(world.verify(*world.mandates(closed_payment=world.closed_payment(3000))),
            "mandate_scope_mismatch")

    stale = checkout_jwt_of(world.signed_checkout(3400))
    refused(world.verify(*world.mandates(checkout_jwt=stale)), "mandate_scope_mismatch")

    # The open mandate alone: nobody proved holding the delegated key.
    root_only = checkout.split("~~")[0] + "~"
    refused(world.verify(root_only, payment), "mandate_malformed")

    # A disclosure presented twice.
    d = checkout.rstrip("~").split("~")[-1]
    refused(world.verify(checkout + d + "~", payment), "mandate_malformed")

    # alg none on the closed hop, signature stripped.
    hop = payment.split("~~")[1].split("~")[0]
    none_header = b64url(json.dumps({"alg": "none", "typ": "kb+sd-jwt"}).encode())
    forged = "%s.%s." % (none_header, hop.split(".")[1])
    refused(world.verify(checkout, payment.replace(hop, forged)), "alg_not_allowed")
