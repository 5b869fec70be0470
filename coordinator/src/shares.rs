//! Per-identity shares of the coordinator's resources: concurrent calls
//! (streams) per call class, and bytes in flight.
//!
//! Rate limits ([`crate::ratelimit`]) bound how often an identity may start
//! a call; shares bound how much it may hold *at once*, so one certificate
//! cannot pin the coordinator's memory or decode slots with calls that never
//! end. A stream share is taken before a call reaches its handler (see
//! `crate::gate`) and released when its response body is dropped (the
//! call finished, failed or was reset); a byte share is taken by the upload
//! (its decode buffer) or download (the model bytes it will send) and
//! released when that transfer ends. Over a share the call is refused with
//! `RESOURCE_EXHAUSTED` and the `retry-after-ms` hint.
//!
//! Memory is bounded: an identity's entry exists only while it holds a share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Call classes with their own concurrency share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum StreamClass {
    /// `Coordinator/Register` and `Coordinator/GetTask`.
    Unary,
    /// `Coordinator/GetModel` (model downloads).
    Download,
    /// `Coordinator/SubmitUpdate` (update uploads).
    Upload,
    /// Every `Admin` call.
    Admin,
    /// Everything else: `grpc.health.v1`, server reflection.
    Other,
}

impl StreamClass {
    /// The class of a gRPC request path (`/package.Service/Method`).
    pub(crate) fn of_path(path: &str) -> Self {
        match path {
            "/fedsec.v1.Coordinator/Register" | "/fedsec.v1.Coordinator/GetTask" => Self::Unary,
            "/fedsec.v1.Coordinator/GetModel" => Self::Download,
            "/fedsec.v1.Coordinator/SubmitUpdate" => Self::Upload,
            p if p.starts_with("/fedsec.v1.Admin/") => Self::Admin,
            _ => Self::Other,
        }
    }

    /// For messages: what one stream of this class is.
    pub(crate) fn what(self) -> &'static str {
        match self {
            Self::Unary => "Register/GetTask calls",
            Self::Download => "GetModel downloads",
            Self::Upload => "SubmitUpdate uploads",
            Self::Admin => "Admin calls",
            Self::Other => "health/reflection streams",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The share each identity gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShareLimits {
    /// Concurrent calls per class, indexed in the order of [`StreamClass`]'s variants.
    pub streams: [u32; 5],
    /// Bytes of decode buffers and downloads held at once. A single
    /// transfer larger than this is charged as exactly this much, so it is
    /// admitted when the identity holds nothing else.
    pub bytes_in_flight: u64,
}

/// Why a share was refused (the caller adds the identity and retry hint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exhausted {
    /// What is used up, e.g. `4 GetModel downloads open`.
    pub what: String,
    /// The limit, e.g. `4 concurrent`.
    pub limit: String,
}

#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    streams: [u32; 5],
    bytes: u64,
}

impl Usage {
    fn is_empty(&self) -> bool {
        self.bytes == 0 && self.streams.iter().all(|&n| n == 0)
    }
}

/// Every identity's usage.
#[derive(Debug)]
pub(crate) struct Shares {
    limits: ShareLimits,
    table: Mutex<HashMap<Arc<str>, Usage>>,
}

/// A held stream share; released on drop.
#[derive(Debug)]
pub(crate) struct StreamShare {
    shares: Arc<Shares>,
    identity: Arc<str>,
    class: StreamClass,
}

/// A held byte share; released on drop.
#[derive(Debug)]
pub(crate) struct ByteShare {
    shares: Arc<Shares>,
    identity: Arc<str>,
    bytes: u64,
}

impl Shares {
    /// Shares with these limits.
    pub(crate) fn new(limits: ShareLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            table: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Usage>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one concurrent-call share of `class` for `identity`.
    pub(crate) fn stream(
        self: &Arc<Self>,
        identity: &str,
        class: StreamClass,
    ) -> Result<StreamShare, Exhausted> {
        let limit = self.limits.streams[class.index()];
        let mut table = self.lock();
        let (key, usage) = entry(&mut table, identity);
        let n = &mut usage.streams[class.index()];
        if *n >= limit {
            return Err(Exhausted {
                what: format!("{n} {} open", class.what()),
                limit: format!("{limit} concurrent"),
            });
        }
        *n += 1;
        Ok(StreamShare {
            shares: self.clone(),
            identity: key,
            class,
        })
    }

    /// Takes `bytes` of `identity`'s bytes-in-flight share (at most the
    /// whole share, so one transfer is always admitted alone).
    pub(crate) fn bytes(
        self: &Arc<Self>,
        identity: &str,
        bytes: u64,
    ) -> Result<ByteShare, Exhausted> {
        let cap = self.limits.bytes_in_flight;
        let charge = bytes.min(cap);
        let mut table = self.lock();
        let (key, usage) = entry(&mut table, identity);
        if usage.bytes.saturating_add(charge) > cap {
            let held = usage.bytes;
            if usage.is_empty() {
                table.remove(identity);
            }
            return Err(Exhausted {
                what: format!("{held} bytes in flight and asks for {charge} more"),
                limit: format!("{cap} bytes"),
            });
        }
        usage.bytes += charge;
        Ok(ByteShare {
            shares: self.clone(),
            identity: key,
            bytes: charge,
        })
    }

    /// Identities holding a share now.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.lock().len()
    }

    /// Concurrent calls of `class` `identity` holds now.
    #[cfg(test)]
    pub(crate) fn streams_of(&self, identity: &str, class: StreamClass) -> u32 {
        self.lock()
            .get(identity)
            .map_or(0, |u| u.streams[class.index()])
    }

    /// Bytes in flight `identity` holds now.
    #[cfg(test)]
    pub(crate) fn bytes_of(&self, identity: &str) -> u64 {
        self.lock().get(identity).map_or(0, |u| u.bytes)
    }

    fn release(&self, identity: &str, class: Option<StreamClass>, bytes: u64) {
        let mut table = self.lock();
        let Some(usage) = table.get_mut(identity) else {
            return;
        };
        if let Some(c) = class {
            let n = &mut usage.streams[c.index()];
            *n = n.saturating_sub(1);
        }
        usage.bytes = usage.bytes.saturating_sub(bytes);
        if usage.is_empty() {
            table.remove(identity);
        }
    }
}

fn entry<'a>(table: &'a mut HashMap<Arc<str>, Usage>, identity: &str) -> (Arc<str>, &'a mut Usage) {
    let key: Arc<str> = match table.get_key_value(identity) {
        Some((k, _)) => k.clone(),
        None => Arc::from(identity),
    };
    let usage = table.entry(key.clone()).or_default();
    (key, usage)
}

impl Drop for StreamShare {
    fn drop(&mut self) {
        self.shares.release(&self.identity, Some(self.class), 0);
    }
}

impl Drop for ByteShare {
    fn drop(&mut self) {
        self.shares.release(&self.identity, None, self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares() -> Arc<Shares> {
        Shares::new(ShareLimits {
            streams: [2, 4, 1, 3, 1],
            bytes_in_flight: 100,
        })
    }

    #[test]
    fn streams_are_capped_per_identity_and_class_and_released_on_drop() {
        let s = shares();
        let held: Vec<_> = (0..4)
            .map(|_| s.stream("t/a", StreamClass::Download).unwrap())
            .collect();
        let e = s.stream("t/a", StreamClass::Download).unwrap_err();
        assert_eq!(e.what, "4 GetModel downloads open");
        assert_eq!(e.limit, "4 concurrent");
        // Other identities and classes are unaffected.
        assert!(s.stream("t/b", StreamClass::Download).is_ok());
        let up = s.stream("t/a", StreamClass::Upload).unwrap();
        assert!(s.stream("t/a", StreamClass::Upload).is_err());
        drop(up);
        assert!(s.stream("t/a", StreamClass::Upload).is_ok());
        assert_eq!(s.streams_of("t/a", StreamClass::Download), 4);
        drop(held);
        assert_eq!(s.streams_of("t/a", StreamClass::Download), 0);
        assert_eq!(s.tracked(), 0, "no entry outlives its shares");
    }

    #[test]
    fn bytes_in_flight_are_capped_and_one_transfer_always_fits_alone() {
        let s = shares();
        let a = s.bytes("t/a", 60).unwrap();
        assert!(s.bytes("t/a", 50).is_err());
        let b = s.bytes("t/a", 40).unwrap();
        assert_eq!(s.bytes_of("t/a"), 100);
        drop((a, b));
        // Larger than the whole share: charged as the whole share.
        let big = s.bytes("t/a", 10_000).unwrap();
        assert_eq!(s.bytes_of("t/a"), 100);
        assert!(s.bytes("t/a", 1).is_err());
        drop(big);
        assert_eq!(s.tracked(), 0);
    }

    #[test]
    fn paths_map_to_classes() {
        assert_eq!(
            StreamClass::of_path("/fedsec.v1.Coordinator/GetModel"),
            StreamClass::Download
        );
        assert_eq!(
            StreamClass::of_path("/fedsec.v1.Coordinator/SubmitUpdate"),
            StreamClass::Upload
        );
        assert_eq!(
            StreamClass::of_path("/fedsec.v1.Coordinator/GetTask"),
            StreamClass::Unary
        );
        assert_eq!(
            StreamClass::of_path("/fedsec.v1.Admin/ListJobs"),
            StreamClass::Admin
        );
        assert_eq!(
            StreamClass::of_path("/grpc.health.v1.Health/Watch"),
            StreamClass::Other
        );
    }
}
