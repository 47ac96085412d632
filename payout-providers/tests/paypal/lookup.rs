//! PayPal lookups: by item id, by batch id, and never `NotFound` without a reference.

use super::*;

#[tokio::test]
async fn lookup_reads_the_item() {
    let server = with_token().await;
    let cases = [
        ("ITEMP", "SUCCESS", "paid"),
        ("ITEMR", "RETURNED", "returned"),
        ("ITEMU", "UNCLAIMED", "accepted"),
        ("ITEMF", "FAILED", "failed"),
    ];
    for (id, status, _) in cases {
        let route = format!("/v1/payments/payouts-item/{id}");
        let answer = ResponseTemplate::new(200).set_body_json(item(id, "po_testkit-1", status));
        mount(&server, on("GET", Some(&route)), answer).await;
    }
    let p = provider(&server);
    for (id, _, expected) in cases {
        let got = match p.lookup(&lookup(&instruction(), Some(id))).await.unwrap() {
            ProviderStatus::Paid => "paid",
            ProviderStatus::Returned(_) => "returned",
            ProviderStatus::Accepted => "accepted",
            ProviderStatus::Failed(_) => "failed",
            other => panic!("{id}: {other:?}"),
        };
        assert_eq!(got, expected, "{id}");
    }
}

#[tokio::test]
async fn lookup_by_batch_id_finds_the_item_by_our_key() {
    let server = with_token().await;
    mount(
        &server,
        on("GET", Some(&format!("/v1/payments/payouts-item/{BATCH}"))),
        ResponseTemplate::new(404).set_body_json(json!({"name": "RESOURCE_NOT_FOUND",
            "message": "The requested resource was not found", "debug_id": "x"})),
    )
    .await;
    mount_batch(
        &server,
        batch(
            "SUCCESS",
            vec![
                item("OTHER", "po_other-1", "FAILED"),
                item("MINE", "po_testkit-1", "SUCCESS"),
            ],
        ),
    )
    .await;
    assert_eq!(
        provider(&server)
            .lookup(&lookup(&instruction(), Some(BATCH)))
            .await
            .unwrap(),
        ProviderStatus::Paid
    );
}

#[tokio::test]
async fn lookup_of_an_unknown_reference_is_an_error_and_without_one_cannot_tell() {
    let server = with_token().await;
    mount(&server, on("GET", None), ResponseTemplate::new(404)).await;
    let p = provider(&server);
    assert_eq!(
        p.lookup(&lookup(&instruction(), Some("NOPE"))).await.unwrap_err().kind,
        ProviderErrorKind::Final
    );
    let status = p.lookup(&lookup(&instruction(), None)).await.unwrap();
    assert!(
        matches!(&status, ProviderStatus::Undetermined(why) if why.contains("no PayPal reference")),
        "without a reference a lookup cannot tell: {status:?}"
    );
}

#[tokio::test]
async fn passes_the_provider_conformance_check() {
    let server = with_token().await;
    mount(&server, create(), created(BATCH, "po_testkit-1")).await;
    mount_batch(
        &server,
        batch("PROCESSING", vec![item("8AELMXH8UB2P8", "po_testkit-1", "PENDING")]),
    )
    .await;
    mount(
        &server,
        on("GET", Some("/v1/payments/payouts-item/8AELMXH8UB2P8")),
        ResponseTemplate::new(200).set_body_json(item("8AELMXH8UB2P8", "po_testkit-1", "PENDING")),
    )
    .await;
    check_provider(&provider(&server), instruction()).await;
}
