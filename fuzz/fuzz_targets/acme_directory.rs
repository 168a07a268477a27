//! An ACME directory as `check --online` and the ARI refresh read it: any body is either
//! refused with a reason or read, never a panic. Run with the client's body limit, e.g.
//! `cargo fuzz run acme_directory -- -max_len=1048576`.
#![no_main]

use certkeeper::acme::DirectoryInfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = DirectoryInfo::parse(data) {
        assert!(
            info.caa_identities
                .iter()
                .all(|id| *id == id.to_ascii_lowercase())
        );
    }
});
