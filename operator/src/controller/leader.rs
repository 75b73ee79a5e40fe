//! Leader election with a coordination.k8s.io Lease: of several replicas only the holder
//! runs the controller, so two operators never write at once.

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

/// Lease timing: a dead leader is replaced within about `DURATION + GRACE` seconds.
const DURATION: u64 = 15;
const GRACE: u64 = 5;

/// Where and as whom to hold the Lease.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
}

/// The task holding the Lease; it ends (releasing the Lease) once every receiver is dropped.
pub type Holder = tokio::task::JoinHandle<
    Result<kube_lease_manager::LeaseManager, kube_lease_manager::LeaseManagerError>,
>;

/// Starts competing for the Lease; the receiver holds `true` while this process leads.
/// Dropping every receiver releases the Lease; await the [`Holder`] to see it done.
pub async fn elect(
    client: Client,
    settings: &LeaseSettings,
) -> Result<(watch::Receiver<bool>, Holder), kube_lease_manager::LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, settings.name.clone())
        .with_namespace(settings.namespace.clone())
        .with_identity(settings.identity.clone())
        .with_duration(DURATION)
        .with_grace(GRACE)
        .with_field_manager(crate::layout::FIELD_MANAGER)
        .build()
        .await?;
    Ok(manager.watch().await)
}
