//! The converted objects as YAML files: one per namespace, cluster-scoped objects in
//! `_cluster.yaml`, in a stable order, each object after a comment naming its source.

use std::collections::BTreeMap;

use super::source::INCUMBENT_API_VERSION;
use super::{Converted, SluiceObject};

/// File holding the cluster-scoped objects (no namespace can be called that).
pub const CLUSTER_FILE: &str = "_cluster.yaml";

/// One file to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputFile {
    pub name: String,
    pub content: String,
}

/// Position of a kind within its file: what others refer to comes first.
fn rank(object: &SluiceObject) -> u8 {
    match object {
        SluiceObject::Logging(_) => 0,
        SluiceObject::Secret(_) => 1,
        SluiceObject::ClusterOutput(_) | SluiceObject::Output(_) => 2,
        SluiceObject::ClusterFlow(_) | SluiceObject::Flow(_) => 3,
    }
}

pub fn files(converted: &[Converted]) -> Result<Vec<OutputFile>, String> {
    let mut by_file: BTreeMap<String, Vec<&Converted>> = BTreeMap::new();
    for c in converted {
        let file = match &c.object.metadata().namespace {
            Some(namespace) => format!("{namespace}.yaml"),
            None => CLUSTER_FILE.to_owned(),
        };
        by_file.entry(file).or_default().push(c);
    }
    let mut files = Vec::new();
    for (name, mut objects) in by_file {
        objects.sort_by(|a, b| {
            (rank(&a.object), a.object.metadata().name.as_deref())
                .cmp(&(rank(&b.object), b.object.metadata().name.as_deref()))
        });
        let mut content = String::from(
            "# Sluice objects written by `sluice migrate` from logging-operator objects; the\n# report says what became of every source field.\n",
        );
        for c in objects {
            let yaml = match &c.object {
                SluiceObject::Logging(o) => serde_saphyr::to_string(o),
                SluiceObject::ClusterOutput(o) => serde_saphyr::to_string(o),
                SluiceObject::ClusterFlow(o) => serde_saphyr::to_string(o),
                SluiceObject::Output(o) => serde_saphyr::to_string(o),
                SluiceObject::Flow(o) => serde_saphyr::to_string(o),
                SluiceObject::Secret(o) => serde_saphyr::to_string(o),
            }
            .map_err(|e| format!("{}: {e}", c.object.label()))?;
            content.push_str("---\n");
            let what = match c.object {
                SluiceObject::Secret(_) => "values written inline in",
                _ => "converted from",
            };
            let source = format!("{INCUMBENT_API_VERSION} {} ({})", c.source, c.source_place);
            // Names from the input end up in a comment line: no line breaks.
            content.push_str(&format!(
                "# {what} {}\n",
                source.replace(char::is_control, " ")
            ));
            content.push_str(&yaml);
        }
        files.push(OutputFile { name, content });
    }
    Ok(files)
}
