//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`,
//! one per signing secret, space-separated in `webhook-signature`.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::WebhookSecret;

/// The `v1,…` signature of one message with one secret.
pub fn sign(secret: &WebhookSecret, message_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.bytes()).expect("HMAC takes a key of any length");
    mac.update(message_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: a signature per secret, space-separated.
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a WebhookSecret>,
    message_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets.into_iter().map(|secret| sign(secret, message_id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks reference libraries' test suites
    /// (standard-webhooks/libraries, `python/tests/test_webhooks.py`): this secret, id,
    /// timestamp and body sign to this value.
    #[test]
    fn the_reference_example_signs_alike() {
        let secret = base64::engine::general_purpose::STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = sign(
            &WebhookSecret::from_bytes(secret),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn each_secret_signs_once_and_another_body_signs_otherwise() {
        let (a, b) = (WebhookSecret::from_bytes(vec![1; 24]), WebhookSecret::from_bytes(vec![2; 24]));
        let header = signature_header([&a, &b], "msg_1", 1, b"{}");
        let parts: Vec<_> = header.split(' ').collect();
        assert_eq!(parts, [sign(&a, "msg_1", 1, b"{}"), sign(&b, "msg_1", 1, b"{}")]);
        assert_ne!(sign(&a, "msg_1", 1, b"{}"), sign(&a, "msg_1", 1, b"{ }"));
        assert_ne!(sign(&a, "msg_1", 1, b"{}"), sign(&a, "msg_1", 2, b"{}"));
    }
}
