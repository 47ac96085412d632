//! Run with: `cargo run --example quickstart`
//!
//! A month of payouts, end to end, on the embedded SQLite default: four sample doctors complete
//! consultations last month; the calculation creates one PENDING payout per doctor at 500 KES per
//! consultation; an admin approves them all and triggers each with the provider the doctor's profile
//! supports. No provider credentials are configured, so every provider is the clearly labelled
//! SIMULATED stand-in (references `sim_...`, "SIMULATED: no money moved" in notes and audit trail).

use std::sync::Arc;

use chrono::{Duration, Utc};
use payouts::prelude::*;
use payouts::source::{StaticConsultations, StaticDirectory};
use payouts::store_sqlx::SqliteStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join("payouts-quickstart.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let store = SqliteStore::connect(&format!("sqlite://{}?mode=rwc", path.display())).await?;
    println!("store: SQLite file {}", path.display());

    let doctors = sample_doctors();
    let last_month = Period::previous_month(Utc::now());
    let consultations = sample_consultations(&doctors, last_month);
    println!(
        "{} completed consultations in {last_month} across {} doctors\n",
        consultations.len(),
        doctors.len()
    );

    let service = PayoutService::builder()
        .store(Arc::new(store))
        .consultations(Arc::new(StaticConsultations::new(consultations)))
        .directory(Arc::new(StaticDirectory::new(doctors.clone())))
        .simulate_missing_providers(true)
        .build()?;

    // Last month (no period given) at the default rate, as the monthly schedule would run it.
    let scheduler = Actor::system("monthly-calculation");
    let policy = CalculationPolicy::default();
    let calculate_last_month = async || service.calculate_period(&scheduler, None, &policy).await;
    let report = calculate_last_month().await?;
    println!(
        "calculated {}: {} payouts, {} in all",
        report.period,
        report.created.len(),
        report.total_created
    );

    let admin = Actor::admin("admin-1");
    for outcome in service.bulk_approve(&admin, &report.created).await {
        outcome.result?;
    }
    for id in &report.created {
        let payout = service.get(&admin, id).await?;
        let doctor = doctors
            .iter()
            .find(|d| d.doctor_id == payout.doctor_id)
            .ok_or("unknown doctor")?;
        let provider = Provider::ALL
            .into_iter()
            .find(|p| doctor.destination(*p).is_some())
            .ok_or("no details")?;
        let paid = service.trigger(&admin, id, provider).await?;
        println!(
            "  {:<12} {:>12}  {:<15} {:<10} {}",
            paid.doctor_id,
            paid.amount_due.to_string(),
            provider.to_string(),
            paid.status.to_string(),
            paid.provider_reference.unwrap_or_default()
        );
    }

    let first = &report.created[0];
    println!("\naudit trail of {first}:");
    for entry in service.audit_trail(&admin, first).await? {
        let to = entry.to.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
        println!(
            "  {:<28} {:<16} -> {:<10} {}",
            entry.actor, entry.action, to, entry.detail
        );
    }

    println!("\nCSV export (the original system's columns):");
    let mut csv = Vec::new();
    service.export_csv(&admin, &PayoutFilter::default(), &mut csv).await?;
    print!("{}", String::from_utf8_lossy(&csv));

    let again = calculate_last_month().await?;
    println!(
        "\nre-running {}: {} created, {} skipped (idempotent)",
        again.period,
        again.created.len(),
        again.skipped.len()
    );
    Ok(())
}

fn sample_doctors() -> Vec<Recipient> {
    let doctor = |id: &str, name: &str| Recipient {
        doctor_id: id.into(),
        name: name.into(),
        email: format!("{id}@clinic.example"),
        ..Default::default()
    };
    vec![
        Recipient {
            mpesa_phone_number: Some("254712345678".into()),
            ..doctor("dr-wanjiru", "Dr. Wanjiru Kamau")
        },
        Recipient {
            stripe_account_id: Some("acct_1Nv0FGQ9RKHgCVdK".into()),
            ..doctor("dr-otieno", "Dr. Otieno Ouma")
        },
        Recipient {
            paypal_payout_email: Some("amina@paypal.example".into()),
            ..doctor("dr-amina", "Dr. Amina Hassan")
        },
        Recipient {
            bank_details: Some(BankAccount {
                account_name: "Dr. Kipchoge Ruto".into(),
                account_number: "1100223344".into(),
                bank_name: Some("KCB".into()),
                bank_code: Some("01".into()),
                ..Default::default()
            }),
            ..doctor("dr-kipchoge", "Dr. Kipchoge Ruto")
        },
    ]
}

fn sample_consultations(doctors: &[Recipient], period: Period) -> Vec<Consultation> {
    let mut out = Vec::new();
    for (i, d) in doctors.iter().enumerate() {
        for n in 0..(3 + 2 * i) {
            out.push(Consultation {
                appointment_id: format!("apt-{}-{n:02}", d.doctor_id),
                doctor_id: d.doctor_id.clone(),
                completed_at: period.starts_at() + Duration::hours(9 + 24 * n as i64),
            });
        }
    }
    out
}
