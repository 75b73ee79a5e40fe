//! A config bundle: every file one data-plane process reads, as the operator writes it into
//! Secrets and as the reloader in the pod checks and installs it (docs/architecture.md,
//! "Config reload").
//!
//! A bundle travels through the kubelet's Secret sync, which updates each Secret of a
//! projected volume from its own cache: a pod can see a new slot next to an old main file.
//! The manifest names every file with the SHA-256 of its content, so the reloader acts only
//! on a bundle whose files all match it, and the revision (a hash of the manifest) names
//! the whole bundle in acknowledgements, status and logs.
//!
//! Two placements:
//! - [`Placement::Revision`]: the entry file and what it includes by relative path, or what
//!   the process is given on its command line. Installed into a directory of its own per
//!   revision.
//! - [`Placement::Shared`]: files the configuration names by absolute path (credentials,
//!   verifier scripts). Their names carry their content hash
//!   ([`content_addressed_name`]), so they are installed side by side in one shared
//!   directory, where the running revision and the one being checked both find theirs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Name of the manifest inside a bundle's Secrets (and its mounted directory).
pub const MANIFEST_FILE: &str = "manifest.json";

/// Where the reloader installs a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Placement {
    Revision,
    Shared,
}

/// One file of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleFile {
    /// A valid Secret key: `[-._a-zA-Z0-9]+`, unique in the bundle.
    pub name: String,
    pub content: Vec<u8>,
    pub placement: Placement,
}

/// The manifest: what a complete bundle holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Hash over every entry below; names the bundle.
    pub revision: String,
    /// [`Placement::Revision`] files: name → SHA-256 (hex) of the content.
    pub revision_files: BTreeMap<String, String>,
    /// [`Placement::Shared`] files: name → SHA-256 (hex) of the content.
    pub shared_files: BTreeMap<String, String>,
    /// Which publication of the candidate this is: the operator counts up whenever the
    /// candidate's revision changes, so a revision published again (a Flow deleted and added
    /// back) is told apart from its earlier publication, which a pod may have seen before
    /// the one in between. Not part of the revision. 0: not numbered.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sequence: u64,
}

fn is_zero(number: &u64) -> bool {
    *number == 0
}

/// A file the manifest names that is missing or differs: the bundle is not complete yet
/// (or was tampered with) and must not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Incomplete {
    #[error("{0} is missing")]
    Missing(String),
    #[error("{0} does not match the manifest")]
    Differs(String),
    #[error("the manifest's revision does not match its files")]
    Revision,
}

pub fn sha256_hex(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content))
}

/// `<first 12 hex digits of the content's SHA-256>-<name>`: a file name that changes
/// whenever the content does, keeping the extension.
pub fn content_addressed_name(name: &str, content: &[u8]) -> String {
    let hash = sha256_hex(content);
    format!("{}-{name}", &hash[..12])
}

fn revision_of(
    revision_files: &BTreeMap<String, String>,
    shared_files: &BTreeMap<String, String>,
) -> String {
    let mut hasher = Sha256::new();
    for (placement, files) in [("revision", revision_files), ("shared", shared_files)] {
        for (name, hash) in files {
            // Length-prefixed, so no two different manifests hash the same.
            for part in [placement, name.as_str(), hash.as_str()] {
                hasher.update((part.len() as u64).to_be_bytes());
                hasher.update(part.as_bytes());
            }
        }
    }
    hex::encode(hasher.finalize())
}

impl Manifest {
    /// The manifest of these files. Same files, same manifest, whatever their order.
    pub fn of<'a>(files: impl IntoIterator<Item = &'a BundleFile>) -> Self {
        let mut revision_files = BTreeMap::new();
        let mut shared_files = BTreeMap::new();
        for file in files {
            let target = match file.placement {
                Placement::Revision => &mut revision_files,
                Placement::Shared => &mut shared_files,
            };
            target.insert(file.name.clone(), sha256_hex(&file.content));
        }
        Manifest {
            revision: revision_of(&revision_files, &shared_files),
            revision_files,
            shared_files,
            sequence: 0,
        }
    }

    /// The manifest as the file [`MANIFEST_FILE`] holds it.
    pub fn to_json(&self) -> String {
        // A struct of strings and string maps always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    pub fn from_json(text: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(text)
    }

    /// Checks that `read` (a file by name, `None` if absent) yields exactly the files the
    /// manifest names, and that the revision is the hash of those names.
    pub fn verify(&self, read: impl Fn(&str) -> Option<Vec<u8>>) -> Result<(), Incomplete> {
        if revision_of(&self.revision_files, &self.shared_files) != self.revision {
            return Err(Incomplete::Revision);
        }
        for (name, hash) in self.revision_files.iter().chain(&self.shared_files) {
            let content = read(name).ok_or_else(|| Incomplete::Missing(name.clone()))?;
            if &sha256_hex(&content) != hash {
                return Err(Incomplete::Differs(name.clone()));
            }
        }
        Ok(())
    }

    /// Short form of the revision for logs and messages.
    pub fn short_revision(&self) -> &str {
        short_revision(&self.revision)
    }
}

/// First 12 hex digits of a revision.
pub fn short_revision(revision: &str) -> &str {
    revision.get(..12).unwrap_or(revision)
}

/// What a reloader reports on `GET /status`: the contract between the reloader in each
/// data-plane pod and the operator, which promotes a revision some pod accepted and reports
/// one it rejected.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloaderStatus {
    /// The revision the data-plane process was last told to load.
    pub running: Option<String>,
    /// The newest complete revision seen in the candidate directory.
    pub candidate: Option<String>,
    /// Its manifest's [`Manifest::sequence`]: which publication of `candidate` the pod saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_sequence: Option<u64>,
    /// Revisions this pod's binary accepted, newest first, a bounded number of them.
    #[serde(default)]
    pub accepted: Vec<String>,
    /// The newest revision the binary rejected, with its output.
    pub rejected: Option<Rejection>,
    /// Why the last reload trigger failed, if it did.
    pub reload_error: Option<String>,
    /// Asked to drain before a scale-in: the pod reports not ready, so agents move away,
    /// and flushes its buffers.
    #[serde(default)]
    pub draining: bool,
    /// Buffer chunks still on this pod's buffer volume (aggregator only).
    #[serde(default)]
    pub buffered_chunks: Option<u64>,
}

/// A revision the data-plane binary refused, with what it printed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub revision: String,
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, content: &str, placement: Placement) -> BundleFile {
        BundleFile {
            name: name.to_owned(),
            content: content.as_bytes().to_vec(),
            placement,
        }
    }

    fn sample() -> Vec<BundleFile> {
        vec![
            file(
                "fluent.conf",
                "@include slot-01.conf\n",
                Placement::Revision,
            ),
            file("slot-01.conf", "# empty\n", Placement::Revision),
            file("0a1b2c3d4e5f-token", "secret", Placement::Shared),
        ]
    }

    fn reader(files: &[BundleFile]) -> impl Fn(&str) -> Option<Vec<u8>> + '_ {
        |name| {
            files
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.content.clone())
        }
    }

    #[test]
    fn a_complete_bundle_verifies_and_round_trips() {
        let files = sample();
        let manifest = Manifest::of(&files);
        assert_eq!(
            Manifest::from_json(manifest.to_json().as_bytes()).unwrap(),
            manifest
        );
        assert_eq!(manifest.verify(reader(&files)), Ok(()));
    }

    #[test]
    fn a_missing_or_stale_file_is_incomplete() {
        let files = sample();
        let manifest = Manifest::of(&files);
        assert_eq!(
            manifest.verify(reader(&files[..2])),
            Err(Incomplete::Missing("0a1b2c3d4e5f-token".to_owned()))
        );
        let mut stale = files.clone();
        stale[1].content = b"# older\n".to_vec();
        assert_eq!(
            manifest.verify(reader(&stale)),
            Err(Incomplete::Differs("slot-01.conf".to_owned()))
        );
    }

    #[test]
    fn the_revision_changes_with_any_content_or_placement() {
        let files = sample();
        let base = Manifest::of(&files).revision;
        let mut edited = files.clone();
        edited[1].content.push(b'\n');
        assert_ne!(Manifest::of(&edited).revision, base);
        let mut moved = files.clone();
        moved[1].placement = Placement::Shared;
        assert_ne!(Manifest::of(&moved).revision, base);
        let mut reordered = files;
        reordered.reverse();
        assert_eq!(Manifest::of(&reordered).revision, base);
    }

    #[test]
    fn a_forged_revision_is_refused() {
        let files = sample();
        let mut manifest = Manifest::of(&files);
        manifest.revision = "0".repeat(64);
        assert_eq!(manifest.verify(reader(&files)), Err(Incomplete::Revision));
    }

    #[test]
    fn content_addressed_names_keep_the_extension() {
        let name = content_addressed_name("cert-verifier.rb", b"x");
        assert!(name.ends_with("-cert-verifier.rb"), "{name}");
        assert_eq!(name.len(), 12 + 1 + "cert-verifier.rb".len());
        assert_ne!(name, content_addressed_name("cert-verifier.rb", b"y"));
    }
}
