//! Checks of every string the data plane compiles, made the way the pinned fluentd 1.17 and
//! its plugins compile them, so an object fluentd would refuse at startup is left out with a
//! problem instead of stopping the aggregator for every flow. One module per concern.

pub mod credentials;
pub mod filters;
pub mod logging;
pub mod outputs;
pub mod record_accessor;
pub mod regex;
pub mod uri;
