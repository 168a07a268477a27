//! Domain validation input: TSIG key files (BIND syntax) and DNS names as configured.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = certkeeper::validation::rfc2136::TsigKey::parse(text);
    if certkeeper::config::check_dns_name(text).is_ok() {
        assert!(text.len() <= 255);
        let _ = certkeeper::model::validation_domain(text);
    }
});
