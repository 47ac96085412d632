//! The PayPal adapter's offline `verify_webhook` (transmission headers, certificate URL pinning,
//! certificate parsing, RSA-SHA256 over `id|time|webhook_id|crc32`, event translation) with arbitrary
//! headers and body, against a certificate made for the run. The first byte picks the mode:
//!
//! - `0`: the headers as given (forgeries: the fuzzer has no key);
//! - `1`: the body signed with the certificate's key, with the `paypal-transmission-id` and
//!   `paypal-transmission-time` lines of the input when usable (the translation of arbitrary bodies):
//!   never a signature refusal;
//! - `2`: the body served as the certificate PEM from a fresh PayPal URL (certificate parsing).
#![no_main]

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use payout_core::WebhookError;
use payout_core::clock::ManualClock;
use payout_core::provider::PayoutProvider;
use payout_providers::paypal::{
    AUTH_ALGO, CERT_URL, CertFetcher, PaypalConfig, PaypalProvider, TRANSMISSION_ID, TRANSMISSION_SIG,
    TRANSMISSION_TIME,
};
use payouts_fuzz::{block_on, header_map, message, mode};
use rsa::RsaPrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::EncodePem;
use x509_cert::der::pem::LineEnding;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};

const NOW: i64 = 1_700_000_000;
const WEBHOOK_ID: &str = "WH-FUZZ-1";
const CERT: &str = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-FUZZ";

struct Fixture {
    key: RsaPrivateKey,
    pem: Vec<u8>,
    provider: PaypalProvider,
}

/// Serves the run's certificate at [`CERT`] and, once, the PEM a mode-2 input put in [`NEXT_PEM`].
struct Fetcher;

static NEXT_PEM: Mutex<Option<Vec<u8>>> = Mutex::new(None);

#[async_trait]
impl CertFetcher for Fetcher {
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        if url == CERT {
            return Ok(fixture().pem.clone());
        }
        NEXT_PEM
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| "404".to_string())
    }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).expect("an RSA key");
        let at = |t: u64| Time::try_from(UNIX_EPOCH + Duration::from_secs(t)).expect("a time");
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone());
        let spki = SubjectPublicKeyInfoOwned::from_key(key.to_public_key()).expect("an SPKI");
        let validity = Validity {
            not_before: at(1_600_000_000),
            not_after: at(1_800_000_000),
        };
        let subject = Name::from_str("CN=messageverificationcerts.sandbox.paypal.com,O=Fuzz").expect("a name");
        let cert = CertificateBuilder::new(
            Profile::Root,
            SerialNumber::from(1u32),
            validity,
            subject,
            spki,
            &signer,
        )
        .expect("a builder")
        .build::<rsa::pkcs1v15::Signature>()
        .expect("a certificate");
        let pem = cert.to_pem(LineEnding::LF).expect("PEM").into_bytes();
        let now = DateTime::<Utc>::from_timestamp(NOW, 0).expect("a time");
        let config = PaypalConfig::builder()
            .client_id("fuzz-client")
            .client_secret("fuzz-secret")
            .webhook_id(WEBHOOK_ID)
            .api_base("http://127.0.0.1:9")
            .cert_fetcher(Arc::new(Fetcher))
            .clock(Arc::new(ManualClock::new(now)))
            .build()
            .expect("a PayPal config");
        let provider = PaypalProvider::new(config).expect("a PayPal provider");
        Fixture { key, pem, provider }
    })
}

fn sign(key: &RsaPrivateKey, id: &str, time: &str, body: &[u8]) -> String {
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(body);
    let message = format!("{id}|{time}|{WEBHOOK_ID}|{crc}");
    let signature = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone()).sign(message.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(signature.to_bytes())
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some(m) = message(data) else { return };
    let mut headers = header_map(&m.headers);
    let mode = mode(data, 3);
    let usable = |name: &str, default: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or(default)
            .to_string()
    };
    match mode {
        1 => {
            let id = usable(TRANSMISSION_ID, "b2384410-f8d2-11e8-a1a6-c1e1ba4b5cd4");
            let time = usable(TRANSMISSION_TIME, "2024-07-06T22:48:53Z");
            let sig = sign(&f.key, &id, &time, m.body);
            for (k, v) in [
                (TRANSMISSION_ID, id.as_str()),
                (TRANSMISSION_TIME, time.as_str()),
                (TRANSMISSION_SIG, sig.as_str()),
                (CERT_URL, CERT),
                (AUTH_ALGO, "SHA256withRSA"),
            ] {
                headers.insert(k, v.parse().expect("a header value"));
            }
        }
        2 => {
            static N: AtomicU64 = AtomicU64::new(0);
            let url = format!(
                "https://api.paypal.com/v1/notifications/certs/CERT-{}",
                N.fetch_add(1, Ordering::Relaxed)
            );
            *NEXT_PEM.lock().unwrap_or_else(|e| e.into_inner()) = Some(m.body.to_vec());
            for (k, v) in [
                (TRANSMISSION_ID, "id"),
                (TRANSMISSION_TIME, "time"),
                (TRANSMISSION_SIG, "c2ln"),
                (CERT_URL, url.as_str()),
                (AUTH_ALGO, "SHA256withRSA"),
            ] {
                headers.insert(k, v.parse().expect("a header value"));
            }
        }
        _ => {}
    }
    let body: &[u8] = if mode == 2 { b"{}" } else { m.body };
    let result = block_on(f.provider.verify_webhook(&headers, body));
    if mode == 1 {
        assert!(
            matches!(result, Ok(_) | Err(WebhookError::Malformed(_))),
            "a correctly signed body was refused: {result:?}"
        );
    }
    if mode == 2 {
        // A certificate from the fuzzer has no key the signature "c2ln" could match.
        assert!(result.is_err(), "an arbitrary certificate verified a made-up signature");
    }
});
