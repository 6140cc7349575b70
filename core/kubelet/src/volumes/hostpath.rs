//! hostPath volumes: the checks of `hostPath.type`, with Kubernetes' messages.

use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Checks (and for the `...OrCreate` types, creates) `path` per `type_`; the error is the
/// kubelet's message.
pub fn check(path: &Path, type_: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path).ok();
    let ft = meta.as_ref().map(|m| m.file_type());
    let shown = path.display();
    let is = |f: fn(&std::fs::FileType) -> bool| ft.as_ref().is_some_and(f);
    match type_ {
        "" => Ok(()),
        "DirectoryOrCreate" | "Directory" => {
            if type_ == "DirectoryOrCreate" && meta.is_none() {
                std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| e.to_string())?;
                return Ok(());
            }
            if is(std::fs::FileType::is_dir) {
                Ok(())
            } else {
                Err(format!(
                    "hostPath type check failed: {shown} is not a directory"
                ))
            }
        }
        "FileOrCreate" | "File" => {
            if type_ == "FileOrCreate" && meta.is_none() {
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .mode(0o644)
                    .open(path)
                    .map_err(|e| e.to_string())?;
                return Ok(());
            }
            if is(std::fs::FileType::is_file) {
                Ok(())
            } else {
                Err(format!("hostPath type check failed: {shown} is not a file"))
            }
        }
        "Socket" if is(std::fs::FileType::is_socket) => Ok(()),
        "Socket" => Err(format!(
            "hostPath type check failed: {shown} is not a socket file"
        )),
        "CharDevice" if is(std::fs::FileType::is_char_device) => Ok(()),
        "CharDevice" => Err(format!(
            "hostPath type check failed: {shown} is not a character device"
        )),
        "BlockDevice" if is(std::fs::FileType::is_block_device) => Ok(()),
        "BlockDevice" => Err(format!(
            "hostPath type check failed: {shown} is not a block device"
        )),
        other => Err(format!("{other} is an invalid volume type")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn types_are_checked_with_kubernetes_messages() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let file = dir.join("f");
        std::fs::write(&file, "x").unwrap();
        let missing = dir.join("missing");

        assert!(check(&missing, "").is_ok());
        assert!(check(dir, "Directory").is_ok());
        assert_eq!(
            check(&file, "Directory").unwrap_err(),
            format!(
                "hostPath type check failed: {} is not a directory",
                file.display()
            )
        );
        assert!(check(&missing, "Directory").is_err());
        assert!(check(&file, "File").is_ok());
        assert_eq!(
            check(dir, "File").unwrap_err(),
            format!(
                "hostPath type check failed: {} is not a file",
                dir.display()
            )
        );

        let made = dir.join("a/b");
        check(&made, "DirectoryOrCreate").unwrap();
        assert!(made.is_dir());
        let made_file = dir.join("new-file");
        check(&made_file, "FileOrCreate").unwrap();
        assert!(made_file.is_file());
        // An existing directory is not a file, even for FileOrCreate.
        assert!(check(dir, "FileOrCreate").is_err());

        assert!(check(Path::new("/dev/null"), "CharDevice").is_ok());
        assert!(
            check(&file, "CharDevice")
                .unwrap_err()
                .ends_with("is not a character device")
        );
        assert!(
            check(&file, "Socket")
                .unwrap_err()
                .ends_with("is not a socket file")
        );
        assert!(
            check(&file, "BlockDevice")
                .unwrap_err()
                .ends_with("is not a block device")
        );
        assert_eq!(
            check(&file, "Fifo").unwrap_err(),
            "Fifo is an invalid volume type"
        );
    }
}
