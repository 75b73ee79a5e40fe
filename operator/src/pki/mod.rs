//! Plans the TLS material of one Logging from its spec, the current time and the Secrets
//! that exist: what to mint, renew or rotate, and when to look again. No I/O.
