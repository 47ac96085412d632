//! The B2C `SecurityCredential`: the initiator password encrypted with Safaricom's certificate.

use base64::Engine as _;
use rsa::pkcs8::DecodePublicKey;
use rsa::{Pkcs1v15Encrypt, RsaPublicKey};
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode};

use crate::common::{ConfigError, Secret};

/// `base64(RSA PKCS#1 v1.5 encrypt(initiator password))` with the public key of Safaricom's X.509
/// certificate (`cert` in PEM or DER; the sandbox and live certificates differ). The padding is
/// random, so two calls give different credentials; both are valid.
///
/// Errors name `MPESA_CERT_PATH` and never carry the password.
pub fn security_credential(initiator_password: &Secret, cert: &[u8]) -> Result<Secret, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name: "MPESA_CERT_PATH",
        reason,
    };
    let certificate = if cert.trim_ascii_start().starts_with(b"-----BEGIN") {
        // Decoded to DER first: der's streaming PEM reader spins forever on a truncated certificate.
        let (label, der) = x509_cert::der::pem::decode_vec(cert.trim_ascii_start())
            .map_err(|e| invalid(format!("not a PEM X.509 certificate: {e}")))?;
        if label != "CERTIFICATE" {
            return Err(invalid(format!("a PEM {label}, not a certificate")));
        }
        Certificate::from_der(&der).map_err(|e| invalid(format!("not a PEM X.509 certificate: {e}")))?
    } else {
        Certificate::from_der(cert).map_err(|e| invalid(format!("not a DER X.509 certificate: {e}")))?
    };
    let spki = certificate
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| invalid(format!("unreadable public key: {e}")))?;
    let key = RsaPublicKey::from_public_key_der(&spki)
        .map_err(|e| invalid(format!("the certificate's key is not RSA: {e}")))?;
    let encrypted = key
        .encrypt(
            &mut rsa::rand_core::OsRng,
            Pkcs1v15Encrypt,
            initiator_password.expose().as_bytes(),
        )
        .map_err(|_| ConfigError::Invalid {
            name: "MPESA_INITIATOR_PASSWORD",
            reason: "cannot be encrypted with this certificate (too long for its key?)".into(),
        })?;
    Ok(Secret::new(base64::engine::general_purpose::STANDARD.encode(encrypted)))
}

#[cfg(test)]
mod truncated_certificate {
    use super::*;

    /// The PEM path must refuse a truncated certificate, not spin (der's streaming PEM reader did).
    #[test]
    fn a_truncated_certificate_file_is_refused_not_a_hang() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let truncated = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
            let _ = tx.send(security_credential(&Secret::new("pw"), truncated).is_err());
        });
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(10)), Ok(true));
    }
}
