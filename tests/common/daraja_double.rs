//! An M-Pesa (Daraja) API double for the tests that run the real M-Pesa adapter over HTTP: OAuth
//! (`GET /oauth/v1/generate`) and B2C payment requests (`POST /mpesa/b2c/v3/paymentrequest`), each
//! acknowledged with a `ConversationID`, served by axum on 127.0.0.1 on the caller's runtime; and
//! the signed result callback the adapter authenticates with `MPESA_WEBHOOK_SECRET` (an HMAC-SHA256
//! of the raw body in `x-mpesa-signature`).
//!
//! Include it with `#[path = "common/daraja_double.rs"] mod daraja_double;` (it is not part of
//! `common`, so tests without an M-Pesa double do not build it).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use hmac::Mac;
use serde_json::{Value, json};

/// Every B2C request acknowledged: `OriginatorConversationID` (our key) -> `ConversationID`.
#[derive(Default)]
pub struct Daraja {
    acknowledged: Mutex<HashMap<String, String>>,
}

impl Daraja {
    /// The conversation acknowledged for `key`, if any.
    pub fn conversation(&self, key: &str) -> Option<String> {
        self.acknowledged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// How many distinct keys were acknowledged (a repeated key is one).
    pub fn acknowledged(&self) -> usize {
        self.acknowledged.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

async fn oauth() -> axum::Json<Value> {
    axum::Json(json!({"access_token": "daraja-double-token", "expires_in": "3599"}))
}

async fn payment_request(State(daraja): State<Arc<Daraja>>, axum::Json(body): axum::Json<Value>) -> axum::Json<Value> {
    let key = body["OriginatorConversationID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut acknowledged = daraja.acknowledged.lock().unwrap_or_else(|e| e.into_inner());
    let n = acknowledged.len();
    // The same key again (an adapter retry) gets the same conversation, as Daraja answers a duplicate.
    let conversation = acknowledged
        .entry(key.clone())
        .or_insert_with(|| format!("AG_20250131_dbl{n:08}"))
        .clone();
    axum::Json(json!({"ConversationID": conversation, "OriginatorConversationID": key,
        "ResponseCode": "0", "ResponseDescription": "Accept the service request successfully."}))
}

/// Serves `daraja` on a free port of 127.0.0.1; its address.
pub async fn serve(daraja: Arc<Daraja>) -> SocketAddr {
    let app = Router::new()
        .route("/oauth/v1/generate", get(oauth))
        .route("/mpesa/b2c/v3/paymentrequest", post(payment_request))
        .with_state(daraja);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the Daraja double");
    let addr = listener.local_addr().expect("the Daraja double's address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("the Daraja double stopped");
    });
    addr
}

/// The HMAC-SHA256 of `parts`, in hex.
pub fn hmac_hex(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// A B2C result callback: paid (`ResultCode` 0) `amount` whole KES, naming our `key` and the
/// `conversation`; `n` numbers its transaction.
pub fn paid_result(key: &str, conversation: &str, amount: u64, n: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({"Result": {
        "ResultType": 0, "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "OriginatorConversationID": key, "ConversationID": conversation,
        "TransactionID": format!("TDB{n:07}"),
        "ResultParameters": {"ResultParameter": [
            {"Key": "TransactionAmount", "Value": amount},
            {"Key": "TransactionReceipt", "Value": format!("TDB{n:07}")},
            {"Key": "B2CRecipientIsRegisteredCustomer", "Value": "Y"}]},
        "ReferenceData": {"ReferenceItem": {"Key": "QueueTimeoutURL", "Value": "https://internal/timeout"}}}}))
    .expect("JSON")
}
