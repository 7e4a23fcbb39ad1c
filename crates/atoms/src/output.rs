//! Writing an output file without harming what the user has at that path.
//!
//! - `-` is standard output.
//! - A path that is a symbolic link, a device, a pipe (anything but a plain file), or a
//!   plain file with other hard links, is written through in place: the link stays a
//!   link and its target gets the bytes (`/dev/stdout` stays the system's link).
//! - Otherwise (a new file, or a plain file with one link) the bytes go to a temporary
//!   file in the same directory, renamed over the path: a reader sees the old file or
//!   the whole new one, never a part.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Whether `path` means standard output.
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Write `bytes` to `path` as described in the module documentation.
pub fn write_output(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if is_stdout(path) {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        return out.flush();
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() || meta.nlink() > 1 => {
            if meta.file_type().is_dir() {
                return Err(std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory"));
            }
            // Through the link, device or pipe: open for writing (truncating a file at
            // the other end), never replacing the directory entry.
            let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(path)?;
            f.write_all(bytes)?;
            f.flush()
        }
        _ => write_atomic(path, bytes),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let tmp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_stays_a_link_and_its_target_gets_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.xyz");
        std::fs::write(&target, "old").unwrap();
        let link = dir.path().join("link.xyz");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_output(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
    }

    #[test]
    fn a_hard_link_is_written_in_place_and_a_plain_file_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, "old").unwrap();
        std::fs::hard_link(&a, &b).unwrap();
        write_output(&b, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "new");
        let c = dir.path().join("c");
        write_output(&c, b"fresh").unwrap();
        assert_eq!(std::fs::read_to_string(&c).unwrap(), "fresh");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        assert!(write_output(dir.path(), b"x").is_err(), "a directory is refused");
    }
}
