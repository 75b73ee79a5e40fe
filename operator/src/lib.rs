//! Sluice: a Kubernetes operator for secure logging pipelines.
//!
//! Pure cores (no I/O): [`api`], [`layout`], [`model`], [`routing`], [`render`], [`pki`],
//! [`bundle`], [`build`], [`migrate`]. The thin shell: [`controller`] (the only code that talks to the API server),
//! [`reload`] (inside data-plane pods: local files, the data-plane binary, loopback HTTP)
//! and [`cli`]. Arrows point from shell to core, never back.

pub mod api;
pub mod build;
pub mod bundle;
pub mod cli;
pub mod controller;
pub mod layout;
pub mod migrate;
pub mod model;
pub mod pki;
pub mod reload;
pub mod render;
pub mod routing;
