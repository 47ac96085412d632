//! Every request body validates against PayPal's published OpenAPI schemas.

use super::*;

pub(crate) fn schema_validator(spec_file: &str, schema: &str) -> jsonschema::Validator {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/specs/paypal");
    let path = dir.join(spec_file);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "reading PayPal's spec {}: {e} (the shared/ folder must sit beside the repository)",
            path.display()
        )
    });
    let spec: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let root = json!({"$ref": format!("#/components/schemas/{schema}"), "components": spec["components"]});
    jsonschema::validator_for(&root).unwrap()
}

pub(crate) fn assert_valid(validator: &jsonschema::Validator, body: &serde_json::Value) {
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "request body violates the spec: {errors:#?}\n{body:#}"
    );
}

#[tokio::test]
async fn every_create_body_validates_against_the_payouts_spec() {
    let server = MockServer::start().await;
    mount_token(&server, 32400, 2).await;
    mount(&server, create(), created(BATCH, "k")).await;
    mount_batch(&server, batch("PENDING", vec![])).await;
    let plain = provider(&server);
    let dressed = PaypalProvider::new(
        builder(&server.uri())
            .purpose("SERVICES")
            .email_subject("Your consultations")
            .email_message("Thank you, doctor")
            .build()
            .unwrap(),
    )
    .unwrap();
    plain.send(&instruction()).await.unwrap();
    let mut multiline = instruction_for(7, "g@example.com", "0.01", Currency::GBP);
    multiline.description = "Consultations\nJanuary".into();
    dressed
        .send_batch(&[
            instruction_for(4, "d@example.com", "99.99", Currency::USD),
            instruction_for(5, "e@example.com", "1500", Currency::JPY),
            instruction_for(6, "f@example.com", "12.30", Currency::EUR),
            multiline,
        ])
        .await
        .unwrap();
    let validator = schema_validator("payments_payouts_batch_v1.json", "create_payout_request");
    let sent = creates(&server).await;
    assert_eq!(sent.len(), 2);
    for r in &sent {
        assert_valid(&validator, &json_body(r));
    }
    assert_eq!(json_body(&sent[1])["items"][0]["purpose"], "SERVICES");
    // The validator does catch a bad body.
    let bad = json!({"sender_batch_header": {"sender_batch_id": "x"}, "items": [{"amount": {"value": 10, "currency": "USD"}}]});
    assert!(
        validator.iter_errors(&bad).next().is_some(),
        "a numeric amount must fail the schema"
    );
}
