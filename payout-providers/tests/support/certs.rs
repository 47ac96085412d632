//! For the M-Pesa and PayPal tests: an RSA key and self-signed certificates
//! made in the test (nothing is read from disk or the network).

use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rsa::RsaPrivateKey;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::EncodePem;
use x509_cert::der::pem::LineEnding;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};

/// One RSA key per test binary (1024 bits: generating keys in a debug build is slow, and this key
/// protects nothing).
pub fn test_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).expect("RSA key"))
}

/// A second, unrelated key (for "signed by someone else" cases).
pub fn other_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).expect("RSA key"))
}

/// A self-signed PEM certificate for `key` with subject `CN={cn}`, valid between the two unix times.
pub fn self_signed_pem(key: &RsaPrivateKey, cn: &str, not_before: i64, not_after: i64) -> String {
    let at = |t: i64| Time::try_from(UNIX_EPOCH + Duration::from_secs(t as u64)).expect("time");
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone());
    let spki = SubjectPublicKeyInfoOwned::from_key(key.to_public_key()).expect("spki");
    let validity = Validity {
        not_before: at(not_before),
        not_after: at(not_after),
    };
    let subject = Name::from_str(&format!("CN={cn},O=Payouts Test")).expect("name");
    let serial = SerialNumber::from(1u32);
    let builder = CertificateBuilder::new(Profile::Root, serial, validity, subject, spki, &signer).expect("builder");
    let cert = builder.build::<rsa::pkcs1v15::Signature>().expect("certificate");
    cert.to_pem(LineEnding::LF).expect("pem")
}

/// Now, as unix seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
