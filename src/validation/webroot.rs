//! A validation file under a web root: `<root>/.well-known/pki-validation/fileauth.txt` for
//! CertCentral's `http-token`, `<root>/.well-known/acme-challenge/<token>` for ACME `http-01`.
//!
//! The root is the configured folder (a web user may own it); everything below it is reached
//! and created through descriptors that never follow a symlink, so a link planted at
//! `.well-known` cannot make certkeeper write elsewhere. The file is written atomically, 0644.
//! Folders are created 0755 and, after cleanup, removed again if they are empty and were
//! created by certkeeper.

use std::path::Path;

use super::Error;
use crate::safefs::{Dir, Spec};

fn parts(rel: &str) -> Result<(Vec<&str>, &str), Error> {
    let mut parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    let bad = parts.iter().any(|p| *p == "." || *p == "..");
    match parts.pop() {
        Some(file) if !bad => Ok((parts, file)),
        _ => Err(Error::File(format!("invalid validation file path {rel:?}"))),
    }
}

fn open_root(root: &Path) -> Result<Dir, Error> {
    Dir::open_path(root).map_err(|e| Error::File(format!("cannot open http_root: {e}")))
}

/// The folders of `rel` that do not exist yet under `root` (relative paths, outermost first):
/// what [`publish`] will create, recorded before it does.
pub fn missing_dirs(root: &Path, rel: &str) -> Result<Vec<String>, Error> {
    let (dirs, _) = parts(rel)?;
    let mut dir = open_root(root)?;
    let mut missing = Vec::new();
    let mut path = String::new();
    for (i, d) in dirs.iter().enumerate() {
        path = if path.is_empty() {
            (*d).to_owned()
        } else {
            format!("{path}/{d}")
        };
        match dir.child(d) {
            Ok(child) => dir = child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing.push(path.clone());
                for rest in &dirs[i + 1..] {
                    path = format!("{path}/{rest}");
                    missing.push(path.clone());
                }
                break;
            }
            Err(e) => return Err(Error::File(e.to_string())),
        }
    }
    Ok(missing)
}

/// Writes `content` at `root/rel` (0644, atomically), creating missing folders.
pub fn publish(root: &Path, rel: &str, content: &str) -> Result<(), Error> {
    let (dirs, file) = parts(rel)?;
    let mut dir = open_root(root)?;
    for d in dirs {
        let (child, _) = dir.child_or_create(d, &Spec::mode(0o755)).map_err(|e| {
            Error::File(format!(
                "cannot create {}: {e}",
                dir.path().join(d).display()
            ))
        })?;
        dir = child;
    }
    dir.write_atomic(file, content.as_bytes(), &Spec::mode(0o644))
        .map_err(|e| {
            Error::File(format!(
                "cannot write {}: {e}",
                dir.path().join(file).display()
            ))
        })
}

/// Removes `root/rel`, then each folder of `created` (deepest first) if it is empty. What is
/// already gone is fine.
pub fn remove(root: &Path, rel: &str, created: &[String]) -> Result<(), Error> {
    let (dirs, file) = parts(rel)?;
    let root_dir = match Dir::open_path(root) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::File(format!("cannot open http_root: {e}"))),
    };
    let mut chain = vec![root_dir];
    for d in &dirs {
        let Some(last) = chain.last() else { break };
        match last.child(d) {
            Ok(child) => chain.push(child),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::File(e.to_string())),
        }
    }
    if chain.len() == dirs.len() + 1
        && let Some(last) = chain.last()
    {
        last.remove_file(file).map_err(|e| {
            Error::File(format!(
                "cannot remove {}: {e}",
                last.path().join(file).display()
            ))
        })?;
        last.sync().ok();
    }
    // Folders certkeeper created, deepest first, while empty.
    for depth in (0..dirs.len()).rev() {
        let rel_dir = dirs[..=depth].join("/");
        if !created.contains(&rel_dir) {
            continue;
        }
        if let Some(parent) = chain.get(depth) {
            parent.remove_empty_dir(dirs[depth]).map_err(|e| {
                Error::File(format!(
                    "cannot remove {}: {e}",
                    parent.path().join(dirs[depth]).display()
                ))
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const REL: &str = ".well-known/pki-validation/fileauth.txt";

    #[test]
    fn publish_and_remove_leave_nothing_behind() {
        let root = tempfile::tempdir().expect("tempdir");
        let missing = missing_dirs(root.path(), REL).expect("plan");
        assert_eq!(missing, [".well-known", ".well-known/pki-validation"]);
        publish(root.path(), REL, "value123").expect("publish");
        let f = root.path().join(REL);
        assert_eq!(std::fs::read_to_string(&f).expect("read"), "value123");
        assert_eq!(
            std::fs::metadata(&f).expect("meta").permissions().mode() & 0o777,
            0o644
        );
        remove(root.path(), REL, &missing).expect("remove");
        assert!(!root.path().join(".well-known").exists());
        // Removing again is fine.
        remove(root.path(), REL, &missing).expect("again");
    }

    #[test]
    fn folders_that_existed_stay() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join(".well-known/other")).expect("mkdir");
        let missing = missing_dirs(root.path(), REL).expect("plan");
        assert_eq!(missing, [".well-known/pki-validation"]);
        publish(root.path(), REL, "v").expect("publish");
        remove(root.path(), REL, &missing).expect("remove");
        assert!(root.path().join(".well-known/other").is_dir());
        assert!(!root.path().join(".well-known/pki-validation").exists());
    }

    #[test]
    fn a_planted_symlink_is_not_followed() {
        let root = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(elsewhere.path(), root.path().join(".well-known"))
            .expect("plant");
        let e = publish(root.path(), REL, "v").expect_err("refused");
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(
            std::fs::read_dir(elsewhere.path())
                .expect("read")
                .next()
                .is_none()
        );
    }
}
