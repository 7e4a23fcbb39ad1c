//! What every runner does in its job directory before the engine starts.

use crate::output::RunError;
use std::path::Path;

/// Remove the outputs an earlier run may have left in `job_dir` (`names` relative to it),
/// so that none of them can be read as this run's. A file that is not there is fine; any
/// other failure (a directory in its place, a read-only file system, no permission) is
/// an error: the engine must not start while an old output could be parsed as its own.
pub fn remove_stale_outputs(job_dir: &Path, names: &[&str]) -> Result<(), RunError> {
    for name in names {
        let path = job_dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(RunError::Io {
                    path: path.display().to_string(),
                    error: format!("cannot remove the output of an earlier run ({e}); it could be read as this run's"),
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_outputs_are_fine_and_present_ones_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        std::fs::write(dir.path().join("out/pw.xml"), "old").unwrap();
        remove_stale_outputs(dir.path(), &["out/pw.xml", "never-written", "out/missing.xml"]).unwrap();
        assert!(!dir.path().join("out/pw.xml").exists());
        assert!(dir.path().join("out").is_dir(), "only the named files are removed");
    }

    #[test]
    fn a_failure_other_than_not_found_is_an_error_naming_the_file() {
        // A directory where the output file should be: `remove_file` fails with EISDIR
        // (a real failure, no mock), and the old "output" stays.
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join("cp2k.out");
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join("inside"), "old").unwrap();
        std::fs::write(dir.path().join("first"), "old").unwrap();
        let err = remove_stale_outputs(dir.path(), &["first", "cp2k.out", "after"]).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, RunError::Io { .. }), "{err:?}");
        assert!(message.contains(&stale.display().to_string()), "{message}");
        assert!(message.contains("cannot remove the output of an earlier run"), "{message}");
        assert!(!dir.path().join("first").exists(), "the outputs before it were removed");
    }
}
