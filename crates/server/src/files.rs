//! The files the CLI writes a secret to (a bootstrap key, an account key).

use std::{io::Write, path::Path};

use crate::CliError;

/// Writes a secret to a new file only its owner can read (mode 0600 from its creation).
/// A symbolic link at `path` is refused, never followed (it could point at a file another
/// user reads, or one the secret must not overwrite); an existing regular file is replaced
/// by a new one rather than rewritten, so its old mode and other hard links keep nothing.
/// The new file is created with `O_CREAT | O_EXCL`, which follows no link planted meanwhile.
pub(crate) fn write_secret_file(path: &Path, secret: &str) -> Result<(), CliError> {
    let shown = path.display();
    let failed = |e: std::io::Error| CliError::Other(format!("cannot write {shown}: {e}"));
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(CliError::Other(format!(
                "refusing to write a secret to {shown}: it is a symbolic link (remove it, or name the file itself)"
            )));
        }
        Ok(meta) if !meta.is_file() => {
            return Err(CliError::Other(format!("refusing to write a secret to {shown}: not a regular file")));
        }
        Ok(_) => std::fs::remove_file(path).map_err(failed)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(e)),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(failed)?;
    writeln!(file, "{secret}").map_err(failed)
}
