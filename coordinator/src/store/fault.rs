//! A [`Store`] wrapper that injects delays and failures, for tests of
//! races and store faults against a real coordinator
//! ([`crate::Coordinator::start_with_store`]).
//!
//! Each method of the wrapped store runs, then the hook registered for its
//! name (if any) runs: it may sleep (widening a race window between the
//! store write and what the caller does next) or replace the result with a
//! [`StoreError`] (a fault after the write, the worst case for callers).
//! A hook registered with [`Injected::before`] runs before the method and,
//! if it returns an error, the method does not run (a fault that refused
//! the write, like a full disk).
//!
//! ```
//! use std::time::Duration;
//! use fedsec_coordinator::store::fault::Injected;
//! use fedsec_coordinator::store::sqlite::SqliteStore;
//! let store = Injected::new(SqliteStore::in_memory()?);
//! store.delay_after("upsert_client", Duration::from_millis(300));
//! # Ok::<(), fedsec_coordinator::store::StoreError>(())
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedsec_proto::release::AuditAnchor;
use fedsec_proto::tls::ClientIdentity;

use super::{
    AttemptClose, AttemptRecord, AuditRecord, ClientRecord, ClientStatus, ContributionFilter,
    ContributionRecord, JobRecord, JobState, LedgerRecord, ModelVersionRecord, NewAuditEvent,
    Resolution, RoundCommit, Store, StoreError, StoreResult, TenantHold, VersionInfo,
};

type Hook = Arc<dyn Fn() -> Option<StoreError> + Send + Sync>;

/// A store whose methods run registered hooks after the real work.
pub struct Injected<S> {
    inner: S,
    hooks: Mutex<HashMap<&'static str, Hook>>,
    before: Mutex<HashMap<&'static str, Hook>>,
}

impl<S> std::fmt::Debug for Injected<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injected").finish_non_exhaustive()
    }
}

impl<S: Store> Injected<S> {
    /// Wraps `inner` with no hooks.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            hooks: Mutex::new(HashMap::new()),
            before: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `hook` after every call of `method` (a [`Store`] method name);
    /// a returned error replaces the method's result.
    pub fn after(
        &self,
        method: &'static str,
        hook: impl Fn() -> Option<StoreError> + Send + Sync + 'static,
    ) {
        self.lock().insert(method, Arc::new(hook));
    }

    /// Runs `hook` before every call of `method`; a returned error is the
    /// method's result and the method does not run.
    pub fn before(
        &self,
        method: &'static str,
        hook: impl Fn() -> Option<StoreError> + Send + Sync + 'static,
    ) {
        self.before
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(method, Arc::new(hook));
    }

    /// Sleeps `delay` after every call of `method`.
    pub fn delay_after(&self, method: &'static str, delay: Duration) {
        self.after(method, move || {
            std::thread::sleep(delay);
            None
        });
    }

    /// Removes the hooks (before and after) of `method`.
    pub fn clear(&self, method: &'static str) {
        self.lock().remove(method);
        self.before
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(method);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, Hook>> {
        self.hooks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refuse(&self, method: &'static str) -> Option<StoreError> {
        let hook = self
            .before
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(method)
            .cloned();
        hook.and_then(|h| h())
    }

    fn hook<T>(&self, method: &'static str, result: StoreResult<T>) -> StoreResult<T> {
        let hook = self.lock().get(method).cloned();
        match hook.and_then(|h| h()) {
            Some(e) => Err(e),
            None => result,
        }
    }
}

macro_rules! delegate {
    ($( fn $name:ident(&self $(, $arg:ident: $ty:ty)* ) -> $ret:ty; )*) => {
        impl<S: Store> Store for Injected<S> {
            $(
                fn $name(&self $(, $arg: $ty)*) -> $ret {
                    if let Some(e) = self.refuse(stringify!($name)) {
                        return Err(e);
                    }
                    let r = self.inner.$name($($arg),*);
                    self.hook(stringify!($name), r)
                }
            )*
        }
    };
}

delegate! {
    fn secret(&self, name: &str, generate: &dyn Fn() -> Vec<u8>) -> StoreResult<Vec<u8>>;
    fn insert_job(&self, job: &JobRecord, initial: &ModelVersionRecord) -> StoreResult<()>;
    fn jobs(&self) -> StoreResult<Vec<JobRecord>>;
    fn job(&self, job_id: &str) -> StoreResult<Option<JobRecord>>;
    fn set_job_state(&self, job_id: &str, state: JobState, reason: &str) -> StoreResult<()>;
    fn set_job_resolution(&self, job_id: &str, resolution: &Resolution) -> StoreResult<()>;
    fn upsert_client(&self, identity: &ClientIdentity, software: &str, now_unix_ms: i64) -> StoreResult<ClientRecord>;
    fn clients(&self) -> StoreResult<Vec<ClientRecord>>;
    fn set_client_status(&self, client_id: &str, status: ClientStatus, reason: &str) -> StoreResult<Option<ClientRecord>>;
    fn touch_clients(&self, seen: &[(String, i64)]) -> StoreResult<()>;
    fn next_attempt(&self, job_id: &str, round: u64) -> StoreResult<u32>;
    fn open_attempt(&self, attempt: &AttemptRecord) -> StoreResult<()>;
    fn abandon_attempt(&self, job_id: &str, round: u64, attempt: u32, close: &AttemptClose) -> StoreResult<()>;
    fn abandon_open_attempts(&self, note: &str, now_unix_ms: i64) -> StoreResult<Vec<AttemptRecord>>;
    fn attempts(&self, job_id: &str) -> StoreResult<Vec<AttemptRecord>>;
    fn commit_round(&self, commit: &RoundCommit) -> StoreResult<(u64, u64)>;
    fn rollback(&self, job_id: &str, version: u64, entry: &LedgerRecord) -> StoreResult<u64>;
    fn ledger(&self, job_id: &str) -> StoreResult<Vec<LedgerRecord>>;
    fn versions(&self, job_id: &str) -> StoreResult<Vec<VersionInfo>>;
    fn version(&self, job_id: &str, version: u64) -> StoreResult<Option<ModelVersionRecord>>;
    fn record_empirical_audit(&self, job_id: &str, version: u64, audit_json: &str, receipt_json: &str, now_unix_ms: i64) -> StoreResult<()>;
    fn empirical_audit(&self, job_id: &str) -> StoreResult<Option<(String, u64)>>;
    fn append_audit(&self, event: &NewAuditEvent) -> StoreResult<u64>;
    fn prune_audit(&self, before_unix_ms: i64, max_rows: u64) -> StoreResult<u64>;
    fn audit_events(&self, job_id: Option<&str>, limit: usize) -> StoreResult<Vec<AuditRecord>>;
    fn audit_head(&self) -> StoreResult<AuditAnchor>;
    fn release_anchor(&self, job_id: &str, version: u64) -> StoreResult<Option<AuditAnchor>>;
    fn audit_events_concerning(&self, client_ids: &[String], tenant_id: Option<&str>, limit: usize) -> StoreResult<Vec<AuditRecord>>;
    fn contributions(&self, filter: &ContributionFilter) -> StoreResult<Vec<ContributionRecord>>;
    fn prune_contributions(&self, before_unix_ms: i64, max_rows: u64) -> StoreResult<u64>;
    fn contain_tenant(&self, tenant_id: &str, reason: &str, now_unix_ms: i64) -> StoreResult<(TenantHold, Vec<ClientRecord>)>;
    fn release_tenant(&self, tenant_id: &str, reason: &str) -> StoreResult<Option<(TenantHold, Vec<ClientRecord>)>>;
    fn contained_tenants(&self) -> StoreResult<Vec<TenantHold>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    #[test]
    fn hooks_run_after_the_real_call_and_may_fail_it() {
        let s = Injected::new(SqliteStore::in_memory().unwrap());
        let id = ClientIdentity::new("t", "c").unwrap();
        s.after("upsert_client", || {
            Some(StoreError::Database("injected".into()))
        });
        assert!(s.upsert_client(&id, "sw", 1).is_err());
        // The write happened before the fault.
        assert_eq!(s.clients().unwrap().len(), 1);
        s.clear("upsert_client");
        assert!(s.upsert_client(&id, "sw", 2).is_ok());
    }

    #[test]
    fn before_hooks_refuse_the_call_without_running_it() {
        let s = Injected::new(SqliteStore::in_memory().unwrap());
        let id = ClientIdentity::new("t", "c").unwrap();
        s.before("upsert_client", || {
            Some(StoreError::Unavailable("disk full".into()))
        });
        assert!(s.upsert_client(&id, "sw", 1).unwrap_err().is_transient());
        assert!(s.clients().unwrap().is_empty(), "nothing written");
        s.clear("upsert_client");
        assert!(s.upsert_client(&id, "sw", 2).is_ok());
    }
}
