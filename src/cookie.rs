//! The zero-configuration herd secret (SPEC §4): a cookie file, in the
//! manner of Erlang's `~/.erlang.cookie`.
//!
//! Servers started by the same user, from any folder, one process each or
//! all in one, read the same file and so share a secret without anyone
//! choosing one. The first server to find the file missing creates it with
//! 32 random bytes: written to a private temporary file first, then linked
//! into place, so a file is either absent or whole, and when several servers
//! race exactly one link wins and every server reads the winner's secret.
//! Only its owner may read it: a cookie that others can read is refused, as
//! Erlang and ssh refuse such keys.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the cookie could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CookieError {
    #[error("cannot read the {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot create the {what} file {path}: {source}")]
    Create {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the {what} file {path} is empty")]
    Empty { what: &'static str, path: PathBuf },
    #[error(
        "the {what} file {path} can be read by others (mode {mode:o}); \
         allow its owner only: chmod 600 {path}"
    )]
    Exposed {
        what: &'static str,
        path: PathBuf,
        mode: u32,
    },
    #[error("no HOME to keep the herd secret in: set HERD_SECRET or herd.secret_file")]
    NoHome,
}

/// Where the cookie lives when nothing else is said: `$HOME/.herd.cookie`.
pub fn default_path() -> Result<PathBuf, CookieError> {
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(|home| Path::new(&home).join(".herd.cookie"))
        .ok_or(CookieError::NoHome)
}

/// The secret in `path`, creating the file with a new random secret when
/// it does not exist yet. `what` names the secret in errors ("herd secret",
/// "admin token": both are kept this way).
pub fn read_or_create(path: &Path, what: &'static str) -> Result<Vec<u8>, CookieError> {
    match read(path, what) {
        Err(CookieError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            create(path, what)?;
            read(path, what)
        }
        other => other,
    }
}

/// Reads an existing cookie: owner-only, not empty, white space trimmed.
fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, CookieError> {
    let failed = |source| CookieError::Read {
        what,
        path: path.to_owned(),
        source,
    };
    let mode = fs::metadata(path).map_err(failed)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(CookieError::Exposed {
            what,
            path: path.to_owned(),
            mode: mode & 0o777,
        });
    }
    let bytes = fs::read(path).map_err(failed)?;
    let secret = bytes.trim_ascii();
    if secret.is_empty() {
        return Err(CookieError::Empty {
            what,
            path: path.to_owned(),
        });
    }
    Ok(secret.to_vec())
}

/// Creates the cookie unless another process does so first (then theirs
/// stands: the hard link fails with `AlreadyExists`, and ours is dropped).
fn create(path: &Path, what: &'static str) -> Result<(), CookieError> {
    let failed = |source| CookieError::Create {
        what,
        path: path.to_owned(),
        source,
    };
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(folder).map_err(failed)?;
    }
    let secret: [u8; 32] = rand::random();
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let unique = format!("new.{}.{:08x}", std::process::id(), rand::random::<u32>());
    let temporary = path.with_extension(unique);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(hex.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()
        });
    let linked = written.and_then(|()| match fs::hard_link(&temporary, path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    });
    let _ = fs::remove_file(&temporary);
    linked.map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_read_creates_a_private_cookie_and_later_reads_agree() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("sub").join(".herd.cookie");
        let first = read_or_create(&path, "herd secret").expect("created");
        assert_eq!(first.len(), 64, "32 random bytes as hex");
        let mode = fs::metadata(&path).expect("exists").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            read_or_create(&path, "herd secret").expect("read again"),
            first
        );
        let leftovers = fs::read_dir(path.parent().expect("folder"))
            .expect("list")
            .count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }

    #[test]
    fn racing_creators_all_read_one_secret() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join(".herd.cookie");
        let secrets: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let readers: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| read_or_create(&path, "herd secret").expect("cookie")))
                .collect();
            readers
                .into_iter()
                .map(|r| r.join().expect("joined"))
                .collect()
        });
        assert!(secrets.windows(2).all(|pair| pair[0] == pair[1]));
    }

    #[test]
    fn a_cookie_others_can_read_is_refused() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join(".herd.cookie");
        fs::write(&path, "secret\n").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let error = read_or_create(&path, "herd secret")
            .expect_err("refused")
            .to_string();
        assert!(error.contains("chmod 600"), "{error}");
    }

    #[test]
    fn an_empty_cookie_is_refused() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join(".herd.cookie");
        fs::write(&path, "\n").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(matches!(
            read_or_create(&path, "herd secret"),
            Err(CookieError::Empty { .. })
        ));
    }
}
