//! Who owns installed files, and the folders that hold them.

pub use crate::safefs::{Spec, Trust};

/// Who should own a file; `None` keeps the process's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ownership {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Ownership {
    /// The owner and group a file gets, with `mode`.
    pub fn spec(self, mode: u32) -> Spec {
        Spec {
            uid: self.uid,
            gid: self.gid,
            mode,
        }
    }

    /// Who, besides root and certkeeper, may write the folders on the way to these files.
    pub fn trust(self) -> Trust {
        Trust {
            uid: self.uid,
            gid: self.gid,
        }
    }

    /// A folder certkeeper creates for a configured file: owned like the files; a key's
    /// folder is 0750 when a group is configured (the service reads through it), else 0700;
    /// other folders 0755.
    pub fn folder(self, holds_key: bool) -> Spec {
        let mode = match (holds_key, self.gid.is_some()) {
            (true, true) => 0o750,
            (true, false) => 0o700,
            (false, _) => 0o755,
        };
        self.spec(mode)
    }
}

/// Resolves user and group names to ids.
pub fn resolve_owner(user: Option<&str>, group: Option<&str>) -> Result<Ownership, String> {
    let uid = match user {
        Some(u) => Some(match nix::unistd::User::from_name(u) {
            Ok(Some(u)) => u.uid.as_raw(),
            Ok(None) => return Err(format!("no such user {u:?}")),
            Err(e) => return Err(format!("cannot look up user {u:?}: {e}")),
        }),
        None => None,
    };
    let gid = match group {
        Some(g) => Some(match nix::unistd::Group::from_name(g) {
            Ok(Some(g)) => g.gid.as_raw(),
            Ok(None) => return Err(format!("no such group {g:?}")),
            Err(e) => return Err(format!("cannot look up group {g:?}: {e}")),
        }),
        None => None,
    };
    Ok(Ownership { uid, gid })
}
