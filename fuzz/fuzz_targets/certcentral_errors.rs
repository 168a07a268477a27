//! CertCentral's error envelope, as the client keeps it: whatever the body, at most five
//! entries, never none, each cut to a bounded length with no control characters left.
//! Run with a size limit, e.g. `cargo fuzz run certcentral_errors -- -max_len=1048576`
//! (the client's body limit).
#![no_main]

use certkeeper::certcentral::parse_errors;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&status, body)) = data.split_first() else {
        return;
    };
    let status = http::StatusCode::from_u16(400 + u16::from(status) % 200).expect("4xx or 5xx");
    let body = String::from_utf8_lossy(body);
    let errors = parse_errors(&body, status);
    assert!((1..=5).contains(&errors.len()), "{} entries", errors.len());
    for e in &errors {
        for text in [&e.code, &e.message] {
            // 1,000 characters at most, each control character escaped to at most 6.
            assert!(
                text.chars().count() <= 6 * 1000 + 20,
                "{} chars kept",
                text.len()
            );
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
    }
});
