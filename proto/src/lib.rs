//! The fedsec.v1 wire contract and what every party needs to speak it.
//!
//! - [`v1`]: prost/tonic code generated from `proto/fedsec/v1/*.proto`
//!   (services `Coordinator` and `Admin`), plus [`FILE_DESCRIPTOR_SET`] for
//!   gRPC server reflection.
//! - [`tensor`]: little-endian f32 tensors as ≤ 1 MiB byte chunks, decoding
//!   straight into a caller's buffer, SHA-256 digests, typed errors.
//! - [`model`]: the wire form of `fedsec_model::ModelSpec` (the spec and its
//!   flat parameter layout live in the leaf crate `fedsec-model`).
//! - [`tls`]: TLS 1.3-only mutual TLS for tonic servers and clients built on
//!   rustls, and the peer identity carried in client certificates.
//! - [`bearer`]: OAuth2 bearer tokens clients attach to every call (a token
//!   file re-read when it changes), for coordinators with `[auth.tokens]`.
//! - [`config_file`]: the TOML configuration files of the binaries: one
//!   error type naming the offending key, reading and parsing.
//! - [`devca`]: a development certificate authority (rcgen) that writes a CA,
//!   a server certificate, client certificates and an admin certificate.
//! - [`private_file`]: owner-only (0600) files for keys, tokens and the
//!   coordinator's data directory.
//! - [`release`]: the coordinator's Ed25519 release key and the canonical
//!   statement it signs for every served model version (issue 21).

pub mod bearer;
pub mod config_file;
pub mod devca;
pub mod model;
pub mod private_file;
pub mod release;
pub mod tensor;
pub mod tls;

/// Generated code of the `fedsec.v1` protobuf package.
///
/// Message and field documentation comes from the comments in the `.proto`
/// files, which are the source of truth for the wire contract.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("fedsec.v1");
}

/// Metadata key of a `RESOURCE_EXHAUSTED` status refused by a rate limit:
/// milliseconds until a retry can be admitted, as ASCII digits.
pub const RETRY_AFTER_MS_METADATA: &str = "retry-after-ms";

/// Most rounds one `Coordinator/GetRoundHistory` page holds (~66 B each on
/// the wire: ~1.1 MB, under every gRPC implementation's default 4 MiB
/// message limit). A `max_rounds` of 0 or above it means this many.
pub const MAX_HISTORY_PAGE_ROUNDS: u32 = 16_384;

/// Encoded `FileDescriptorSet` of the `fedsec.v1` package, for gRPC server
/// reflection (`tonic-reflection`).
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("fedsec_v1_descriptor");
