//! `sluice explain`: which flows take a record, and where it goes. Filled in by the
//! data-plane work; this placeholder only keeps the command compiling.

use std::collections::BTreeMap;

use crate::model::Pipeline;
use crate::routing::Record;

pub fn explain(pipelines: &[Pipeline], record: &Record) -> String {
    let _ = (pipelines, record);
    String::new()
}

pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let _ = text;
    Ok(BTreeMap::new())
}
