//! Can this certificate be installed and validated here? Asked in the process's real
//! environment (a systemd unit's read-only paths, system call filter and capabilities), before
//! each renewal asks the CA anything, at the daemon's start and reload, and by `check`. A
//! certificate that cannot be installed is refused before the CA is asked.
//!
//! What is checked, for every certificate:
//! - the configured owner and group exist;
//! - each target path is a file or a symlink, or absent (not a FIFO, device, socket, folder);
//! - each target folder (or its nearest existing ancestor) is safe to install keys under, and a
//!   file can be created there and given the configured owner and group (a probe file, removed
//!   at once);
//! - `http_root` is a folder where the validation file can be created;
//! - the TSIG key of the `[[dns_update]]` it publishes through can be read and is private;
//! - every hook program exists and is executable.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::{Certificate, DnsPublisher, DnsUpdate};
use crate::install::fs::{Ownership, resolve_owner};
use crate::safefs::{self, Dir};

/// Everything that stops `cert` from being installed or validated here, each an actionable
/// sentence. Empty when all is well. `dns_updates` are the servers whose TSIG keys to check
/// (empty when the caller checks them itself). Blocking: call it off the event loop.
pub fn problems(cert: &Certificate, dns_updates: &[DnsUpdate]) -> Vec<String> {
    let mut out = Vec::new();
    let owner = match resolve_owner(cert.owner.as_deref(), cert.group.as_deref()) {
        Ok(o) => o,
        Err(m) => {
            out.push(m);
            Ownership::default()
        }
    };
    let mut folders = BTreeSet::new();
    for (role, path) in cert.files.all() {
        if let Some(kind) = not_a_file(path) {
            out.push(format!(
                "{} ({}) is {kind}: remove it, or configure another path",
                role.file_name(),
                path.display()
            ));
        }
        if let Some(parent) = path.parent() {
            folders.insert(parent.to_path_buf());
        }
    }
    for folder in &folders {
        if let Some(problem) = safefs::folder_problem(folder, &owner.trust()) {
            out.push(format!(
                "certificate files cannot be installed in {}: {problem}",
                folder.display()
            ));
        } else if let Err(m) = probe(folder, owner) {
            out.push(m);
        }
    }
    if let Some(root) = &cert.validation.http_root {
        if !root.is_dir() {
            out.push(format!("http_root {} is not a folder", root.display()));
        } else if let Err(m) = probe(
            &root.join(".well-known/pki-validation"),
            Ownership::default(),
        ) {
            out.push(format!("http_root: {m}"));
        }
    }
    if let Some(DnsPublisher::Update(name)) = &cert.validation.dns
        && let Some(u) = dns_updates.iter().find(|u| u.name.as_str() == name)
        && let Err(e) = crate::validation::rfc2136::TsigKey::load(&u.tsig_key_file)
    {
        out.push(format!("[[dns_update]] {name:?}: {e}"));
    }
    for (key, argv) in commands(cert) {
        if let Some(program) = argv.first()
            && let Err(m) = executable(program)
        {
            out.push(format!("{key}: {m}"));
        }
    }
    out
}

/// Every folder the certificate writes to: target folders and the validation folder under
/// `http_root`, for `check --drop-in`.
pub fn written_folders(cert: &Certificate) -> Vec<PathBuf> {
    let mut out: BTreeSet<PathBuf> = cert
        .files
        .all()
        .into_iter()
        .filter_map(|(_, p)| p.parent().map(Path::to_path_buf))
        .collect();
    out.extend(cert.validation.http_root.iter().cloned());
    out.into_iter().collect()
}

/// Every command a certificate may run, with its key.
pub fn commands(cert: &Certificate) -> Vec<(&'static str, &[String])> {
    let mut out: Vec<(&'static str, &[String])> = Vec::new();
    for (key, argv) in [
        ("deploy_check", &cert.deploy_check),
        ("reload", &cert.reload),
        ("on_failure", &cert.on_failure),
        ("on_renewed", &cert.on_renewed),
    ] {
        if let Some(a) = argv {
            out.push((key, a.as_slice()));
        }
    }
    if let Some(DnsPublisher::Hooks { publish, cleanup }) = &cert.validation.dns {
        out.push(("dns_publish", publish.as_slice()));
        if let Some(c) = cleanup {
            out.push(("dns_cleanup", c.as_slice()));
        }
    }
    out
}

/// What a target path is, when it is neither absent, a file, nor a symlink to a file or to
/// nothing (a link certkeeper will replace).
fn not_a_file(path: &Path) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    let kind = |t: std::fs::FileType| {
        if t.is_file() || t.is_symlink() {
            None
        } else if t.is_dir() {
            Some("a folder")
        } else if t.is_fifo() {
            Some("a FIFO")
        } else if t.is_socket() {
            Some("a socket")
        } else {
            Some("a device")
        }
    };
    let here = std::fs::symlink_metadata(path).ok()?.file_type();
    if here.is_symlink() {
        let target = std::fs::metadata(path).ok()?.file_type();
        return kind(target).map(|k| format!("a symlink to {k}"));
    }
    kind(here).map(str::to_owned)
}

/// Creates and removes a probe file in `folder` (or, while it does not exist, in its nearest
/// existing ancestor, where certkeeper would create it), owned as `owner` says.
fn probe(folder: &Path, owner: Ownership) -> Result<(), String> {
    let mut at = folder;
    while !at.exists() {
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => return Ok(()),
        }
    }
    let dir = Dir::open(at, &owner.trust()).map_err(|e| explain(at, None, &e))?;
    // Renewals run preflight concurrently, and the probe is created exclusively: a name taken
    // by a concurrent probe is skipped, not an error.
    for n in 0..64 {
        let name = format!(".certkeeper-probe-{}-{n}", std::process::id());
        let made = dir.create_file(&name, b"", &owner.spec(0o600));
        match made {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(explain(at, Some(owner), &e)),
            Ok(()) => {
                let _ = dir.remove_file(&name);
                return Ok(());
            }
        }
    }
    Err(format!(
        "cannot create files in {}: 64 probe names are taken",
        at.display()
    ))
}

/// An actionable sentence for a failed write in `folder`.
fn explain(folder: &Path, owner: Option<Ownership>, e: &io::Error) -> String {
    let f = folder.display();
    match e.raw_os_error() {
        Some(libc::EROFS) => format!(
            "{f} is read-only for certkeeper; under the systemd unit, allow it with a drop-in line `ReadWritePaths={f}` (`systemctl edit certkeeper`; `certkeeper check --drop-in` prints them all)"
        ),
        Some(libc::EPERM) if owner.is_some_and(|o| o.uid.is_some() || o.gid.is_some()) => format!(
            "cannot give files in {f} the configured owner or group: {e} (under systemd, the unit must allow chown: `SystemCallFilter=@chown` and `CapabilityBoundingSet=CAP_CHOWN`, as the shipped unit does)"
        ),
        _ => format!("cannot create files in {f}: {e}"),
    }
}

/// Whether `program` names an executable file (searched in `PATH` when it has no slash).
fn executable(program: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return if is_exec(Path::new(program)) {
            Ok(())
        } else {
            Err(format!("{program} is not an executable file"))
        };
    }
    let path = std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    if path
        .split(':')
        .any(|dir| is_exec(&Path::new(dir).join(program)))
    {
        Ok(())
    } else {
        Err(format!("{program} is not found in PATH"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_only_folder_names_the_drop_in_line() {
        let e = io::Error::from_raw_os_error(libc::EROFS);
        let m = explain(Path::new("/var/www/html"), None, &e);
        assert!(m.contains("`ReadWritePaths=/var/www/html`"), "{m}");
    }

    #[test]
    fn a_forbidden_chown_names_the_unit_settings() {
        let e = io::Error::from_raw_os_error(libc::EPERM);
        let owner = Ownership {
            uid: None,
            gid: Some(4242),
        };
        let m = explain(Path::new("/etc/ssl/x"), Some(owner), &e);
        assert!(m.contains("SystemCallFilter=@chown"), "{m}");
    }

    #[test]
    fn fifos_and_folders_are_not_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fifo = tmp.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        assert_eq!(not_a_file(&fifo).as_deref(), Some("a FIFO"));
        assert_eq!(not_a_file(tmp.path()).as_deref(), Some("a folder"));
        assert_eq!(not_a_file(&tmp.path().join("absent")), None);
        let zero = tmp.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
        assert_eq!(not_a_file(&zero).as_deref(), Some("a symlink to a device"));
        let dangling = tmp.path().join("dangling");
        std::os::unix::fs::symlink(tmp.path().join("gone"), &dangling).expect("symlink");
        assert_eq!(not_a_file(&dangling), None);
    }

    #[test]
    fn the_probe_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().expect("tempdir");
        probe(&tmp.path().join("not/yet"), Ownership::default()).expect("writable");
        assert_eq!(std::fs::read_dir(tmp.path()).expect("ls").count(), 0);
    }

    #[test]
    fn a_probe_name_taken_by_a_concurrent_probe_is_skipped() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let taken = tmp
            .path()
            .join(format!(".certkeeper-probe-{}-0", std::process::id()));
        std::fs::write(&taken, b"").expect("write");
        probe(tmp.path(), Ownership::default()).expect("writable");
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("ls")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(left, [taken]);
    }
}
