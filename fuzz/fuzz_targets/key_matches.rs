//! Matching a private key file against a certificate: any key text, fast and derived checks,
//! never a panic; a key that is not the certificate's never matches when derived.
#![no_main]

use std::sync::OnceLock;

use certkeeper::crypto::{CertFacts, key_matches, key_matches_verified};
use libfuzzer_sys::fuzz_target;

/// A certificate whose key the fuzzer does not have.
fn cert() -> &'static CertFacts {
    static CERT: OnceLock<CertFacts> = OnceLock::new();
    CERT.get_or_init(|| {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["example.test".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        CertFacts::from_pem(&cert.pem()).expect("facts")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = key_matches(&text, cert());
    assert!(!key_matches_verified(&text, cert()));
    let _ = certkeeper::crypto::key_spki(&text);
});
