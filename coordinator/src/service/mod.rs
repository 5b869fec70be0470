//! The gRPC services: [`coordinator::CoordinatorService`] for clients and
//! [`admin::AdminService`] for administrators. Both take the caller's
//! identity from its mTLS certificate ([`fedsec_proto::tls::PeerIdentity`])
//! and return [`crate::Error`]s, turned into statuses in one place.

pub mod admin;
pub mod coordinator;
pub mod download;
mod history;
mod upload;
