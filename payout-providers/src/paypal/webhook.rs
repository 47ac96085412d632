//! PayPal webhook verification, offline (RSA-SHA256 with PayPal's certificate) or through the
//! verify-webhook-signature API, and translation of verified events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use http::HeaderMap;
use payout_core::WebhookError;
use payout_core::domain::PayoutAttempt;
use payout_core::provider::{EventReference, ProviderEvent, ProviderEventKind, ProviderStatus};
use rsa::RsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use sha2::Sha256;
use x509_cert::Certificate;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Encode};

use super::wire::{Event, ItemDetail};

/// `PAYPAL-TRANSMISSION-ID`
pub const TRANSMISSION_ID: &str = "paypal-transmission-id";
/// `PAYPAL-TRANSMISSION-TIME`
pub const TRANSMISSION_TIME: &str = "paypal-transmission-time";
/// `PAYPAL-TRANSMISSION-SIG` (base64)
pub const TRANSMISSION_SIG: &str = "paypal-transmission-sig";
/// `PAYPAL-CERT-URL`
pub const CERT_URL: &str = "paypal-cert-url";
/// `PAYPAL-AUTH-ALGO` (`SHA256withRSA`)
pub const AUTH_ALGO: &str = "paypal-auth-algo";

/// The hosts PayPal serves its webhook certificates from.
pub const CERT_HOSTS: [&str; 4] = [
    "api.paypal.com",
    "api-m.paypal.com",
    "api.sandbox.paypal.com",
    "api-m.sandbox.paypal.com",
];
/// The path prefix of PayPal's webhook certificates.
pub const CERT_PATH_PREFIX: &str = "/v1/notifications/certs/";

const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const CACHE_LIMIT: usize = 32;

/// Fetches PayPal's signing certificate from a URL that has already been checked to be PayPal's
/// ([`check_cert_url`]). Override it in tests to serve a certificate made in the test.
#[async_trait]
pub trait CertFetcher: Send + Sync {
    /// The PEM text (one certificate or a chain, the signing one first) at `url`.
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String>;
}

/// The default [`CertFetcher`]: an HTTPS GET.
#[derive(Debug, Clone)]
pub struct HttpCertFetcher {
    http: reqwest::Client,
}

impl HttpCertFetcher {
    pub(crate) fn new(http: reqwest::Client) -> Self {
        HttpCertFetcher { http }
    }
}

#[async_trait]
impl CertFetcher for HttpCertFetcher {
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let body = response.bytes().await.map_err(|e| e.without_url().to_string())?;
        Ok(body.to_vec())
    }
}

/// Checks that a `PAYPAL-CERT-URL` is one of PayPal's: https, one of [`CERT_HOSTS`] on the default
/// port, a path under [`CERT_PATH_PREFIX`], no credentials, query or fragment. Returns the URL as
/// parsed (dot segments resolved), which is what gets fetched.
pub fn check_cert_url(url: &str) -> Result<String, WebhookError> {
    let refuse = |why: &str| Err(WebhookError::Unauthorized(format!("certificate URL refused: {why}")));
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return refuse("not a URL");
    };
    if parsed.scheme() != "https" {
        return refuse("not https");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return refuse("carries credentials");
    }
    let host = parsed.host_str().unwrap_or("");
    if !CERT_HOSTS.contains(&host) {
        return refuse("not a PayPal host");
    }
    if parsed.port().is_some_and(|p| p != 443) {
        return refuse("unexpected port");
    }
    let path = parsed.path();
    if !path.starts_with(CERT_PATH_PREFIX) || path.len() == CERT_PATH_PREFIX.len() || path.contains("..") {
        return refuse("not under /v1/notifications/certs/");
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return refuse("query or fragment");
    }
    Ok(parsed.to_string())
}

/// The transmission headers every PayPal webhook carries.
#[derive(Debug, Clone)]
pub(crate) struct Transmission {
    pub id: String,
    pub time: String,
    pub sig: String,
    pub cert_url: String,
    pub algo: String,
}

impl Transmission {
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, WebhookError> {
        let get = |name: &str| -> Result<String, WebhookError> {
            let v = headers
                .get(name)
                .ok_or_else(|| WebhookError::MissingHeader(name.to_ascii_uppercase()))?;
            let v = v.to_str().map_err(|_| WebhookError::BadSignature)?.trim();
            if v.is_empty() {
                return Err(WebhookError::MissingHeader(name.to_ascii_uppercase()));
            }
            Ok(v.to_string())
        };
        let t = Transmission {
            id: get(TRANSMISSION_ID)?,
            time: get(TRANSMISSION_TIME)?,
            sig: get(TRANSMISSION_SIG)?,
            cert_url: get(CERT_URL)?,
            algo: get(AUTH_ALGO)?,
        };
        if !t.algo.eq_ignore_ascii_case("SHA256withRSA") {
            return Err(WebhookError::Unauthorized(format!(
                "unsupported PAYPAL-AUTH-ALGO {:?}",
                t.algo
            )));
        }
        Ok(t)
    }

    /// `transmission_id|transmission_time|webhook_id|crc32(raw body)`, the CRC as unsigned decimal.
    pub fn signed_message(&self, webhook_id: &str, body: &[u8]) -> String {
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(body);
        format!("{}|{}|{webhook_id}|{crc}", self.id, self.time)
    }
}

#[derive(Clone)]
struct CachedCert {
    key: RsaPublicKey,
    not_before: i64,
    not_after: i64,
}

/// Offline verification with a certificate cache keyed by URL.
pub(crate) struct OfflineVerifier {
    fetcher: Arc<dyn CertFetcher>,
    cache: Mutex<HashMap<String, CachedCert>>,
}

impl OfflineVerifier {
    pub fn new(fetcher: Arc<dyn CertFetcher>) -> Self {
        OfflineVerifier {
            fetcher,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub async fn verify(
        &self,
        t: &Transmission,
        webhook_id: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), WebhookError> {
        let url = check_cert_url(&t.cert_url)?;
        let cert = self.certificate(&url).await?;
        let now = now.timestamp();
        if now < cert.not_before || now > cert.not_after {
            return Err(WebhookError::Expired);
        }
        let sig = base64::engine::general_purpose::STANDARD
            .decode(&t.sig)
            .map_err(|_| WebhookError::BadSignature)?;
        let sig = Signature::try_from(sig.as_slice()).map_err(|_| WebhookError::BadSignature)?;
        VerifyingKey::<Sha256>::new(cert.key)
            .verify(t.signed_message(webhook_id, body).as_bytes(), &sig)
            .map_err(|_| WebhookError::BadSignature)
    }

    async fn certificate(&self, url: &str) -> Result<CachedCert, WebhookError> {
        if let Some(c) = self.lock().get(url) {
            return Ok(c.clone());
        }
        let pem = self
            .fetcher
            .fetch(url)
            .await
            .map_err(|e| WebhookError::Unavailable(format!("cannot fetch PayPal's certificate: {e}")))?;
        let cert = parse_certificate(&pem)?;
        let mut cache = self.lock();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(url.to_string(), cert.clone());
        Ok(cert)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedCert>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The first certificate of a PEM chain: its RSA key and validity, after checking its subject's
/// common name ends in `.paypal.com` (as PayPal's SDKs do).
fn parse_certificate(pem: &[u8]) -> Result<CachedCert, WebhookError> {
    let bad = |why: String| WebhookError::Unavailable(format!("PayPal's certificate is unusable: {why}"));
    let text = std::str::from_utf8(pem).map_err(|_| bad("not PEM text".into()))?;
    const END: &str = "-----END CERTIFICATE-----";
    let first = match text.find(END) {
        Some(i) => &text[..i + END.len()],
        None => return Err(bad("no PEM certificate".into())),
    };
    // Decoded to DER first and parsed from the slice: der's streaming PEM reader (`from_pem`) spins
    // forever on a truncated certificate (found by the paypal_webhook fuzz target).
    let (label, der) =
        x509_cert::der::pem::decode_vec(first.trim_start().as_bytes()).map_err(|e| bad(e.to_string()))?;
    if label != "CERTIFICATE" {
        return Err(bad(format!("a PEM {label}, not a certificate")));
    }
    let cert = Certificate::from_der(&der).map_err(|e| bad(e.to_string()))?;
    let cn = cert
        .tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == COMMON_NAME)
        .and_then(|atv| std::str::from_utf8(atv.value.value()).ok().map(str::to_string))
        .unwrap_or_default();
    if !cn.to_ascii_lowercase().ends_with(".paypal.com") {
        return Err(WebhookError::Unauthorized(format!(
            "certificate subject {cn:?} is not PayPal's"
        )));
    }
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| bad(e.to_string()))?;
    let key = RsaPublicKey::from_public_key_der(&spki).map_err(|e| bad(format!("not an RSA key: {e}")))?;
    let secs = |t: x509_cert::time::Time| i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX);
    Ok(CachedCert {
        key,
        not_before: secs(cert.tbs_certificate.validity.not_before),
        not_after: secs(cert.tbs_certificate.validity.not_after),
    })
}

/// The verify-webhook-signature request body, with the raw event spliced in unchanged (re-encoding
/// it could change the bytes PayPal signed).
pub(crate) fn verify_request_body(t: &Transmission, webhook_id: &str, body: &[u8]) -> Result<String, WebhookError> {
    let event = std::str::from_utf8(body).map_err(|_| WebhookError::Malformed("the body is not UTF-8".into()))?;
    serde_json::from_str::<serde::de::IgnoredAny>(event).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let s = |v: &str| serde_json::Value::String(v.to_string()).to_string();
    Ok(format!(
        "{{\"auth_algo\":{},\"cert_url\":{},\"transmission_id\":{},\"transmission_sig\":{},\"transmission_time\":{},\"webhook_id\":{},\"webhook_event\":{}}}",
        s(&t.algo),
        s(&t.cert_url),
        s(&t.id),
        s(&t.sig),
        s(&t.time),
        s(webhook_id),
        event.trim()
    ))
}

/// Translates a verified event.
///
/// | event | kind |
/// |---|---|
/// | `PAYMENT.PAYOUTS-ITEM.SUCCEEDED` | `Paid` |
/// | `PAYMENT.PAYOUTS-ITEM.FAILED`, `.BLOCKED`, `.CANCELED`, `.DENIED` | `Failed` |
/// | `PAYMENT.PAYOUTS-ITEM.HELD`, `.UNCLAIMED` | `Pending` |
/// | `PAYMENT.PAYOUTS-ITEM.RETURNED`, `.REFUNDED` | `Returned` |
/// | batch events (`PAYMENT.PAYOUTSBATCH.*`) and others | nothing (items settle by their own events or lookup) |
///
/// References: `resource.payout_item_id` (`ProviderReference`), `resource.payout_batch_id`
/// (`ProviderReference`, what `send` returns when the item id was not known yet) and
/// `resource.payout_item.sender_item_id` (`IdempotencyKey`, our key). An item whose
/// `sender_item_id` is not a key of our form was sent by another system: no references, so the
/// service acknowledges it without a change. The event id is PayPal's `WH-...`. Each event comes
/// with the item's `payout_item_id`, by which the adapter confirms it with PayPal.
pub(crate) fn translate(body: &[u8]) -> Result<Vec<(ProviderEvent, Option<String>)>, WebhookError> {
    let event: Event = serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let Some(suffix) = event.event_type.strip_prefix("PAYMENT.PAYOUTS-ITEM.") else {
        return Ok(Vec::new());
    };
    let item: ItemDetail =
        serde_json::from_value(event.resource.clone()).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let reason = |fallback: &str| match item.errors.as_ref() {
        Some(e) => match (&e.name, &e.message) {
            (Some(n), Some(m)) => format!("{n}: {m}"),
            (Some(x), None) | (None, Some(x)) => x.clone(),
            _ => fallback.to_string(),
        },
        None => fallback.to_string(),
    };
    let kind = match suffix {
        "SUCCEEDED" => ProviderEventKind::Paid,
        "FAILED" | "BLOCKED" | "CANCELED" | "DENIED" => ProviderEventKind::Failed {
            reason: reason(&format!("PayPal item {}", suffix.to_ascii_lowercase())),
        },
        "HELD" | "UNCLAIMED" => ProviderEventKind::Pending,
        "RETURNED" => ProviderEventKind::Returned {
            reason: reason("returned to the sender"),
        },
        "REFUNDED" => ProviderEventKind::Returned {
            reason: reason("refunded to the sender"),
        },
        _ => return Ok(Vec::new()),
    };
    // Every item we send carries our key as its `sender_item_id`; an item with another one was
    // sent by another system (the platform's own payouts), and its PayPal ids name nothing of ours.
    let key = item.sender_item_id().filter(|s| !s.is_empty());
    let mut references = Vec::new();
    if key.is_none_or(PayoutAttempt::is_key_form) {
        if let Some(id) = item.payout_item_id.clone().filter(|s| !s.is_empty()) {
            references.push(EventReference::ProviderReference(id));
        }
        if let Some(key) = key {
            references.push(EventReference::IdempotencyKey(key.to_string()));
        }
        if let Some(batch) = item.payout_batch_id.clone().filter(|s| !s.is_empty()) {
            references.push(EventReference::ProviderReference(batch));
        }
    }
    let event = ProviderEvent {
        event_id: event.id,
        references,
        kind,
        occurred_at: event
            .create_time
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc)),
        provider_type: event.event_type,
    };
    Ok(vec![(event, item.payout_item_id.clone().filter(|s| !s.is_empty()))])
}

/// Whether PayPal's answer about an item (`GET /v1/payments/payouts-item/{id}`) says what the event
/// says: the same `sender_item_id`, and a status of the same kind (an item may have moved on since
/// the event was sent, so a later state disagrees too, and the redelivery or the lookup settles it).
pub(crate) fn agrees(event: &ProviderEvent, confirmed: &ItemDetail) -> Result<(), String> {
    let key = event.references.iter().find_map(|r| match r {
        EventReference::IdempotencyKey(k) => Some(k.as_str()),
        _ => None,
    });
    if key.is_some() && confirmed.sender_item_id() != key {
        return Err(format!(
            "the event names sender_item_id {key:?}, PayPal's item has {:?}",
            confirmed.sender_item_id()
        ));
    }
    let status = confirmed.status()?;
    let same = matches!(
        (&event.kind, &status),
        (ProviderEventKind::Paid, ProviderStatus::Paid)
            | (ProviderEventKind::Pending, ProviderStatus::Accepted)
            | (ProviderEventKind::Failed { .. }, ProviderStatus::Failed(_))
            | (ProviderEventKind::Returned { .. }, ProviderStatus::Returned(_))
            | (ProviderEventKind::Reversed { .. }, ProviderStatus::Reversed(_))
    );
    if same {
        Ok(())
    } else {
        Err(format!(
            "{} claims {:?}, PayPal's item {} is {}",
            event.provider_type,
            event.kind,
            confirmed.payout_item_id.as_deref().unwrap_or("?"),
            confirmed.transaction_status.as_deref().unwrap_or("?")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_urls_are_pinned() {
        let ok = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77";
        assert!(check_cert_url(ok).is_ok());
        assert!(check_cert_url("https://api-m.paypal.com/v1/notifications/certs/CERT-1").is_ok());
        for bad in [
            "http://api.paypal.com/v1/notifications/certs/CERT-1",
            "https://evil.example/v1/notifications/certs/CERT-1",
            "https://api.paypal.com.evil.example/v1/notifications/certs/CERT-1",
            "https://api.paypal.com/v1/other/CERT-1",
            "https://api.paypal.com/v1/notifications/certs/",
            "https://api.paypal.com:8443/v1/notifications/certs/CERT-1",
            "https://user:pw@api.paypal.com/v1/notifications/certs/CERT-1",
            "https://api.paypal.com/v1/notifications/certs/CERT-1?x=1",
            "https://api.paypal.com/v1/notifications/certs/../../v1/oauth2/token",
            "not a url",
        ] {
            assert!(check_cert_url(bad).is_err(), "{bad}");
        }
    }

    /// Found by the `paypal_webhook` fuzz target: `Certificate::from_pem` never returned on this.
    #[test]
    fn a_truncated_certificate_is_refused_not_a_hang() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let truncated = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
            let _ = tx.send(parse_certificate(truncated).is_err());
        });
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(10)), Ok(true));
        let key = b"-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n-----END CERTIFICATE-----";
        assert!(matches!(parse_certificate(key), Err(WebhookError::Unavailable(_))));
    }

    #[test]
    fn the_signed_message_uses_the_unsigned_decimal_crc() {
        let t = Transmission {
            id: "69cd13f0-d67a-11e5-baa3-778b53f4ae55".into(),
            time: "2016-02-18T20:01:35Z".into(),
            sig: String::new(),
            cert_url: String::new(),
            algo: "SHA256withRSA".into(),
        };
        // zlib.crc32(b"hello") == 907060870
        assert_eq!(
            t.signed_message("1JE4291016473214C", b"hello"),
            "69cd13f0-d67a-11e5-baa3-778b53f4ae55|2016-02-18T20:01:35Z|1JE4291016473214C|907060870"
        );
    }
}
