//! `check --online` for the ACME CAs.

use super::account::{account, account_dir, stored_account};
use crate::config;
use crate::renewal::Engine;

/// `check --online` for the ACME CAs: the directory answers; the account exists, or would be
/// created (with the EAB given, when the CA requires one); ARI and profiles offered.
pub(crate) async fn online_checks(engine: &Engine, config: &config::Config) -> bool {
    let mut all_ok = true;
    for a in &config.acme {
        let name = a.name.as_str();
        let Some(issuer) = engine.acme.get(name) else {
            continue;
        };
        let directory = a.directory.to_string();
        println!("online checks against ACME CA {name:?} ({directory}):");
        let info = match issuer.directory_info(&directory).await {
            Ok(i) => {
                println!("  ok: the directory answers");
                i
            }
            Err(e) => {
                println!("  ERROR: {e}");
                all_ok = false;
                continue;
            }
        };
        let stored = stored_account(&account_dir(engine, name), &directory);
        if matches!(stored, Ok(Some(_))) {
            match account(engine, name, &directory).await {
                Ok(acc) => println!("  ok: account {} exists", acc.id()),
                Err(e) => {
                    println!("  ERROR: the stored account does not work: {e}");
                    all_ok = false;
                }
            }
        } else if info.eab_required && a.eab.is_none() {
            println!(
                "  ERROR: the CA requires External Account Binding: set eab_kid and eab_hmac_key_file"
            );
            all_ok = false;
        } else {
            println!(
                "  ok: an account will be created at the first renewal{}",
                if a.eab.is_some() {
                    " (with the EAB key given)"
                } else {
                    ""
                }
            );
        }
        println!(
            "  ok: renewal information (ARI) {}; profiles: {}",
            if info.renewal_info {
                "offered"
            } else {
                "not offered (renewals follow renew_before)"
            },
            if info.profiles.is_empty() {
                "none".to_owned()
            } else {
                info.profiles.join(", ")
            }
        );
        if let Some(p) = &a.profile
            && !info.profiles.contains(p)
        {
            println!("  ERROR: profile {p:?} is not offered by the directory");
            all_ok = false;
        }
    }
    all_ok
}
