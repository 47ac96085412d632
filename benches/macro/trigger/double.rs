//! The provider double of the trigger benchmark: Stripe's `POST /v1/transfers` and PayPal's token,
//! batch create and batch read, each answering after [`LATENCY`](super::LATENCY), counting what it
//! saw so the benchmark can check it.

use super::*;

/// The provider double: Stripe transfers and PayPal Payouts (token, create, read), each answered
/// after [`LATENCY`], recording what it was sent.
#[derive(Default)]
pub(super) struct Double {
    pub(super) url: String,
    pub(super) stripe_calls: AtomicUsize,
    pub(super) stripe_in_flight: AtomicUsize,
    pub(super) stripe_peak: AtomicUsize,
    /// Idempotency keys whose header and `metadata[idempotency_key]` agreed.
    pub(super) stripe_keys: Mutex<HashSet<String>>,
    /// Requests without a key, or whose header and metadata disagreed (answered 400).
    pub(super) stripe_bad: AtomicUsize,
    pub(super) paypal_tokens: AtomicUsize,
    pub(super) paypal_creates: AtomicUsize,
    pub(super) paypal_items: AtomicUsize,
    pub(super) paypal_reads: AtomicUsize,
    /// Requests refused: bad token, `PayPal-Request-Id != sender_batch_id`, malformed body.
    pub(super) paypal_bad: AtomicUsize,
    pub(super) paypal_item_keys: Mutex<HashSet<String>>,
    /// Batch id -> its items as `GET /v1/payments/payouts/{id}` lists them.
    pub(super) paypal_batches: Mutex<HashMap<String, Vec<Value>>>,
}

impl Double {
    /// What the Stripe side saw, for the log.
    pub(super) fn stripe_stats(&self) -> String {
        format!(
            "{} calls, peak {} in flight at the double",
            self.stripe_calls.load(Ordering::Relaxed),
            self.stripe_peak.load(Ordering::Relaxed),
        )
    }

    /// What the PayPal side saw, for the log.
    pub(super) fn paypal_stats(&self) -> String {
        format!(
            "{} token, {} create ({} items), {} page reads",
            self.paypal_tokens.load(Ordering::Relaxed),
            self.paypal_creates.load(Ordering::Relaxed),
            self.paypal_items.load(Ordering::Relaxed),
            self.paypal_reads.load(Ordering::Relaxed),
        )
    }

    /// Serves the double on 127.0.0.1 on a free port, on the current runtime.
    pub(super) async fn start() -> Arc<Double> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the provider double");
        let addr = listener.local_addr().expect("the double's address");
        let double = Arc::new(Double {
            url: format!("http://{addr}"),
            ..Double::default()
        });
        let app = Router::new()
            .route("/v1/transfers", post(stripe_transfer))
            .route("/v1/oauth2/token", post(paypal_token))
            .route("/v1/payments/payouts", post(paypal_create))
            .route("/v1/payments/payouts/{id}", get(paypal_batch))
            .with_state(double.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serving the provider double");
        });
        double
    }

    /// Exactly one Stripe call per payout, each with the payout's first-attempt key.
    pub(super) fn check_stripe(&self, ids: &[PayoutId]) {
        let keys = self.stripe_keys.lock().expect("keys");
        assert_eq!(
            self.stripe_bad.load(Ordering::Relaxed),
            0,
            "Stripe requests the double refused"
        );
        assert_eq!(self.stripe_calls.load(Ordering::Relaxed), ids.len(), "Stripe calls");
        assert_eq!(keys.len(), ids.len(), "distinct Stripe idempotency keys");
        for id in ids {
            assert!(keys.contains(&format!("{id}-1")), "no Stripe call carried {id}'s key");
        }
    }

    /// One token, `ceil(n / 1,000)` creates (the bulk trigger sends batches of up to 1,000 items, each
    /// as soon as its attempts are committed; PayPal's own limit is 15,000) carrying each payout's
    /// first-attempt key once, and every created batch read back page by page.
    pub(super) fn check_paypal(&self, ids: &[PayoutId]) {
        let n = ids.len();
        let keys = self.paypal_item_keys.lock().expect("keys");
        assert_eq!(
            self.paypal_bad.load(Ordering::Relaxed),
            0,
            "PayPal requests the double refused"
        );
        assert_eq!(self.paypal_tokens.load(Ordering::Relaxed), 1, "PayPal token calls");
        let creates = n.div_ceil(SERVICE_BATCH_ITEMS.min(MAX_BATCH_ITEMS));
        assert_eq!(
            self.paypal_creates.load(Ordering::Relaxed),
            creates,
            "PayPal create calls"
        );
        assert_eq!(self.paypal_items.load(Ordering::Relaxed), n, "PayPal items sent");
        assert_eq!(keys.len(), n, "distinct sender_item_ids");
        for id in ids {
            assert!(keys.contains(&format!("{id}-1")), "no PayPal item carried {id}'s key");
        }
        let pages: usize = self
            .paypal_batches
            .lock()
            .expect("batches")
            .values()
            .map(|items| items.len().div_ceil(PAYPAL_PAGE))
            .sum();
        assert_eq!(
            self.paypal_reads.load(Ordering::Relaxed),
            pages,
            "PayPal batch page reads"
        );
    }
}

/// Decrements the in-flight count when a request ends.
pub(super) struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `POST /v1/transfers`: a transfer object, like Stripe's.
pub(super) async fn stripe_transfer(State(d): State<Arc<Double>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = d.stripe_in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    let _in_flight = InFlight(&d.stripe_in_flight);
    d.stripe_peak.fetch_max(now, Ordering::Relaxed);
    let call = d.stripe_calls.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(LATENCY).await;
    let form: HashMap<String, String> = form_fields(&body);
    let header_key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    let (Some(key), Some(amount), Some(currency), Some(destination)) = (
        header_key.filter(|k| form.get("metadata[idempotency_key]").map(String::as_str) == Some(*k)),
        form.get("amount").and_then(|a| a.parse::<i64>().ok()),
        form.get("currency"),
        form.get("destination"),
    ) else {
        d.stripe_bad.fetch_add(1, Ordering::Relaxed);
        let error =
            json!({"error": {"type": "invalid_request_error", "message": "bench double: bad transfer request"}});
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    };
    d.stripe_keys.lock().expect("keys").insert(key.to_string());
    let metadata: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(k, v)| {
            let inner = k.strip_prefix("metadata[")?.strip_suffix(']')?;
            Some((inner.to_string(), Value::String(v.clone())))
        })
        .collect();
    Json(json!({
        "id": format!("tr_bench{call:08}"), "object": "transfer", "amount": amount, "amount_reversed": 0,
        "balance_transaction": format!("txn_bench{call:08}"), "created": 1_738_396_800, "currency": currency,
        "destination": destination, "destination_payment": format!("py_bench{call:08}"), "livemode": false,
        "metadata": metadata, "reversed": false, "transfer_group": form.get("transfer_group"),
    }))
    .into_response()
}

/// `POST /v1/oauth2/token`: a client-credentials token.
pub(super) async fn paypal_token(State(d): State<Arc<Double>>, headers: HeaderMap, body: Bytes) -> Response {
    d.paypal_tokens.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(LATENCY).await;
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Basic "));
    if !basic || form_fields(&body).get("grant_type").map(String::as_str) != Some("client_credentials") {
        d.paypal_bad.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    Json(json!({
        "scope": "https://uri.paypal.com/services/payments/payouts", "access_token": PAYPAL_TOKEN,
        "token_type": "Bearer", "app_id": "APP-BENCH", "expires_in": 32_400, "nonce": "2025-02-01T08:00:00Z",
    }))
    .into_response()
}

pub(super) fn paypal_authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {PAYPAL_TOKEN}"))
}

pub(super) fn paypal_refused(d: &Double, status: StatusCode, name: &str) -> Response {
    d.paypal_bad.fetch_add(1, Ordering::Relaxed);
    (
        status,
        Json(json!({"name": name, "message": "bench double refused the request", "debug_id": "bench"})),
    )
        .into_response()
}

/// `POST /v1/payments/payouts`: 201 with the batch header; the items are kept for the reads.
pub(super) async fn paypal_create(State(d): State<Arc<Double>>, headers: HeaderMap, body: Bytes) -> Response {
    let create = d.paypal_creates.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(LATENCY).await;
    if !paypal_authorized(&headers) {
        return paypal_refused(&d, StatusCode::UNAUTHORIZED, "AUTHENTICATION_FAILURE");
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return paypal_refused(&d, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST");
    };
    let sender_batch_id = request["sender_batch_header"]["sender_batch_id"].as_str().unwrap_or("");
    let request_id = headers.get("paypal-request-id").and_then(|v| v.to_str().ok());
    let items = request["items"].as_array();
    let (Some(items), true) = (
        items,
        !sender_batch_id.is_empty() && request_id == Some(sender_batch_id),
    ) else {
        return paypal_refused(&d, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    };
    let batch_id = format!("BENCHBATCH{create:06}");
    let mut listed = Vec::with_capacity(items.len());
    {
        let mut keys = d.paypal_item_keys.lock().expect("keys");
        for (i, item) in items.iter().enumerate() {
            let key = item["sender_item_id"].as_str().unwrap_or("");
            keys.insert(key.to_string());
            listed.push(json!({
                "payout_item_id": format!("ITEM{create:03}X{i:06}"), "transaction_id": format!("TX{create:03}X{i:06}"),
                "transaction_status": "SUCCESS", "payout_batch_id": batch_id,
                "payout_item_fee": {"currency": item["amount"]["currency"], "value": "0.25"},
                "payout_item": {"recipient_type": item["recipient_type"], "amount": item["amount"],
                                "receiver": item["receiver"], "note": item["note"], "sender_item_id": key,
                                "recipient_wallet": "PAYPAL"},
                "time_processed": "2025-02-01T08:00:00Z",
            }));
        }
    }
    d.paypal_items.fetch_add(items.len(), Ordering::Relaxed);
    d.paypal_batches
        .lock()
        .expect("batches")
        .insert(batch_id.clone(), listed);
    let answer = json!({
        "batch_header": {"payout_batch_id": batch_id, "batch_status": "PENDING",
                         "sender_batch_header": request["sender_batch_header"]},
        "links": [{"href": format!("{}/v1/payments/payouts/{batch_id}", d.url), "rel": "self", "method": "GET"}],
    });
    (StatusCode::CREATED, Json(answer)).into_response()
}

/// `GET /v1/payments/payouts/{id}?page=&page_size=`: one page of a created batch.
pub(super) async fn paypal_batch(
    State(d): State<Arc<Double>>,
    Path(batch_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    d.paypal_reads.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(LATENCY).await;
    if !paypal_authorized(&headers) {
        return paypal_refused(&d, StatusCode::UNAUTHORIZED, "AUTHENTICATION_FAILURE");
    }
    let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    let size: usize = query
        .get("page_size")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1000)
        .clamp(1, 1000);
    let batches = d.paypal_batches.lock().expect("batches");
    let Some(items) = batches.get(&batch_id) else {
        drop(batches);
        return paypal_refused(&d, StatusCode::NOT_FOUND, "INVALID_RESOURCE_ID");
    };
    let on_page: Vec<Value> = items.iter().skip((page - 1) * size).take(size).cloned().collect();
    Json(json!({
        "total_items": items.len(), "total_pages": items.len().div_ceil(size),
        "batch_header": {"payout_batch_id": batch_id, "batch_status": "SUCCESS"},
        "items": on_page, "links": [],
    }))
    .into_response()
}

/// `application/x-www-form-urlencoded` fields (`+` is a space, `%XX` a byte).
pub(crate) fn form_fields(body: &[u8]) -> HashMap<String, String> {
    fn hex(b: u8) -> Option<u8> {
        char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
                .then(|| Some(hex(bytes[i + 1])? << 4 | hex(bytes[i + 2])?))
                .flatten();
            match (bytes[i], escaped) {
                (_, Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (b'+', None) => {
                    out.push(b' ');
                    i += 1;
                }
                (b, None) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}
