//! The zero-configuration herd secret (SPEC §4): a cookie file, in the
//! manner of Erlang's `~/.erlang.cookie`; and the admin token's file, kept
//! the same way.
//!
//! Servers started by the same user, from any folder, one process each or
//! all in one, read the same file and so share a secret without anyone
//! choosing one. The first server to find the file missing creates it with
//! 32 random bytes: written to a private temporary file first, then linked
//! into place, so a file is either absent or whole, and when several servers
//! race exactly one link wins and every server reads the winner's secret.
//!
//! A secret or token file, made here or by an operator, is opened once and
//! checked through that very handle before a byte is read from it: a regular
//! file (a FIFO would block a start forever, a device is no secret), owned by
//! the user the server runs as, with no group or other permission bits
//! (0400 and 0600 are fine), as Erlang and ssh refuse such keys. Symbolic
//! links are followed (Kubernetes mounts a Secret as links into a folder of
//! its own); the file they lead to is what is checked. The handle is opened
//! non-blocking, so opening a FIFO returns at once and is then refused.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The longest secret or token file read: anything longer is no secret of
/// ours (and a file that never ends is not read to its end).
const MAX_FILE_BYTES: u64 = 4096;

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
    #[error("the {what} file {path} is longer than {MAX_FILE_BYTES} bytes: not a secret")]
    TooLong { what: &'static str, path: PathBuf },
    #[error("the {what} file {path} is {kind}, not a regular file")]
    NotAFile {
        what: &'static str,
        path: PathBuf,
        kind: &'static str,
    },
    #[error(
        "the {what} file {path} belongs to user {owner}, not to the user this runs as \
         ({me}): chown it, or give the secret another way"
    )]
    NotOwned {
        what: &'static str,
        path: PathBuf,
        owner: u32,
        me: u32,
    },
    #[error(
        "the {what} file {path} can be read by others (mode {mode:o}); \
         allow its owner only: chmod 600 {path}"
    )]
    Exposed {
        what: &'static str,
        path: PathBuf,
        mode: u32,
    },
    #[error("no HOME to keep the {what} in: set HOME, or give the {what} another way")]
    NoHome { what: &'static str },
}

/// A file named `name` in the user's home folder.
fn in_home(name: &str, what: &'static str) -> Result<PathBuf, CookieError> {
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(|home| Path::new(&home).join(name))
        .ok_or(CookieError::NoHome { what })
}

/// Where the cookie lives when nothing else is said: `$HOME/.herd.cookie`.
pub fn default_path() -> Result<PathBuf, CookieError> {
    in_home(".herd.cookie", "herd secret")
}

/// Where the admin token lives when nothing else is said:
/// `$HOME/.herd.admin-token` (the servers create it, herdctl reads it).
pub fn default_admin_token_path() -> Result<PathBuf, CookieError> {
    in_home(".herd.admin-token", "admin token")
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

/// Reads an existing secret file: opened once, checked through the handle
/// ([`check`]), read from the same handle; not empty, white space trimmed.
pub fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, CookieError> {
    let failed = |source| CookieError::Read {
        what,
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(failed)?;
    let meta = file.metadata().map_err(failed)?;
    check(&meta, rustix::process::geteuid().as_raw(), what, path)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(CookieError::TooLong {
            what,
            path: path.to_owned(),
        });
    }
    let secret = bytes.trim_ascii();
    if secret.is_empty() {
        return Err(CookieError::Empty {
            what,
            path: path.to_owned(),
        });
    }
    Ok(secret.to_vec())
}

/// What a secret file must be: a regular file, owned by `me` (the
/// effective user), with no group or other permission bits.
fn check(meta: &fs::Metadata, me: u32, what: &'static str, path: &Path) -> Result<(), CookieError> {
    let kind = meta.file_type();
    let not = |kind| CookieError::NotAFile {
        what,
        path: path.to_owned(),
        kind,
    };
    if !kind.is_file() {
        return Err(not(if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_block_device() || kind.is_char_device() {
            "a device"
        } else {
            "not a file"
        }));
    }
    check_owner_and_mode(meta.uid(), meta.mode(), me, what, path)
}

/// The owner and permission half of [`check`], on plain numbers (so that
/// another user's file is tested without being another user).
fn check_owner_and_mode(
    owner: u32,
    mode: u32,
    me: u32,
    what: &'static str,
    path: &Path,
) -> Result<(), CookieError> {
    if owner != me {
        return Err(CookieError::NotOwned {
            what,
            path: path.to_owned(),
            owner,
            me,
        });
    }
    if mode & 0o077 != 0 {
        return Err(CookieError::Exposed {
            what,
            path: path.to_owned(),
            mode: mode & 0o777,
        });
    }
    Ok(())
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
    use std::os::unix::fs::PermissionsExt;

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

    #[test]
    fn a_fifo_a_folder_and_another_users_file_are_refused_at_once() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        // No writer: a blocking open would wait forever.
        assert!(matches!(
            read_or_create(&fifo, "herd secret"),
            Err(CookieError::NotAFile { kind: "a FIFO", .. })
        ));
        assert!(matches!(
            read_or_create(dir.path(), "herd secret"),
            Err(CookieError::NotAFile {
                kind: "a directory",
                ..
            })
        ));
        let path = Path::new("secret");
        let other = check_owner_and_mode(1234, 0o100600, 1000, "herd secret", path);
        assert!(other
            .expect_err("refused")
            .to_string()
            .contains("belongs to user 1234, not to the user this runs as (1000)"),);
        assert!(check_owner_and_mode(1000, 0o100400, 1000, "herd secret", path).is_ok());
        assert!(check_owner_and_mode(1000, 0o100640, 1000, "herd secret", path).is_err());
        assert!(check_owner_and_mode(1000, 0o100604, 1000, "herd secret", path).is_err());
    }

    #[test]
    fn a_link_to_an_owner_only_file_is_followed() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let target = dir.path().join("..data-secret");
        fs::write(&target, "a secret of twenty bytes\n").expect("write");
        fs::set_permissions(&target, fs::Permissions::from_mode(0o400)).expect("chmod");
        let link = dir.path().join("herd-secret");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert_eq!(
            read_or_create(&link, "herd secret").expect("read through the link"),
            b"a secret of twenty bytes"
        );
    }

    #[test]
    fn a_file_too_long_to_be_a_secret_is_refused() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("big");
        fs::write(&path, vec![b'a'; 5000]).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(matches!(
            read(&path, "herd secret"),
            Err(CookieError::TooLong { .. })
        ));
    }
}
