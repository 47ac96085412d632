//! Run with: `cargo run --example mint_token -- --role admin [--sub admin-1] [--doctor dr-wanjiru] [--hours 12]`
//!
//! Prints an HS256 bearer token signed with `NEXTAUTH_SECRET` (or the demo's development secret when unset),
//! for the curl walkthrough in the README.

use payout_server::{Claims, JwtKey, Role};

fn main() {
    let mut role = None;
    let mut sub = None;
    let mut doctor = None;
    let mut hours: i64 = 12;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next();
        match (flag.as_str(), value) {
            ("--role", Some(v)) => role = Some(v),
            ("--sub", Some(v)) => sub = Some(v),
            ("--doctor", Some(v)) => doctor = Some(v),
            ("--hours", Some(v)) => hours = v.parse().unwrap_or_else(|_| usage("--hours takes a whole number")),
            _ => usage(&format!("unexpected argument {flag}")),
        }
    }
    let role = match role.as_deref() {
        Some("admin") => Role::Admin,
        Some("doctor") => Role::Doctor,
        _ => usage("--role admin|doctor is required"),
    };
    if role == Role::Doctor && doctor.is_none() {
        usage("a doctor token needs --doctor <doctor id>");
    }
    let secret = std::env::var("NEXTAUTH_SECRET").unwrap_or_else(|_| payout_server::demo::DEV_SECRET.to_string());
    let claims = Claims {
        sub: sub.unwrap_or_else(|| match role {
            Role::Admin => "admin-1".into(),
            Role::Doctor => format!("user-{}", doctor.clone().unwrap_or_default()),
        }),
        role,
        doctor_id: doctor,
        exp: chrono::Utc::now().timestamp() + hours * 3600,
    };
    println!("{}", JwtKey::new(secret).sign(&claims));
}

fn usage(why: &str) -> ! {
    eprintln!("mint_token: {why}\nusage: mint_token --role admin|doctor [--sub ID] [--doctor DOCTOR_ID] [--hours N]");
    std::process::exit(2)
}
