//! Writes a volume's files so that a reader sees either the old set or the new one, never a
//! mix, the way the kubelet's atomic writer does for secret and configMap volumes.
//!
//! The files live in a timestamped directory `..<YYYY_MM_DD_hh_mm_ss.nanos>`; `..data` is a
//! symlink to it, and each top-level entry the user sees is a symlink through `..data`. An
//! update writes a new timestamped directory, points `..data_tmp` at it and renames that over
//! `..data` (one atomic rename), then drops the old directory and stale entries.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Component, Path, PathBuf};

/// The symlink to the current timestamped directory.
pub const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";

/// One file of a payload: its bytes and mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// The files of a volume by relative path (`a`, `dir/b`).
pub type Payload = BTreeMap<String, FileProjection>;

/// Checks a payload path as the API does for `items[].path`: relative, no `..` element, not
/// starting with `..`.
pub fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("a path must not be empty".into());
    }
    if path.starts_with("..") {
        return Err(format!("path {path:?} must not start with '..'"));
    }
    let p = Path::new(path);
    if p.is_absolute() {
        return Err(format!("path {path:?} must be relative"));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("path {path:?} must not contain '..'"));
    }
    Ok(())
}

/// Writes `payload` into `dir`; returns whether anything changed. Unchanged contents leave the
/// directory alone.
pub fn write(dir: &Path, payload: &Payload) -> io::Result<bool> {
    for path in payload.keys() {
        validate_path(path).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    }
    std::fs::create_dir_all(dir)?;
    let data_link = dir.join(DATA_DIR);
    let old_ts = std::fs::read_link(&data_link).ok();
    if let Some(old) = &old_ts
        && same_contents(&dir.join(old), payload)?
    {
        return Ok(false);
    }
    let ts_name = timestamped_name();
    let ts_dir = dir.join(&ts_name);
    std::fs::create_dir(&ts_dir)?;
    std::fs::set_permissions(&ts_dir, std::fs::Permissions::from_mode(0o755))?;
    for (path, file) in payload {
        let target = ts_dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, &file.data)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(file.mode & 0o7777))?;
    }
    let tmp_link = dir.join(DATA_DIR_TMP);
    match std::fs::remove_file(&tmp_link) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    symlink(&ts_name, &tmp_link)?;
    std::fs::rename(&tmp_link, &data_link)?;
    // The user-visible names: one symlink per top-level entry.
    let wanted: BTreeSet<String> = payload
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_string))
        .collect();
    for name in &wanted {
        let link = dir.join(name);
        let target = PathBuf::from(DATA_DIR).join(name);
        if std::fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
            let _ = std::fs::remove_file(&link);
            symlink(&target, &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") {
            if name != DATA_DIR && name != ts_name && entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(entry.path())?;
            }
            continue;
        }
        if !wanted.contains(&name) && entry.file_type()?.is_symlink() {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(true)
}

/// `..2026_11_25_12_34_56.123456789`, as the kubelet names them (with nanoseconds in place of
/// its random suffix).
fn timestamped_name() -> String {
    let now = jiff::Timestamp::now();
    format!(
        "..{}.{:09}",
        now.strftime("%Y_%m_%d_%H_%M_%S"),
        now.subsec_nanosecond()
    )
}

fn same_contents(ts_dir: &Path, payload: &Payload) -> io::Result<bool> {
    let mut on_disk = Vec::new();
    collect_files(ts_dir, ts_dir, &mut on_disk)?;
    if on_disk.len() != payload.len() {
        return Ok(false);
    }
    for rel in on_disk {
        let Some(want) = payload.get(&rel) else {
            return Ok(false);
        };
        let path = ts_dir.join(&rel);
        let meta = std::fs::metadata(&path)?;
        if meta.permissions().mode() & 0o7777 != want.mode & 0o7777
            || std::fs::read(&path)? != want.data
        {
            return Ok(false);
        }
    }
    Ok(true)
}

fn collect_files(base: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(base, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(base) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn writes_through_a_data_symlink_and_swaps_it_on_change() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        let mut payload = Payload::new();
        payload.insert("a".into(), file("one", 0o644));
        payload.insert("sub/b".into(), file("two", 0o400));
        assert!(write(&dir, &payload).unwrap());
        let first = std::fs::read_link(dir.join(DATA_DIR)).unwrap();
        assert!(first.to_string_lossy().starts_with(".."), "{first:?}");
        assert_eq!(
            std::fs::read_link(dir.join("a")).unwrap(),
            Path::new("..data/a")
        );
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "one");
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "two");
        let mode = std::fs::metadata(dir.join("sub/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);

        // Unchanged: nothing is rewritten.
        assert!(!write(&dir, &payload).unwrap());
        assert_eq!(std::fs::read_link(dir.join(DATA_DIR)).unwrap(), first);

        // Changed: a new timestamped dir; the old one and the dropped entry go.
        payload.remove("sub/b");
        payload.insert("a".into(), file("uno", 0o644));
        assert!(write(&dir, &payload).unwrap());
        let second = std::fs::read_link(dir.join(DATA_DIR)).unwrap();
        assert_ne!(first, second);
        assert!(!dir.join(&first).exists());
        assert!(!dir.join("sub").exists());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "uno");
        assert!(!dir.join(DATA_DIR_TMP).exists());
    }

    #[test]
    fn bad_paths_are_refused() {
        for bad in ["", "/abs", "../up", "a/../../b", "..hidden"] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
        assert!(validate_path("a/b.txt").is_ok());
        let tmp = tempfile::tempdir().unwrap();
        let mut payload = Payload::new();
        payload.insert("../x".into(), file("x", 0o644));
        assert!(write(tmp.path(), &payload).is_err());
    }
}
