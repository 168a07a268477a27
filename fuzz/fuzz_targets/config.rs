//! The configuration parser: any text either loads or fails with a located error, and what
//! loads has durations and counts the daemon can use.
#![no_main]

use std::path::Path;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match certkeeper::config::Config::parse(Path::new("/etc/certkeeper/certkeeper.toml"), text) {
        Ok(c) => {
            let d = &c.daemon;
            assert!(d.check_interval >= Duration::from_secs(10));
            assert!((1..=256).contains(&d.concurrency));
            assert!(d.poll_interval <= d.poll_max);
            for t in [d.check_interval, d.jitter, d.poll_interval, d.poll_max] {
                assert!(Instant::now().checked_add(t).is_some());
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.starts_with("/etc/certkeeper/certkeeper.toml"), "{shown}");
        }
    }
});
