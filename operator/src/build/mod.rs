//! Turns a [`crate::model::Pipeline`], rendered configuration and planned TLS Secrets into
//! the complete Kubernetes objects Sluice applies.
