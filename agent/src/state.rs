//! The state directory: file checkpoints and compiled plugins, the files
//! weir trusts on its next start. Everything weir reads or writes there
//! goes through this module.
//!
//! A compiled plugin is native code that wasmtime loads without checking
//! it, so whoever can write the state directory can run code as the agent's
//! user (often root). The rules, applied to every directory and file:
//!
//! - a directory is used only when it is owned by the agent's effective
//!   user and not writable by group or others; otherwise weir refuses it
//!   with an error naming the path (the agent does not start);
//! - directories weir creates are mode 0700 and files 0600, whatever the
//!   umask;
//! - every directory and file below the state directory is opened relative
//!   to a descriptor of its already checked parent, without following
//!   symbolic links (`O_NOFOLLOW`), so nothing can be swapped in between
//!   the check and the use; the state directory itself may be a symbolic
//!   link only when the link belongs to the agent's user or root (systemd's
//!   `DynamicUser=` makes `/var/lib/weir` such a link);
//! - a file is trusted only when it is a regular file with one link, owned
//!   by the agent's user and not writable by group or others; one that fails
//!   is reported to the caller, which discards it (a cached plugin is then
//!   compiled again, a checkpoint ignored);
//! - a file is written to a new temporary file (`O_CREAT|O_EXCL|O_NOFOLLOW`,
//!   a name no one can predict ahead), synced, then renamed over the old one.
//!
//! Written by hand on `rustix`'s `*at` calls: `cap-std` resolves paths
//! safely too, but neither it nor `std` checks owners and modes.
use rustix::fs::{AtFlags, Mode, OFlags};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A checked directory of the state directory, held open.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    fd: OwnedFd,
}

/// Why a file of the state directory was not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untrusted(pub String);

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Group or others may write.
const GROUP_OTHER_WRITE: u32 = 0o022;

/// Why `meta` (of a directory at `path`) must not be trusted, if it must not.
fn dir_problem(path: &Path, meta: &std::fs::Metadata) -> Option<String> {
    let me = euid();
    if !meta.is_dir() {
        return Some(format!("{} is not a directory", path.display()));
    }
    if meta.uid() != me {
        return Some(format!(
            "{} is owned by uid {}, not by the agent's user (uid {me}): another user could plant files there that weir would trust (compiled plugins run as native code); use a directory owned by uid {me}, mode 0700",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & GROUP_OTHER_WRITE != 0 {
        return Some(format!(
            "{} is writable by group or others (mode {:04o}): they could plant files there that weir would trust (compiled plugins run as native code); run `chmod 0700 {}`",
            path.display(),
            meta.mode() & 0o7777,
            path.display()
        ));
    }
    None
}

/// Why `path` (a config directory, a config or plugin file: what weir
/// trusts like its own code) could be changed by someone other than the
/// agent's user and root, if it could. Reported as a warning: an `exec`
/// source written there runs as the agent's user.
pub fn others_may_write(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let me = euid();
    if meta.uid() != me && meta.uid() != 0 {
        return Some(format!(
            "{} is owned by uid {}: that user can change the plugins and commands weir runs as uid {me}",
            path.display(),
            meta.uid()
        ));
    }
    // The sticky bit (/tmp) still lets others add files to a directory.
    if meta.mode() & GROUP_OTHER_WRITE != 0 {
        return Some(format!(
            "{} is writable by group or others (mode {:04o}): they can change the plugins and commands weir runs as uid {me}",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    None
}

/// Links followed at most in a state directory's chain (Linux's own limit
/// is 40).
const MAX_LINK_HOPS: usize = 40;

/// Check every link of the chain `path` starts (a symbolic link): each must
/// be owned by the agent's user or root, since whoever owns a link can point
/// it anywhere, including at a directory of root's that the agent would then
/// fill with its state. Errors name the link and its owner.
fn link_chain_trusted(path: &Path) -> Result<(), String> {
    let me = euid();
    let mut cur = path.to_path_buf();
    for _ in 0..MAX_LINK_HOPS {
        let meta = match std::fs::symlink_metadata(&cur) {
            Ok(m) => m,
            // The end of the chain is missing: opening it says so.
            Err(_) => return Ok(()),
        };
        if !meta.file_type().is_symlink() {
            return Ok(());
        }
        if meta.uid() != me && meta.uid() != 0 {
            return Err(format!(
                "state directory {}: the symbolic link {} is owned by uid {}, neither the agent's user (uid {me}) nor root: it could be pointed anywhere",
                path.display(),
                cur.display(),
                meta.uid()
            ));
        }
        let target = std::fs::read_link(&cur)
            .map_err(|e| format!("state directory {}: {}: {e}", path.display(), cur.display()))?;
        cur = match cur.parent() {
            Some(parent) if target.is_relative() => parent.join(target),
            _ => target,
        };
    }
    Err(format!(
        "state directory {}: more than {MAX_LINK_HOPS} symbolic links",
        path.display()
    ))
}

fn single_component(name: &str) -> std::io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("\"{name}\" is not a file name"),
        ));
    }
    Ok(())
}

impl StateDir {
    /// Open the state directory at `path`, creating it (and missing
    /// parents) with mode 0700 when absent, and check it.
    ///
    /// Errors name the path and say what to change.
    pub fn open(path: &Path) -> Result<StateDir, String> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let mut created = false;
        let link = match std::fs::symlink_metadata(&path) {
            Ok(m) => m.file_type().is_symlink().then_some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&path)
                    .map_err(|e| {
                        format!("cannot create state directory {}: {e}", path.display())
                    })?;
                created = true;
                None
            }
            Err(e) => return Err(format!("state directory {}: {e}", path.display())),
        };
        let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        if link.is_some() {
            link_chain_trusted(&path)?;
        } else {
            // Not a link when looked at: it must not become one.
            flags |= OFlags::NOFOLLOW;
        }
        let fd = rustix::fs::open(&path, flags, Mode::empty())
            .map_err(|e| format!("cannot open state directory {}: {e}", path.display()))?;
        if created {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700))
                .map_err(|e| format!("state directory {}: {e}", path.display()))?;
        }
        let dir = StateDir { path, fd };
        dir.check()?;
        Ok(dir)
    }

    /// Open the state directory at `path` only if it exists (for tools
    /// that look without changing anything), and check it.
    pub fn open_existing(path: &Path) -> Result<Option<StateDir>, String> {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            _ => Self::open(path).map(Some),
        }
    }

    /// The names of the entries whose name ends with `suffix`, sorted
    /// (each is checked when read).
    pub fn names(&self, suffix: &str) -> std::io::Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(&self.path)?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(suffix) && !n.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }

    fn check(&self) -> Result<(), String> {
        let meta = self
            .file()
            .and_then(|f| f.metadata())
            .map_err(|e| format!("state directory {}: {e}", self.path.display()))?;
        match dir_problem(&self.path, &meta) {
            Some(p) => Err(format!("refusing the state directory: {p}")),
            None => Ok(()),
        }
    }

    /// A `File` on a duplicate of the descriptor (for `metadata`).
    fn file(&self) -> std::io::Result<File> {
        Ok(File::from(self.fd.try_clone()?))
    }

    /// Take the state directory for this process: an exclusive lock on
    /// its file `lock` (created 0600, never through a link), held while
    /// the returned `File` lives, with this process's id written in it.
    /// Two agents on one state directory would overwrite each other's
    /// checkpoints and read positions, so the second one is refused with
    /// an error naming the directory and the first one's pid.
    pub fn lock(&self) -> Result<File, String> {
        let path = self.path.join("lock");
        let fd = rustix::fs::openat(
            &self.fd,
            "lock",
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let mut f = File::from(fd);
        match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = std::io::Read::read_to_string(&mut f, &mut pid);
                let pid = pid.trim();
                let who = if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                };
                return Err(format!(
                    "another weir{who} is running with the state directory {}; give each agent its own --state-dir",
                    self.path.display()
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", path.display()));
            }
        }
        let written = f
            .set_len(0)
            .and_then(|()| f.write_all(format!("{}\n", std::process::id()).as_bytes()));
        if let Err(e) = written {
            return Err(format!("cannot write {}: {e}", path.display()));
        }
        Ok(f)
    }

    /// Where it is, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory `name` inside, created 0700 when absent, checked like
    /// the state directory (a symbolic link is refused).
    pub fn subdir(&self, name: &str) -> Result<StateDir, String> {
        let path = self.path.join(name);
        single_component(name).map_err(|e| e.to_string())?;
        let created = match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => true,
            Err(rustix::io::Errno::EXIST) => false,
            Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
        };
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => format!(
                "refusing the state directory: {} is not a directory (a symbolic link or a file)",
                path.display()
            ),
            e => format!("cannot open {}: {e}", path.display()),
        })?;
        if created {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let dir = StateDir { path, fd };
        dir.check()?;
        Ok(dir)
    }

    /// The contents of file `name`, if it exists and may be trusted (see
    /// the module's rules); `Ok(None)` when there is no such file. Files
    /// larger than `max_bytes` are not trusted either.
    pub fn read(&self, name: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, Untrusted> {
        single_component(name).map_err(|e| Untrusted(e.to_string()))?;
        let fd = match rustix::fs::openat(
            &self.fd,
            name,
            // NONBLOCK: a FIFO planted in its place must not hang the open.
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(rustix::io::Errno::LOOP) => {
                return Err(Untrusted("it is a symbolic link".into()));
            }
            Err(e) => return Err(Untrusted(format!("cannot open it: {e}"))),
        };
        let mut f = File::from(fd);
        let meta = f
            .metadata()
            .map_err(|e| Untrusted(format!("cannot stat it: {e}")))?;
        let me = euid();
        if !meta.file_type().is_file() {
            return Err(Untrusted("it is not a regular file".into()));
        }
        if meta.uid() != me {
            return Err(Untrusted(format!(
                "it is owned by uid {}, not by the agent's user (uid {me})",
                meta.uid()
            )));
        }
        if meta.mode() & GROUP_OTHER_WRITE != 0 {
            return Err(Untrusted(format!(
                "it is writable by group or others (mode {:04o})",
                meta.mode() & 0o7777
            )));
        }
        if meta.nlink() != 1 {
            return Err(Untrusted(format!(
                "it has {} hard links (another name could change it)",
                meta.nlink()
            )));
        }
        if meta.len() > max_bytes {
            return Err(Untrusted(format!(
                "it is larger than {max_bytes} bytes ({})",
                meta.len()
            )));
        }
        let mut data = Vec::with_capacity(meta.len() as usize);
        (&mut f)
            .take(max_bytes + 1)
            .read_to_end(&mut data)
            .map_err(|e| Untrusted(format!("cannot read it: {e}")))?;
        if data.len() as u64 > max_bytes {
            return Err(Untrusted(format!("it is larger than {max_bytes} bytes")));
        }
        Ok(Some(data))
    }

    /// Remove file `name` (a file that failed the checks, or a symbolic
    /// link: the link itself goes, never its target). Absent is fine.
    pub fn discard(&self, name: &str) -> std::io::Result<()> {
        single_component(name)?;
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Replace file `name` with `data`, atomically: a new temporary file
    /// (mode 0600, created exclusively, never through a link), synced, then
    /// renamed over `name`, and the directory synced.
    pub fn write(&self, name: &str, data: &[u8]) -> std::io::Result<()> {
        single_component(name)?;
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let mut attempt = 0;
        let (tmp, fd) = loop {
            // Unpredictable enough that no one plants it ahead; O_EXCL makes
            // a planted one fail the create instead of being followed.
            let nonce = std::hash::BuildHasher::hash_one(
                &std::collections::hash_map::RandomState::new(),
                SEQ.fetch_add(1, Ordering::Relaxed),
            );
            let tmp = format!(".{name}.{}.{nonce:016x}.tmp", std::process::id());
            match rustix::fs::openat(
                &self.fd,
                &tmp,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => break (tmp, fd),
                Err(rustix::io::Errno::EXIST) if attempt < 8 => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        };
        let result = (|| -> std::io::Result<()> {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o600))?;
            let mut f = File::from(fd);
            f.write_all(data)?;
            f.sync_data()?;
            rustix::fs::renameat(&self.fd, &tmp, &self.fd, name)?;
            // The rename itself is durable only once the directory is
            // synced: without it a power loss can leave the old file, or
            // (on some file systems) none.
            rustix::fs::fsync(&self.fd)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = rustix::fs::unlinkat(&self.fd, &tmp, AtFlags::empty());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).expect("stat").mode() & 0o7777
    }

    #[test]
    fn creates_private_dirs_and_files_whatever_the_umask() {
        let t = tempfile::tempdir().expect("tempdir");
        // SAFETY: umask only changes this process's creation mask; the test
        // restores it.
        let old = unsafe { libc::umask(0) };
        let d = StateDir::open(&t.path().join("a/state")).expect("open");
        let sub = d.subdir("checkpoints").expect("subdir");
        sub.write("web.json", b"{}").expect("write");
        unsafe { libc::umask(old) };
        assert_eq!(mode(&t.path().join("a/state")), 0o700);
        assert_eq!(mode(&t.path().join("a/state/checkpoints")), 0o700);
        assert_eq!(mode(&t.path().join("a/state/checkpoints/web.json")), 0o600);
        assert_eq!(
            sub.read("web.json", 10).expect("trusted"),
            Some(b"{}".to_vec())
        );
        assert_eq!(sub.read("absent.json", 10), Ok(None));
        // Nothing left behind but the file.
        let names: Vec<_> = std::fs::read_dir(t.path().join("a/state/checkpoints"))
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("web.json")]);
    }

    #[test]
    fn every_link_of_a_chain_must_be_the_agents_or_roots() {
        let t = tempfile::tempdir().expect("tempdir");
        let real = t.path().join("real");
        std::fs::create_dir(&real).expect("mkdir");
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        // A chain of the agent's own links (one relative) is followed.
        std::os::unix::fs::symlink("real", t.path().join("mine2")).expect("symlink");
        std::os::unix::fs::symlink(t.path().join("mine2"), t.path().join("mine1"))
            .expect("symlink");
        StateDir::open(&t.path().join("mine1")).expect("own chain");
        // A link of another user anywhere in the chain is refused, even
        // behind one of the agent's own.
        let foreign = t.path().join("theirs");
        std::os::unix::fs::symlink(&real, &foreign).expect("symlink");
        std::os::unix::fs::symlink(&foreign, t.path().join("front")).expect("symlink");
        if rustix::fs::chownat(
            rustix::fs::CWD,
            &foreign,
            Some(rustix::fs::Uid::from_raw(65534)),
            None,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .is_ok()
        {
            let e = StateDir::open(&t.path().join("front")).expect_err("foreign link");
            assert!(
                e.contains("uid 65534") && e.contains(&*foreign.to_string_lossy()),
                "{e}"
            );
        } else {
            eprintln!("not root: the foreign-link half of this test needs chown");
        }
        // A loop ends with an error, not a hang.
        std::os::unix::fs::symlink(t.path().join("loop2"), t.path().join("loop1"))
            .expect("symlink");
        std::os::unix::fs::symlink(t.path().join("loop1"), t.path().join("loop2"))
            .expect("symlink");
        let e = StateDir::open(&t.path().join("loop1")).expect_err("loop");
        assert!(e.contains("symbolic links") || e.contains("loop"), "{e}");
    }

    #[test]
    fn refuses_writable_dirs_and_symlinked_subdirs() {
        let t = tempfile::tempdir().expect("tempdir");
        let p = t.path().join("state");
        std::fs::create_dir(&p).expect("mkdir");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = StateDir::open(&p).expect_err("world-writable");
        assert!(
            e.contains("writable by group or others") && e.contains(&*p.to_string_lossy()),
            "{e}"
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let d = StateDir::open(&p).expect("0755 is fine");
        std::os::unix::fs::symlink(t.path(), p.join("plugins")).expect("symlink");
        let e = d.subdir("plugins").expect_err("symlink");
        assert!(e.contains("not a directory"), "{e}");
        std::fs::create_dir(p.join("checkpoints")).expect("mkdir");
        std::fs::set_permissions(
            p.join("checkpoints"),
            std::fs::Permissions::from_mode(0o770),
        )
        .expect("chmod");
        let e = d.subdir("checkpoints").expect_err("group-writable");
        assert!(e.contains("writable by group"), "{e}");
    }

    #[test]
    fn untrusted_files_are_reported_and_links_never_followed() {
        let t = tempfile::tempdir().expect("tempdir");
        let d = StateDir::open(&t.path().join("state")).expect("open");
        let victim = t.path().join("victim");
        std::fs::write(&victim, "precious").expect("write");
        let root = t.path().join("state");
        std::os::unix::fs::symlink(&victim, root.join("x.json")).expect("symlink");
        assert!(d
            .read("x.json", 100)
            .expect_err("link")
            .0
            .contains("symbolic link"));
        // Writing replaces the link; the target is untouched.
        d.write("x.json", b"new").expect("write");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious");
        assert_eq!(d.read("x.json", 100).expect("ok"), Some(b"new".to_vec()));
        // Writable by others, hard-linked, too large.
        std::fs::write(root.join("w"), "x").expect("write");
        std::fs::set_permissions(root.join("w"), std::fs::Permissions::from_mode(0o666))
            .expect("chmod");
        assert!(d.read("w", 100).expect_err("w").0.contains("writable"));
        std::fs::hard_link(root.join("x.json"), root.join("y.json")).expect("link");
        assert!(d
            .read("y.json", 100)
            .expect_err("nlink")
            .0
            .contains("hard links"));
        d.discard("y.json").expect("discard");
        assert!(d.read("x.json", 2).expect_err("size").0.contains("larger"));
        d.discard("w").expect("discard");
        d.discard("w").expect("absent is fine");
        assert!(d.write("../escape", b"x").is_err());
    }
}
