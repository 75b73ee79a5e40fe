//! The reloader's files: reading a bundle from a mounted directory, installing it into the
//! active directory, switching `current`, and removing what no kept revision needs.
//!
//! Layout of the active directory:
//! - `revisions/<revision>/`: the bundle's revision files and its `manifest.json`;
//! - `shared/<name>`: shared files, content-addressed, of every kept revision;
//! - `current`: a symlink to `revisions/<revision>`, replaced atomically.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::bundle::{MANIFEST_FILE, Manifest, sha256_hex};

type IoResult<T> = Result<T, (PathBuf, std::io::Error)>;

fn at<T>(path: &Path, result: std::io::Result<T>) -> IoResult<T> {
    result.map_err(|e| (path.to_owned(), e))
}

/// A complete bundle read from a directory.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub manifest: Manifest,
    pub files: BTreeMap<String, Vec<u8>>,
}

/// The bundle in `dir`: `None` without a manifest, an error when a file it names is missing
/// or differs.
pub fn read_bundle(dir: &Path) -> Result<Option<Bundle>, String> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = match std::fs::read(&manifest_path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("{}: {error}", manifest_path.display())),
    };
    let manifest =
        Manifest::from_json(&text).map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let mut files = BTreeMap::new();
    let names = manifest
        .revision_files
        .keys()
        .chain(manifest.shared_files.keys());
    for name in names {
        if !is_plain_name(name) {
            return Err(format!("{name:?} is not a plain file name"));
        }
        if let Ok(content) = std::fs::read(dir.join(name)) {
            files.insert(name.clone(), content);
        }
    }
    manifest
        .verify(|name| files.get(name).cloned())
        .map_err(|e| e.to_string())?;
    Ok(Some(Bundle { manifest, files }))
}

/// A name that stays inside its directory.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub fn revisions_dir(active: &Path) -> PathBuf {
    active.join("revisions")
}

pub fn shared_dir(active: &Path) -> PathBuf {
    active.join("shared")
}

fn current_link(active: &Path) -> PathBuf {
    active.join("current")
}

/// Writes `content` to `path` through a temporary file and a rename, so readers see the old
/// file or the new one, never half of one.
fn write_atomically(path: &Path, content: &[u8]) -> IoResult<()> {
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    at(&temporary, std::fs::write(&temporary, content))?;
    at(path, std::fs::rename(&temporary, path))
}

/// Installs `bundle` and returns its revision directory. Shared files already present with
/// the right content are kept; a revision directory is built under a temporary name and
/// renamed, so a half-written one never has its final name.
pub fn install(active: &Path, bundle: &Bundle) -> IoResult<PathBuf> {
    let shared = shared_dir(active);
    at(&shared, std::fs::create_dir_all(&shared))?;
    for (name, hash) in &bundle.manifest.shared_files {
        let path = shared.join(name);
        let present = std::fs::read(&path).is_ok_and(|c| &sha256_hex(&c) == hash);
        if !present && let Some(content) = bundle.files.get(name) {
            write_atomically(&path, content)?;
        }
    }
    let revisions = revisions_dir(active);
    at(&revisions, std::fs::create_dir_all(&revisions))?;
    let target = revisions.join(&bundle.manifest.revision);
    if read_bundle_revision_files(&target).is_some_and(|m| m == bundle.manifest) {
        return Ok(target);
    }
    let staging = revisions.join(format!(".staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    at(&staging, std::fs::create_dir_all(&staging))?;
    for name in bundle.manifest.revision_files.keys() {
        if let Some(content) = bundle.files.get(name) {
            let path = staging.join(name);
            at(&path, std::fs::write(&path, content))?;
        }
    }
    let manifest = staging.join(MANIFEST_FILE);
    at(
        &manifest,
        std::fs::write(&manifest, bundle.manifest.to_json()),
    )?;
    let _ = std::fs::remove_dir_all(&target);
    at(&target, std::fs::rename(&staging, &target))?;
    Ok(target)
}

/// The manifest of an installed revision directory whose revision files all match it.
fn read_bundle_revision_files(dir: &Path) -> Option<Manifest> {
    let manifest = Manifest::from_json(&std::fs::read(dir.join(MANIFEST_FILE)).ok()?).ok()?;
    let intact = manifest.revision_files.iter().all(|(name, hash)| {
        std::fs::read(dir.join(name)).is_ok_and(|content| &sha256_hex(&content) == hash)
    });
    intact.then_some(manifest)
}

/// Points `current` at `revision`: a new symlink under a temporary name, renamed over the
/// old one (rename is atomic, so the process finds the old revision or the new one).
pub fn make_current(active: &Path, revision: &str) -> IoResult<()> {
    let link = current_link(active);
    let temporary = active.join(format!(".current-{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let target = Path::new("revisions").join(revision);
    at(&temporary, std::os::unix::fs::symlink(&target, &temporary))?;
    at(&link, std::fs::rename(&temporary, &link))
}

/// The revision `current` points at, if its directory is intact and every shared file it
/// names is in place.
pub fn current_revision(active: &Path) -> Option<String> {
    let target = std::fs::read_link(current_link(active)).ok()?;
    let dir = active.join(target);
    let manifest = read_bundle_revision_files(&dir)?;
    let shared = shared_dir(active);
    let complete = manifest.shared_files.iter().all(|(name, hash)| {
        std::fs::read(shared.join(name)).is_ok_and(|content| &sha256_hex(&content) == hash)
    });
    complete.then_some(manifest.revision)
}

/// The buffer paths an installed revision lists (`layout::BUFFERS_LIST_FILE`); `None` when
/// it lists none (the agent's bundle).
pub fn buffers(revision_dir: &Path) -> Option<BTreeSet<String>> {
    let text = std::fs::read_to_string(revision_dir.join(crate::layout::BUFFERS_LIST_FILE)).ok()?;
    Some(
        text.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

pub fn remove_revision(active: &Path, revision: &str) {
    let _ = std::fs::remove_dir_all(revisions_dir(active).join(revision));
}

/// Keeps the revision just made current and the one before it (the process may still be
/// reading it until its reload completes), and the shared files either names.
pub fn collect_garbage(active: &Path, current: &str, previous: Option<&str>) {
    let keep: BTreeSet<&str> = [Some(current), previous].into_iter().flatten().collect();
    let revisions = revisions_dir(active);
    let mut needed = BTreeSet::new();
    for entry in std::fs::read_dir(&revisions)
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if keep.contains(name.as_str()) {
            if let Ok(text) = std::fs::read(entry.path().join(MANIFEST_FILE))
                && let Ok(manifest) = Manifest::from_json(&text)
            {
                needed.extend(manifest.shared_files.into_keys());
            }
        } else {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    for entry in std::fs::read_dir(shared_dir(active))
        .into_iter()
        .flatten()
        .flatten()
    {
        if !needed.contains(&*entry.file_name().to_string_lossy()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
