//! Files only the host's own user may read: the inventory and audit log are a list of
//! every machine on the site, so the database, its log files and the activation journal
//! are mode 0600 and their directories 0700, whatever the process umask.
//!
//! A library must not change the process umask (other threads create files too), so
//! every file is created with an explicit mode and then set to it exactly, which a
//! umask cannot widen; files an older version left are narrowed when the store opens.
//! SQLite creates its `-wal` and `-shm` files itself, but with the mode of the database
//! file (it `fchmod`s them to match), so creating the database file private first is
//! enough for them; they are narrowed at open too, in case an older version left them.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Mode of every file of the store.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the store's directories.
pub const DIR_MODE: u32 = 0o700;

/// Sets `path`'s mode to exactly `mode` (a no-op off Unix).
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// Narrows `path` to `mode` if it exists and is wider; a missing file is fine.
pub fn narrow(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::symlink_metadata(path) {
            // A symbolic link is left alone: narrowing would change its target.
            Ok(m) if m.file_type().is_symlink() => Ok(()),
            Ok(m) if m.permissions().mode() & 0o777 & !mode != 0 => set_mode(path, mode),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// Options that create a file with mode 0600 (before the umask; [`fix`] makes it exact).
pub fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    options
}

/// Makes an open file's mode exactly 0600, whatever the umask did to it at creation
/// and whatever an older version left.
pub fn fix(file: &File) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if file.metadata()?.permissions().mode() & 0o777 != FILE_MODE {
            file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

/// Creates (or truncates) `path` for writing, private.
pub fn create(path: &Path) -> io::Result<File> {
    let file = options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    fix(&file)?;
    Ok(file)
}

/// Creates `dir` and its missing parents; `dir` itself ends with mode 0700 (parents
/// created on the way get 0700 before the umask).
pub fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder.create(dir)?;
    narrow(dir, DIR_MODE)
}

/// Creates the database file at `path` private if it is missing, and narrows it and
/// SQLite's `-wal`, `-shm` and `-journal` beside it when they exist.
pub fn prepare_database(path: &Path) -> io::Result<()> {
    match options().write(true).create_new(true).open(path) {
        Ok(file) => fix(&file)?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => narrow(path, FILE_MODE)?,
        Err(e) => return Err(e),
    }
    narrow_logs(path)
}

/// Narrows SQLite's own files beside the database at `path`.
pub fn narrow_logs(path: &Path) -> io::Result<()> {
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        narrow(Path::new(&name), FILE_MODE)?;
    }
    Ok(())
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn files_an_older_version_left_open_are_narrowed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("v.db");
        let wal = dir.path().join("v.db-wal");
        for path in [&db, &wal] {
            std::fs::write(path, b"").unwrap();
            set_mode(path, 0o666).unwrap();
        }
        // A link beside it is not followed: its target is not the store's.
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"").unwrap();
        set_mode(&outside, 0o644).unwrap();
        std::os::unix::fs::symlink(&outside, dir.path().join("v.db-shm")).unwrap();
        prepare_database(&db).unwrap();
        assert_eq!(
            (mode(&db), mode(&wal), mode(&outside)),
            (0o600, 0o600, 0o644)
        );
        // A new database file and a new directory are private from the start.
        let sub = dir.path().join("a/b");
        create_dir(&sub).unwrap();
        assert_eq!(mode(&sub), 0o700);
        let fresh = sub.join("w.db");
        prepare_database(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o600);
        assert_eq!(mode(&create_path(&sub.join("seg"))), 0o600);
    }

    fn create_path(path: &Path) -> std::path::PathBuf {
        create(path).unwrap();
        path.to_path_buf()
    }
}
