//! The gRPC services: [`coordinator::CoordinatorService`] for clients and
//! [`admin::AdminService`] for administrators. Both take the caller's
//! identity from its mTLS certificate ([`fedsec_proto::tls::PeerIdentity`])
//! and return [`crate::Error`]s, turned into statuses in one place.

pub(crate) mod admin;
pub(crate) mod coordinator;
pub(crate) mod download;
mod history;
mod screen;
mod upload;
