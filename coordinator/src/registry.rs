//! Registered clients, mirrored from the store for fast authorisation.
//!
//! Who may change what, so that a quarantine or revocation is never lost:
//!
//! - **Status** (active, quarantined, revoked) changes only through
//!   [`ClientRegistry::set_status`], which an admin action calls while it
//!   holds [`ClientRegistry::status_lock`] across its store write, so two
//!   admin actions apply in the order they were stored.
//! - **Registration** ([`ClientRegistry::registered`]) inserts a new entry
//!   but never touches the status of an existing one: the record a
//!   concurrent `Register` read from the store may predate a quarantine
//!   stored since, and must not overwrite it.
//! - A revocation is permanent: once revoked, no later write changes it.
//! - **Tenant admission**: the registry also keeps the set of tenants ever
//!   registered. `Register` of an identity whose tenant is not in it holds
//!   [`ClientRegistry::admission`] across its capacity check, store write
//!   and mirroring, so concurrent registrations of new tenants cannot pass
//!   `limits.max_tenants` together.
//!
//! - **Tenant containment**: a contained tenant (an admin's
//!   `clients quarantine --tenant`) may not register any identity, new or
//!   known, until released; its identities are quarantined in the store in
//!   the containment's transaction and mirrored here under
//!   [`ClientRegistry::status_lock`].
//!
//! Last-seen times are kept here and flushed to the store periodically.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use fedsec_proto::tls::ClientIdentity;

use crate::error::{Error, RejectReason};
use crate::store::{ClientRecord, ClientStatus};

#[derive(Debug, Clone)]
struct ClientEntry {
    tenant_id: String,
    status: ClientStatus,
    reason: String,
    last_seen: i64,
    dirty: bool,
}

impl ClientEntry {
    fn of(r: &ClientRecord) -> Self {
        Self {
            tenant_id: r.identity.tenant_id.clone(),
            status: r.status,
            reason: r.status_reason.clone(),
            last_seen: r.last_seen_unix_ms,
            dirty: false,
        }
    }
}

/// Registered clients, mirrored from the store.
#[derive(Debug, Default)]
pub(crate) struct ClientRegistry {
    inner: RwLock<HashMap<String, ClientEntry>>,
    /// Held by admin status changes across their store write and
    /// [`Self::set_status`], so they reach memory in the order they were stored.
    pub(crate) status_lock: tokio::sync::Mutex<()>,
    /// Every tenant with a registered identity, whatever its status.
    tenants: RwLock<HashSet<String>>,
    /// Held by a `Register` of a tenant not yet in [`Self::tenants`] from
    /// its capacity check until the new identity is mirrored.
    pub(crate) admission: tokio::sync::Mutex<()>,
    /// Contained tenants (see the module docs).
    contained: RwLock<HashSet<String>>,
}

impl ClientRegistry {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, ClientEntry>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, ClientEntry>> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn add_tenant(&self, tenant_id: &str) {
        let mut t = self.tenants.write().unwrap_or_else(|p| p.into_inner());
        if !t.contains(tenant_id) {
            t.insert(tenant_id.to_owned());
        }
    }

    /// Mirrors a stored record as loaded at start-up (replaces any entry).
    pub(crate) fn load(&self, r: &ClientRecord) {
        self.write()
            .insert(r.identity.client_id.clone(), ClientEntry::of(r));
        self.add_tenant(&r.identity.tenant_id);
    }

    /// Mirrors the record a `Register` stored: inserts it if the client is
    /// new; an existing entry keeps its status (a concurrent admin action may
    /// have changed it after the store returned `r`).
    pub(crate) fn registered(&self, r: &ClientRecord) {
        self.write()
            .entry(r.identity.client_id.clone())
            .or_insert_with(|| ClientEntry::of(r));
        self.add_tenant(&r.identity.tenant_id);
    }

    /// Mirrors a status an admin action stored (call with
    /// [`Self::status_lock`] held). A revoked entry stays revoked.
    pub(crate) fn set_status(&self, r: &ClientRecord) {
        let mut map = self.write();
        match map.get_mut(&r.identity.client_id) {
            Some(e) if e.status == ClientStatus::Revoked => {}
            Some(e) => {
                e.status = r.status;
                e.reason.clone_from(&r.status_reason);
            }
            None => {
                map.insert(r.identity.client_id.clone(), ClientEntry::of(r));
                self.add_tenant(&r.identity.tenant_id);
            }
        }
    }

    /// Number of tenants with a registered identity, whatever its status
    /// (what `limits.max_tenants` bounds).
    pub(crate) fn tenant_count(&self) -> usize {
        self.tenants.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether this tenant has a registered identity (any status).
    pub(crate) fn has_tenant(&self, tenant_id: &str) -> bool {
        self.tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(tenant_id)
    }

    /// Number of registered identities.
    pub(crate) fn len(&self) -> usize {
        self.read().len()
    }

    /// The status of a client id, if registered.
    pub(crate) fn status(&self, client_id: &str) -> Option<ClientStatus> {
        self.read().get(client_id).map(|e| e.status)
    }

    /// The tenant of a registered client id.
    pub(crate) fn tenant_of(&self, client_id: &str) -> Option<String> {
        self.read().get(client_id).map(|e| e.tenant_id.clone())
    }

    /// The status of this identity if it is registered under its tenant.
    pub(crate) fn status_of(&self, id: &ClientIdentity) -> Option<ClientStatus> {
        self.read()
            .get(&id.client_id)
            .filter(|e| e.tenant_id == id.tenant_id)
            .map(|e| e.status)
    }

    /// Marks a tenant contained (`true`) or released.
    pub(crate) fn set_contained(&self, tenant_id: &str, contained: bool) {
        let mut c = self.contained.write().unwrap_or_else(|p| p.into_inner());
        if contained {
            c.insert(tenant_id.to_owned());
        } else {
            c.remove(tenant_id);
        }
    }

    /// Whether a tenant is contained.
    pub(crate) fn is_contained(&self, tenant_id: &str) -> bool {
        self.contained
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(tenant_id)
    }

    /// Refuses revoked identities, client ids bound to another tenant and
    /// every identity of a contained tenant, before registration.
    pub(crate) fn check_can_register(&self, id: &ClientIdentity) -> Result<(), Error> {
        if self.is_contained(&id.tenant_id) {
            return Err(Error::rejected(
                RejectReason::Quarantined,
                format!(
                    "tenant {:?} is contained by an admin: no identity of it may register \
                     until the tenant is released",
                    id.tenant_id
                ),
            ));
        }
        match self.read().get(&id.client_id) {
            Some(e) if e.tenant_id != id.tenant_id => Err(Error::rejected(
                RejectReason::TenantMismatch,
                format!(
                    "client id {:?} is registered to another tenant",
                    id.client_id
                ),
            )),
            Some(e) if e.status == ClientStatus::Revoked => Err(Error::rejected(
                RejectReason::Revoked,
                format!(
                    "client identity {:?} is revoked: {}",
                    id.client_id, e.reason
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Authorises a call of a registered, active client and records it as seen.
    pub(crate) fn authorize(&self, id: &ClientIdentity) -> Result<(), Error> {
        let mut map = self.write();
        let Some(e) = map.get_mut(&id.client_id) else {
            return Err(Error::rejected(
                RejectReason::Unregistered,
                format!(
                    "client {:?} is not registered; call Register first",
                    id.client_id
                ),
            ));
        };
        if e.tenant_id != id.tenant_id {
            return Err(Error::rejected(
                RejectReason::TenantMismatch,
                format!(
                    "client id {:?} is registered to another tenant",
                    id.client_id
                ),
            ));
        }
        match e.status {
            ClientStatus::Active => {}
            ClientStatus::Quarantined => {
                return Err(Error::rejected(
                    RejectReason::Quarantined,
                    format!("client {:?} is quarantined: {}", id.client_id, e.reason),
                ));
            }
            ClientStatus::Revoked => {
                return Err(Error::rejected(
                    RejectReason::Revoked,
                    format!(
                        "client identity {:?} is revoked: {}",
                        id.client_id, e.reason
                    ),
                ));
            }
        }
        e.last_seen = crate::engine::now_unix_ms();
        e.dirty = true;
        Ok(())
    }

    /// Tenants with at least one active client identity, sorted: the
    /// tenants a round's cohort is drawn from (the privacy unit is the tenant).
    pub(crate) fn selectable_tenants(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .read()
            .values()
            .filter(|e| e.status == ClientStatus::Active)
            .map(|e| e.tenant_id.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Last-seen times changed since the previous call.
    pub(crate) fn take_dirty(&self) -> Vec<(String, i64)> {
        let mut map = self.write();
        map.iter_mut()
            .filter(|(_, e)| e.dirty)
            .map(|(id, e)| {
                e.dirty = false;
                (id.clone(), e.last_seen)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, status: ClientStatus) -> ClientRecord {
        ClientRecord {
            identity: ClientIdentity::new("t", id).unwrap(),
            status,
            status_reason: "why".into(),
            registered_unix_ms: 0,
            last_seen_unix_ms: 0,
            rounds_participated: 0,
            software: String::new(),
        }
    }

    #[test]
    fn only_tenants_with_an_active_identity_are_selectable_and_only_active_clients_authorised() {
        let r = ClientRegistry::default();
        r.load(&record("b", ClientStatus::Active));
        r.load(&record("a", ClientStatus::Active));
        r.load(&record("q", ClientStatus::Quarantined));
        r.load(&record("x", ClientStatus::Revoked));
        // Every identity above is of tenant "t": one selectable tenant.
        assert_eq!(r.selectable_tenants(), vec!["t"]);
        let mut other = record("z", ClientStatus::Active);
        other.identity = ClientIdentity::new("u", "z").unwrap();
        r.load(&other);
        let mut blocked = record("y", ClientStatus::Quarantined);
        blocked.identity = ClientIdentity::new("v", "y").unwrap();
        r.load(&blocked);
        assert_eq!(r.selectable_tenants(), vec!["t", "u"]);
        // Every tenant counts towards limits.max_tenants, quarantined ones too.
        assert_eq!(r.tenant_count(), 3);
        assert!(r.has_tenant("v") && !r.has_tenant("w"));
        let id = |c: &str| ClientIdentity::new("t", c).unwrap();
        assert!(r.authorize(&id("a")).is_ok());
        let reason = |c: &str| r.authorize(&id(c)).unwrap_err().reject_reason();
        assert_eq!(reason("q"), Some(RejectReason::Quarantined));
        assert_eq!(reason("x"), Some(RejectReason::Revoked));
        assert_eq!(reason("nobody"), Some(RejectReason::Unregistered));
        let other_tenant = ClientIdentity::new("u", "a").unwrap();
        assert_eq!(
            r.authorize(&other_tenant).unwrap_err().reject_reason(),
            Some(RejectReason::TenantMismatch)
        );
        assert_eq!(r.status_of(&other_tenant), None);
        assert_eq!(r.status_of(&id("q")), Some(ClientStatus::Quarantined));
        assert_eq!(
            r.check_can_register(&id("x")).unwrap_err().reject_reason(),
            Some(RejectReason::Revoked)
        );
        // Authorised calls mark the client as seen, once.
        assert_eq!(r.take_dirty().len(), 1);
        assert!(r.take_dirty().is_empty());
    }

    #[test]
    fn a_stale_registration_never_undoes_a_status_change() {
        let r = ClientRegistry::default();
        // Register read "active" from the store; a quarantine was stored and
        // mirrored before Register mirrors its (stale) record.
        let stale = record("a", ClientStatus::Active);
        r.set_status(&record("a", ClientStatus::Quarantined));
        r.registered(&stale);
        assert_eq!(r.status("a"), Some(ClientStatus::Quarantined));
        // Revocation is permanent, whatever arrives later.
        r.set_status(&record("a", ClientStatus::Revoked));
        r.set_status(&record("a", ClientStatus::Active));
        r.registered(&stale);
        assert_eq!(r.status("a"), Some(ClientStatus::Revoked));
        // A new client is inserted by its registration.
        r.registered(&record("n", ClientStatus::Active));
        assert_eq!(r.status("n"), Some(ClientStatus::Active));
    }
}
