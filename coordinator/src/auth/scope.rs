//! Which scope a call needs, from its gRPC path.
//!
//! `fedsec.v1.Coordinator/*` needs the client scope; the Admin calls that
//! only read need the admin read scope; every other Admin call — and any
//! path not listed here, so that an RPC added later is never left open —
//! needs the admin write scope (and MFA, when configured). Health checks
//! and server reflection carry no data and need no token (the client
//! certificate is still required to connect).

/// The kind of a call, for authorisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// `grpc.health.v1` and server reflection: no token needed.
    Open,
    /// The `Coordinator` service (tenants' clients).
    Client,
    /// Admin calls that only read.
    AdminRead,
    /// Admin calls that change state, and anything unknown.
    AdminWrite,
}

/// Admin methods that only read state.
const ADMIN_READ: &[&str] = &[
    "GetJob",
    "ListJobs",
    "ListClients",
    "ListLedger",
    "ListModels",
    "ExportModel",
    "ListAuditEvents",
    "IncidentReport",
];

/// The kind of the call at `path` (`/package.Service/Method`).
pub(crate) fn classify(path: &str) -> CallKind {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (service, method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match service {
        "grpc.health.v1.Health"
        | "grpc.reflection.v1.ServerReflection"
        | "grpc.reflection.v1alpha.ServerReflection" => CallKind::Open,
        "fedsec.v1.Coordinator" => CallKind::Client,
        "fedsec.v1.Admin" if ADMIN_READ.contains(&method) => CallKind::AdminRead,
        _ => CallKind::AdminWrite,
    }
}

/// The method name of `path`, for messages (`Admin/PauseJob`).
pub(crate) fn method_of(path: &str) -> &str {
    let p = path.trim_start_matches('/');
    p.strip_prefix("fedsec.v1.").unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_admin_rpc_is_classified_and_unknown_paths_need_write() {
        assert_eq!(classify("/grpc.health.v1.Health/Check"), CallKind::Open);
        assert_eq!(
            classify("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            CallKind::Open
        );
        for m in [
            "Register",
            "GetTask",
            "GetModel",
            "SubmitUpdate",
            "GetRoundHistory",
        ] {
            assert_eq!(
                classify(&format!("/fedsec.v1.Coordinator/{m}")),
                CallKind::Client
            );
        }
        for m in ADMIN_READ {
            assert_eq!(
                classify(&format!("/fedsec.v1.Admin/{m}")),
                CallKind::AdminRead
            );
        }
        for m in [
            "CreateJob",
            "PauseJob",
            "ResumeJob",
            "QuarantineClient",
            "ReleaseClient",
            "RevokeClient",
            "RollbackModel",
            "QuarantineTenant",
            "ReleaseTenant",
            "SomethingNew",
        ] {
            assert_eq!(
                classify(&format!("/fedsec.v1.Admin/{m}")),
                CallKind::AdminWrite
            );
        }
        assert_eq!(classify("/other.Service/Get"), CallKind::AdminWrite);
        assert_eq!(classify("garbage"), CallKind::AdminWrite);
        assert_eq!(method_of("/fedsec.v1.Admin/PauseJob"), "Admin/PauseJob");
    }

    /// The read list names real Admin methods (a rename in the .proto must
    /// not silently move a read call to the write scope, or vice versa).
    #[test]
    fn the_read_list_matches_the_proto() {
        let proto = include_str!("../../../proto/fedsec/v1/admin.proto");
        for m in ADMIN_READ {
            assert!(
                proto.contains(&format!("rpc {m}(")),
                "{m} is not an Admin rpc"
            );
        }
    }
}
