//! A validation file under a web root: `<root>/.well-known/pki-validation/fileauth.txt` for
//! CertCentral's `http-token`, `<root>/.well-known/acme-challenge/<token>` for ACME `http-01`.
//!
//! The root is the configured folder (a web user may own it); everything below it is reached
//! and created through descriptors that never follow a symlink, so a link planted at
//! `.well-known` cannot make certkeeper write elsewhere. The file is written atomically, 0644.
//!
//! A file holds one value per line, so certificates sharing a web root (an RSA and an ECDSA
//! certificate for one site, `www` and `api` on one root) share `fileauth.txt`: publishing
//! adds a line, removing takes out only that line and deletes the file with its last line.
//! Each rewrite holds an `flock` on the web root. [`holds`] reads a value back, so a file that
//! a deploy wiped is noticed and published again.
//! Folders are created 0755 and, after cleanup, removed again if they are empty and were
//! created by certkeeper.

use std::io::ErrorKind;
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
            Err(e) if e.kind() == ErrorKind::NotFound => {
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

/// The most a validation file may hold when certkeeper reads it back (a random value is at
/// most 128 bytes, an ACME key authorization about 90).
const FILE_LIMIT: u64 = 64 * 1024;

/// The values a validation file holds: one per line, blank lines and `\r` ignored.
fn values(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| l.trim_end_matches('\r').to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// What `dir/file` holds now: nothing if it is missing, or is not a regular file (a symlink or
/// a FIFO is replaced, never read through).
fn current(dir: &Dir, file: &str) -> Result<Vec<String>, Error> {
    match dir.read_file(file, FILE_LIMIT) {
        Ok((bytes, _)) => Ok(values(&bytes)),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidInput) => {
            Ok(Vec::new())
        }
        Err(e) => Err(Error::File(format!(
            "cannot read {}: {e}",
            dir.path().join(file).display()
        ))),
    }
}

fn write(dir: &Dir, file: &str, values: &[String]) -> Result<(), Error> {
    dir.write_atomic(file, values.join("\n").as_bytes(), &Spec::mode(0o644))
        .map_err(|e| {
            Error::File(format!(
                "cannot write {}: {e}",
                dir.path().join(file).display()
            ))
        })
}

/// Locks the web root for one read-modify-write of a validation file (released when `dir` is
/// dropped): two certificates on one root never lose each other's lines.
fn lock(dir: &Dir, root: &Path) -> Result<(), Error> {
    dir.lock()
        .map_err(|e| Error::File(format!("cannot lock http_root {}: {e}", root.display())))
}

/// The folder holding `rel`'s file, if every folder on the way exists.
fn folder(root: Dir, dirs: &[&str]) -> Result<Option<Dir>, Error> {
    let mut dir = root;
    for d in dirs {
        match dir.child(d) {
            Ok(child) => dir = child,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::File(e.to_string())),
        }
    }
    Ok(Some(dir))
}

/// Adds `content` as a line of `root/rel` (0644, atomically), creating missing folders. Lines
/// already there (another certificate's value on the same web root) stay; adding a value the
/// file already holds changes nothing.
pub fn publish(root: &Path, rel: &str, content: &str) -> Result<(), Error> {
    let (dirs, file) = parts(rel)?;
    // A descriptor of its own holds the lock until the end.
    let held = open_root(root)?;
    lock(&held, root)?;
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
    let mut values = current(&dir, file)?;
    if !values.iter().any(|v| v == content) {
        values.push(content.to_owned());
        write(&dir, file, &values)?;
    }
    Ok(())
}

/// Whether `root/rel` still holds `content` as one of its lines (a deploy may have wiped the
/// folder, another program may have rewritten the file).
pub fn holds(root: &Path, rel: &str, content: &str) -> Result<bool, Error> {
    let (dirs, file) = parts(rel)?;
    let Some(dir) = folder(open_root(root)?, &dirs)? else {
        return Ok(false);
    };
    Ok(current(&dir, file)?.iter().any(|v| v == content))
}

/// Takes the line `content` out of `root/rel`, deleting the file once no line is left (lines
/// of other certificates stay), then removes each folder of `created` (deepest first) if it is
/// empty. What is already gone is fine.
pub fn remove(root: &Path, rel: &str, content: &str, created: &[String]) -> Result<(), Error> {
    let (dirs, file) = parts(rel)?;
    let root_dir = match Dir::open_path(root) {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::File(format!("cannot open http_root: {e}"))),
    };
    lock(&root_dir, root)?;
    // The lock lasts while `chain` (which holds the root) lives.
    let mut chain = vec![root_dir];
    for d in &dirs {
        let Some(last) = chain.last() else { break };
        match last.child(d) {
            Ok(child) => chain.push(child),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::File(e.to_string())),
        }
    }
    if chain.len() == dirs.len() + 1
        && let Some(last) = chain.last()
    {
        let values = current(last, file)?;
        let rest: Vec<String> = values.iter().filter(|v| *v != content).cloned().collect();
        if rest.is_empty() {
            last.remove_file(file).map_err(|e| {
                Error::File(format!(
                    "cannot remove {}: {e}",
                    last.path().join(file).display()
                ))
            })?;
            last.sync().ok();
        } else if rest.len() < values.len() {
            write(last, file, &rest)?;
        }
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
        remove(root.path(), REL, "value123", &missing).expect("remove");
        assert!(!root.path().join(".well-known").exists());
        // Removing again is fine.
        remove(root.path(), REL, "value123", &missing).expect("again");
    }

    #[test]
    fn folders_that_existed_stay() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join(".well-known/other")).expect("mkdir");
        let missing = missing_dirs(root.path(), REL).expect("plan");
        assert_eq!(missing, [".well-known/pki-validation"]);
        publish(root.path(), REL, "v").expect("publish");
        remove(root.path(), REL, "v", &missing).expect("remove");
        assert!(root.path().join(".well-known/other").is_dir());
        assert!(!root.path().join(".well-known/pki-validation").exists());
    }

    /// Two certificates on one web root: each adds its line and takes out only its own; the
    /// file goes with the last line. A line nobody published (the operator's) stays.
    #[test]
    fn values_share_the_file() {
        let root = tempfile::tempdir().expect("tempdir");
        let missing = missing_dirs(root.path(), REL).expect("plan");
        let read = || std::fs::read_to_string(root.path().join(REL)).expect("read");
        publish(root.path(), REL, "rsa-value").expect("publish");
        publish(root.path(), REL, "ecdsa-value").expect("publish");
        publish(root.path(), REL, "rsa-value").expect("again");
        assert_eq!(read(), "rsa-value\necdsa-value");
        assert!(holds(root.path(), REL, "rsa-value").expect("holds"));
        remove(root.path(), REL, "rsa-value", &missing).expect("remove");
        assert_eq!(read(), "ecdsa-value");
        assert!(!holds(root.path(), REL, "rsa-value").expect("holds"));
        remove(root.path(), REL, "rsa-value", &missing).expect("again");
        assert_eq!(read(), "ecdsa-value", "a value not there removes nothing");
        std::fs::write(root.path().join(REL), "ecdsa-value\r\noperator\n").expect("edit");
        remove(root.path(), REL, "ecdsa-value", &missing).expect("remove");
        assert_eq!(read(), "operator");
        remove(root.path(), REL, "operator", &missing).expect("remove");
        assert!(!root.path().join(".well-known").exists());
        assert!(!holds(root.path(), REL, "operator").expect("holds"));
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
