//! Config fixtures: every file under tests/fixtures/config/valid loads; every file under
//! invalid/ fails with the message on its first line (`# expect: …`), which includes the
//! line and column.

use std::path::PathBuf;

use certkeeper::config::Config;

fn dir(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(kind)
}

fn files(kind: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir(kind))
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn valid_configs_load() {
    let valid = files("valid");
    assert!(valid.len() >= 3);
    for p in valid {
        if let Err(e) = Config::load(&p) {
            panic!("{e}");
        }
    }
}

#[test]
fn invalid_configs_fail_with_their_message() {
    let invalid = files("invalid");
    assert!(invalid.len() >= 10);
    for p in invalid {
        let text = std::fs::read_to_string(&p).expect("read");
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks '# expect: '", p.display()));
        match Config::load(&p) {
            Ok(_) => panic!("{} loaded but should fail with {expect:?}", p.display()),
            Err(e) => {
                let got = e.to_string();
                let name = p.file_name().expect("name").to_string_lossy().into_owned();
                assert!(got.starts_with(&p.display().to_string()), "{name}: {got}");
                assert!(
                    got.contains(expect),
                    "{name}: expected {expect:?} in {got:?}"
                );
            }
        }
    }
}

/// The defaults SPEC.md documents.
#[test]
fn defaults() {
    let p = dir("valid").join("minimal.toml");
    let c = Config::load(&p).expect("minimal");
    assert_eq!(
        c.certcentral.url.as_str(),
        "https://www.digicert.com/services/v2"
    );
    assert_eq!(c.daemon.state_dir, PathBuf::from("/var/lib/certkeeper"));
    assert_eq!(c.daemon.concurrency, 4);
    let cert = &c.certificates[0];
    assert_eq!((cert.key_mode, cert.cert_mode), (0o600, 0o644));
    assert_eq!(cert.method(), certkeeper::model::Method::Reissue);
    assert!(!cert.skip_approval);
    assert_eq!(cert.renew_before, certkeeper::config::RenewBefore::DEFAULT);
    assert!(
        cert.files.cert.is_absolute(),
        "relative paths resolve against the config's folder"
    );
}

/// Example configs shipped in the README and packaging/ parse.
#[test]
fn shipped_examples_parse() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let mut blocks = 0;
    let mut rest = readme.as_str();
    while let Some(start) = rest.find("```toml\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").expect("closed block");
        let block = &body[..end];
        if block.contains("[[certificate]]") {
            Config::parse(&root.join("README.md"), block)
                .unwrap_or_else(|e| panic!("README example: {e}"));
            blocks += 1;
        }
        rest = &body[end..];
    }
    assert!(blocks >= 1, "the README has a full example config");
    let packaged = root.join("packaging/certkeeper.toml");
    Config::load(&packaged).unwrap_or_else(|e| panic!("{e}"));
}
