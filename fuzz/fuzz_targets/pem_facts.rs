//! PEM and X.509 from disk and from CAs: certificate facts, chains, and the pre-install gate.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = certkeeper::crypto::CertFacts::from_pem(&text);
    let _ = certkeeper::crypto::CertFacts::from_der(data);
    let _ = certkeeper::crypto::parse_certificates(&text);
    let names = ["example.test".to_owned(), "*.example.test".to_owned()];
    let _ = certkeeper::crypto::check_issued(&text, b"not a key", &names, 1_800_000_000);
});
