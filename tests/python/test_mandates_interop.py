"""AP2 mandate interop: a Python agent built from docs/mandates.md alone.

The agent side (keys, intent and payment mandates) uses only PyJWT and
`cryptography`; the merchant side is the real `agentgate` binary. The test
checks that the gateway accepts the chain and refuses tampered ones with the
documented codes.

Run:
    cargo build --bin agentgate
    AGENTGATE_BIN=target/debug/agentgate python -m pytest tests/python/test_mandates_interop.py
"""

import base64
import hashlib
import hmac
import json
import os
import pathlib
import subprocess
import time

import jwt  # PyJWT
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = pathlib.Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors" / "ap2"
MERCHANT_URL = "https://shop.example"
CHECKOUT_ID = "chk_0190aa55pytest0001"


# --- What docs/mandates.md says, written out by hand -----------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def token_hash(token: str) -> str:
    """base64url(SHA-256(ASCII of a compact token)): intent_hash, cart_mandate_hash."""
    return b64url(hashlib.sha256(token.encode("ascii")).digest())


def jcs(value) -> bytes:
    """RFC 8785 for the values mandates hold (ASCII keys, integers, strings)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict:
    numbers = key.public_key().public_numbers()
    x = b64url(numbers.x.to_bytes(32, "big"))
    y = b64url(numbers.y.to_bytes(32, "big"))
    return {"kty": "EC", "crv": "P-256", "x": x, "y": y}


def thumbprint(jwk: dict) -> str:
    """RFC 7638: the required members, sorted, no spaces, SHA-256, base64url."""
    canonical = '{"crv":"%s","kty":"%s","x":"%s","y":"%s"}' % (
        jwk["crv"],
        jwk["kty"],
        jwk["x"],
        jwk["y"],
    )
    return b64url(hashlib.sha256(canonical.encode()).digest())


def pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def sign(claims: dict, key, kid: str) -> str:
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid, "typ": "mandate+jwt"})


# --- Plumbing ---------------------------------------------------------------


@pytest.fixture(scope="session")
def agentgate() -> str:
    binary = os.environ.get("AGENTGATE_BIN")
    if not binary or not pathlib.Path(binary).is_file():
        pytest.fail("set AGENTGATE_BIN to a built agentgate binary (cargo build --bin agentgate)")
    return binary


def run(agentgate: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([agentgate, *args], capture_output=True, text=True, timeout=60)


class Agent:
    """One user key, one delegated agent key, and a merchant key made by the CLI."""

    def __init__(self, agentgate: str, tmp: pathlib.Path):
        self.bin = agentgate
        self.tmp = tmp
        self.user = ec.generate_private_key(ec.SECP256R1())
        self.agent = ec.generate_private_key(ec.SECP256R1())
        self.user_jwk = dict(public_jwk(self.user), kid="python-user-1", use="sig", alg="ES256")
        self.agent_jwk = public_jwk(self.agent)
        self.agent_kid = thumbprint(self.agent_jwk)
        (tmp / "user.jwks.json").write_text(json.dumps({"keys": [self.user_jwk]}))
        out = run(
            agentgate,
            "keys", "generate",
            "--out", str(tmp / "merchant.pem"),
            "--jwks-out", str(tmp / "merchant.jwks.json"),
        )
        assert out.returncode == 0, out.stderr
        self.merchant_kid = json.loads(out.stdout)["kid"]
        self.merchant_jwks = json.loads((tmp / "merchant.jwks.json").read_text())
        (tmp / "contents.json").write_text((VECTORS / "contents.json").read_text())

    def intent(self, **overrides) -> str:
        now = int(time.time())
        claims = {
            "iss": "https://agent.example",
            "iat": now,
            "exp": now + 3600,
            "jti": "py-intent-%d" % time.time_ns(),
            "max_amount": {"amount": 5000, "currency": "USD"},
            "natural_language_description": "Two red T-shirts, size M, under 50 USD",
            "merchants": [MERCHANT_URL],
            "skus": ["TSHIRT-RED-M"],
        }
        claims.update(overrides)
        return sign(claims, self.user, self.user_jwk["kid"])

    def cart(self, intent: str) -> str:
        """The merchant side, by the gateway's own CLI."""
        (self.tmp / "intent.jws").write_text(intent)
        out = run(
            self.bin,
            "mandate", "cart",
            "--key", str(self.tmp / "merchant.pem"),
            "--checkout-id", CHECKOUT_ID,
            "--intent", str(self.tmp / "intent.jws"),
            "--contents", str(self.tmp / "contents.json"),
            "--merchant", MERCHANT_URL,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def cart_claims(self, cart: str) -> dict:
        """Checks the merchant's signature with PyJWT before paying."""
        kid = jwt.get_unverified_header(cart)["kid"]
        jwk = next(k for k in self.merchant_jwks["keys"] if k["kid"] == kid)
        key = jwt.PyJWK(jwk).key
        return jwt.decode(cart, key, algorithms=["ES256"])

    def payment_claims(self, cart: str) -> dict:
        claims = self.cart_claims(cart)
        now = int(time.time())
        return {
            "iat": now,
            "exp": now + 600,
            "jti": "py-payment-%d" % time.time_ns(),
            "payment_mandate_contents": {
                "payment_mandate_id": "py-pm-%d" % time.time_ns(),
                "payment_details_id": claims["checkout_id"],
                "payment_details_total": claims["contents"]["payment_request"]["details"]["total"]["amount"],
                "payment_response": {"method_name": "CARD", "details": {"token": "tok_sandbox_py"}},
                "merchant_agent": claims["iss"],
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            },
            "cart_mandate_hash": token_hash(cart),
        }

    def user_sign(self, claims: dict) -> str:
        return sign(claims, self.user, self.user_jwk["kid"])

    def verify(self, intent: str, cart: str, payment: str) -> subprocess.CompletedProcess:
        for name, token in (("i.jws", intent), ("c.jws", cart), ("p.jws", payment)):
            (self.tmp / name).write_text(token)
        return run(
            self.bin,
            "mandate", "verify",
            "--intent", str(self.tmp / "i.jws"),
            "--cart", str(self.tmp / "c.jws"),
            "--payment", str(self.tmp / "p.jws"),
            "--user-jwks", str(self.tmp / "user.jwks.json"),
            "--merchant-jwks", str(self.tmp / "merchant.jwks.json"),
            "--checkout-id", CHECKOUT_ID,
            "--merchant", MERCHANT_URL,
        )


@pytest.fixture()
def agent(agentgate, tmp_path) -> Agent:
    return Agent(agentgate, tmp_path)


# --- The documented example -------------------------------------------------


def test_doc_example_matches_the_documented_definitions():
    example = json.loads((VECTORS / "example.json").read_text())
    user_jwks = json.loads((VECTORS / "user.jwks.json").read_text())
    merchant_jwks = json.loads((VECTORS / "merchant.jwks.json").read_text())
    for jwk in user_jwks["keys"] + merchant_jwks["keys"]:
        assert thumbprint(jwk) == jwk["kid"]
    cart = example["cart"]
    assert b64url(hashlib.sha256(cart["contents_jcs"].encode()).digest()) == cart["cart_hash"]
    contents = json.loads(cart["payload"])["contents"]
    assert jcs(contents).decode() == cart["contents_jcs"]
    assert token_hash(example["intent"]["token"]) == cart["intent_hash"]
    assert token_hash(cart["token"]) == example["payment"]["cart_mandate_hash"]
    # PyJWT verifies the documented tokens with the documented keys.
    user_key = jwt.PyJWK(user_jwks["keys"][0]).key
    merchant_key = jwt.PyJWK(merchant_jwks["keys"][0]).key
    past = {"verify_exp": False, "verify_iat": False, "verify_nbf": False}
    for name, key in (("intent", user_key), ("cart", merchant_key), ("payment", user_key)):
        token = example[name]["token"]
        assert jwt.get_unverified_header(token) == json.loads(example[name]["header"])
        claims = jwt.decode(token, key, algorithms=["ES256"], options=past)
        assert claims == json.loads(example[name]["payload"])


def test_doc_example_verifies_with_the_cli(agentgate):
    out = run(
        agentgate,
        "mandate", "verify",
        "--at", "2026-03-01T12:00:00Z",
        "--intent", str(VECTORS / "intent.jws"),
        "--cart", str(VECTORS / "cart.jws"),
        "--payment", str(VECTORS / "payment.jws"),
        "--user-jwks", str(VECTORS / "user.jwks.json"),
        "--merchant-jwks", str(VECTORS / "merchant.jwks.json"),
        "--checkout-id", "chk_0190aa55b2c47e8f9d1a2b3c4d5e6f70",
        "--merchant", MERCHANT_URL,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "chain verified" in out.stdout


# --- A live chain -------------------------------------------------------------


def test_python_intent_and_payment_are_accepted(agent):
    intent = agent.intent()
    cart = agent.cart(intent)
    assert agent.cart_claims(cart)["intent_hash"] == token_hash(intent)
    payment = sign(agent.payment_claims(cart), agent.user, agent.user_jwk["kid"])
    out = agent.verify(intent, cart, payment)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "✗" not in out.stdout
    assert "chain verified: USD 35.00" in out.stdout
    assert "replay" in out.stdout  # offline verify says it did not check replay


def test_delegated_agent_key_may_pay_when_the_intent_says_so(agent):
    intent = agent.intent(
        cnf={"jwk": agent.agent_jwk},
        user_cart_confirmation_required=False,
    )
    cart = agent.cart(intent)
    payment = sign(agent.payment_claims(cart), agent.agent, agent.agent_kid)
    out = agent.verify(intent, cart, payment)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "delegated agent key" in out.stdout


def _edited(token: str, edit) -> str:
    """The token with its payload changed and the old signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    edit(claims)
    return ".".join([header, b64url(json.dumps(claims).encode()), signature])


def _claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def lower_the_payment(a, intent, cart, payment):
    payment["payment_mandate_contents"]["payment_details_total"]["amount"] = 3400
    return intent, cart, a.user_sign(payment)


def raise_the_signed_intent_max(a, intent, cart, payment):
    raised = _edited(intent, lambda c: c["max_amount"].update(amount=900000))
    return raised, cart, a.user_sign(payment)


def sign_payment_as_a_stranger(a, intent, cart, payment):
    stranger = ec.generate_private_key(ec.SECP256R1())
    return intent, cart, sign(payment, stranger, a.user_jwk["kid"])


def bind_payment_to_another_cart(a, intent, cart, payment):
    payment["cart_mandate_hash"] = token_hash(a.cart(a.intent()))
    return intent, cart, a.user_sign(payment)


def send_an_unsigned_intent(a, intent, cart, payment):
    headers = {"kid": a.user_jwk["kid"], "typ": "mandate+jwt"}
    unsigned = jwt.encode(_claims_of(intent), None, algorithm="none", headers=headers)
    return unsigned, cart, a.user_sign(payment)


def hmac_with_the_public_key(a, intent, cart, payment):
    # PyJWT itself refuses a JWK as an HMAC secret, so the attacker does it by hand.
    header = b64url(json.dumps({"alg": "HS256", "kid": a.user_jwk["kid"], "typ": "mandate+jwt"}).encode())
    body = b64url(json.dumps(payment).encode())
    secret = json.dumps(a.user_jwk).encode()
    mac = hmac.new(secret, ("%s.%s" % (header, body)).encode(), hashlib.sha256).digest()
    return intent, cart, "%s.%s.%s" % (header, body, b64url(mac))


def pay_with_cnf_key_despite_required_confirmation(a, intent, cart, payment):
    intent = a.intent(cnf={"jwk": a.agent_jwk})  # confirmation required by default
    cart = a.cart(intent)
    return intent, cart, sign(a.payment_claims(cart), a.agent, a.agent_kid)


TAMPERS = [
    ("payment amount lowered", "payment_amount_mismatch", lower_the_payment),
    ("intent max raised after signing", "mandate_invalid_signature", raise_the_signed_intent_max),
    ("payment signed by a stranger", "mandate_invalid_signature", sign_payment_as_a_stranger),
    ("payment bound to another cart", "chain_hash_mismatch", bind_payment_to_another_cart),
    ("alg none", "alg_not_allowed", send_an_unsigned_intent),
    ("HS256 keyed with the public JWK", "alg_not_allowed", hmac_with_the_public_key),
    ("cnf agent pays though the user must confirm", "mandate_scope_mismatch", pay_with_cnf_key_despite_required_confirmation),
]


@pytest.mark.parametrize("name,code,tamper", TAMPERS, ids=[t[0] for t in TAMPERS])
def test_tampered_chains_are_refused_with_their_code(agent, name, code, tamper):
    intent = agent.intent()
    cart = agent.cart(intent)
    intent, cart, payment = tamper(agent, intent, cart, agent.payment_claims(cart))
    out = agent.verify(intent, cart, payment)
    assert out.returncode != 0, out.stdout
    assert "✗" in out.stdout
    assert ("chain rejected: %s" % code) in out.stderr, out.stdout + out.stderr
