//! Files that hold secrets (the token key, the SQLite database and its `-wal` and
//! `-shm` companions): created readable by their owner only, in a directory only the
//! owner may enter, and found out when an existing one is open to others.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` and its missing parents with mode 0700; an existing one is left as it
/// is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates an empty `path` with mode 0600 if it does not exist; true if it did not.
pub fn create_private_file(path: &Path) -> std::io::Result<bool> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// The permission bits of `path` when others than its owner may read or write it
/// (`0o644`, `0o666`); `None` when it is private or cannot be read.
pub fn loose_mode(path: &Path) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_and_folders_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data/deeper");
        create_private_dir(&data).unwrap();
        let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let db = data.join("patgate.db");
        assert!(create_private_file(&db).unwrap());
        assert!(!create_private_file(&db).unwrap());
        assert_eq!(loose_mode(&db), None);
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(loose_mode(&db), Some(0o666));
    }
}
