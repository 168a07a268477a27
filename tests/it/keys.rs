//! The key/certificate match check against keys written by openssl in every common encoding
//! (PKCS#8 and SEC1 EC keys, PKCS#8 and PKCS#1 RSA keys), each with a certificate openssl made.

use certkeeper::crypto::{CertFacts, key_matches};

use crate::common::{openssl, path_str};

#[test]
fn key_match_across_encodings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |f: &str| dir.path().join(f);
    let keys: [(&str, &[&str]); 5] = [
        (
            "ec-pkcs8",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
        ),
        (
            "ec-p384-pkcs8",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
            ],
        ),
        (
            "ec-sec1",
            &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
        ),
        (
            "rsa-pkcs8",
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
        ),
        ("rsa-pkcs1", &["genrsa", "-traditional"]),
    ];
    let mut made = Vec::new();
    for (name, args) in keys {
        let key = p(&format!("{name}.key"));
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-out", path_str(&key)]);
        if name == "rsa-pkcs1" {
            a.push("2048"); // genrsa takes the size last
        }
        assert!(openssl(&a).status.success(), "{name}: keygen");
        let cert = p(&format!("{name}.crt"));
        let out = openssl(&[
            "req",
            "-x509",
            "-key",
            path_str(&key),
            "-subj",
            "/CN=k.test",
            "-days",
            "1",
            "-out",
            path_str(&cert),
        ]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key_pem = std::fs::read_to_string(&key).expect("key");
        let facts =
            CertFacts::from_pem(&std::fs::read_to_string(&cert).expect("cert")).expect("parse");
        made.push((name, key_pem, facts));
    }
    assert!(
        made[2].1.contains("BEGIN EC PRIVATE KEY") && made[4].1.contains("BEGIN RSA PRIVATE KEY"),
        "encodings as intended"
    );
    for (i, (name, key, _)) in made.iter().enumerate() {
        for (j, (other, _, facts)) in made.iter().enumerate() {
            assert_eq!(
                key_matches(key, facts),
                i == j,
                "key {name} vs certificate {other}"
            );
        }
    }
}
