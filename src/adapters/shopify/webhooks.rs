//! Shopify webhook authentication: `X-Shopify-Hmac-Sha256` is the base64
//! HMAC-SHA256 of the raw body under the app's webhook secret. The check
//! is constant-time and runs on the bytes as received, before any parsing.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// Whether `header` is the HMAC of `body` under `secret`.
pub fn verify(secret: &SecretString, body: &[u8], header: &str) -> bool {
    let Ok(claimed) = STANDARD.decode(header.trim()) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else {
        return false;
    };
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&claimed).is_ok()
}

/// The header value Shopify would send for `body` (for tests and tools).
pub fn sign(secret: &SecretString, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length; this cannot fail.
        Err(_) => return String::new(),
    };
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_exact_body_and_secret() {
        let secret = SecretString::from("shh");
        let body = br#"{"id":1}"#;
        let good = sign(&secret, body);
        assert!(verify(&secret, body, &good));
        assert!(!verify(&secret, br#"{"id":2}"#, &good));
        assert!(!verify(&SecretString::from("other"), body, &good));
        assert!(!verify(&secret, body, "not base64!"));
        assert!(!verify(&secret, body, ""));
    }
}
