//! Encryption at rest for the SQLite store: the database's key marker,
//! sealing and opening columns, and what each sealed record is bound to
//! (its associated data: model versions, job specs and resolutions, ledger
//! charges, per-client participation counters). Without a key, columns
//! pass through in clear.

use std::path::Path;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use super::{corrupt, db};
use crate::store::seal::{Aad, AtRestKey};
use crate::store::{StoreError, StoreResult};

/// `meta` key recording whether (and with which key) the database is sealed.
pub(super) const ENCRYPTION_META: &str = "encryption";
/// Marker of a database stored in clear.
pub(super) const CLEAR_MARKER: &[u8] = b"none";
/// Plaintext of the key check sealed into the marker of an encrypted database.
pub(super) const KEY_CHECK: &[u8] = b"fedsec coordinator at-rest key check";

pub(super) fn key_check_aad() -> Aad<'static> {
    Aad {
        field: "meta.key_check",
        job_id: "",
        number: 0,
    }
}

pub(super) fn encryption_error(m: impl Into<String>) -> StoreError {
    StoreError::Encryption(m.into())
}

/// Compares the database's encryption marker with the key given (writing
/// the marker on a database's first open).
pub(super) fn check_encryption(
    conn: &mut Connection,
    path: &Path,
    key: Option<&AtRestKey>,
) -> StoreResult<()> {
    let tx = conn.transaction().map_err(db)?;
    let marker: Option<Vec<u8>> = tx
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [ENCRYPTION_META],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    let p = path.display();
    match (marker, key) {
        (None, key) => {
            // Databases from before encryption existed have no marker: they
            // are in clear if they hold anything.
            let has_data: bool = tx
                .query_row(
                    "SELECT EXISTS(SELECT 1 FROM model_versions) OR EXISTS(SELECT 1 FROM ledger) \
                     OR EXISTS(SELECT 1 FROM meta)",
                    [],
                    |r| r.get(0),
                )
                .map_err(db)?;
            if has_data && key.is_some() {
                return Err(encryption_error(format!(
                    "{p} was written without encryption; storage.encryption_key_file cannot be \
                     turned on for an existing database (start with a new data_dir)"
                )));
            }
            let value = key.map_or_else(
                || CLEAR_MARKER.to_vec(),
                |k| k.seal(&key_check_aad(), KEY_CHECK),
            );
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                params![ENCRYPTION_META, value],
            )
            .map_err(db)?;
        }
        (Some(m), None) if m == CLEAR_MARKER => {}
        (Some(_), None) => {
            return Err(encryption_error(format!(
                "{p} is encrypted at rest; set storage.encryption_key_file to the key it was \
                 written with"
            )));
        }
        (Some(m), Some(_)) if m == CLEAR_MARKER => {
            return Err(encryption_error(format!(
                "{p} was written without encryption; storage.encryption_key_file cannot be \
                 turned on for an existing database (start with a new data_dir)"
            )));
        }
        (Some(m), Some(k)) => match k.open(&key_check_aad(), &m) {
            Ok(v) if v == KEY_CHECK => {}
            _ => {
                return Err(encryption_error(format!(
                    "{p} was written with a different encryption key than \
                     storage.encryption_key_file holds (wrong key file?)"
                )));
            }
        },
    }
    tx.commit().map_err(db)
}

/// Seals a blob (or passes it through without a key).
pub(super) fn seal_blob(key: Option<&AtRestKey>, aad: &Aad<'_>, plain: &[u8]) -> Value {
    match key {
        Some(k) => Value::Blob(k.seal(aad, plain)),
        None => Value::Blob(plain.to_vec()),
    }
}

/// Seals a text column (stored as a BLOB when sealed, as TEXT in clear).
pub(super) fn seal_text(key: Option<&AtRestKey>, aad: &Aad<'_>, plain: &str) -> Value {
    match key {
        Some(k) => Value::Blob(k.seal(aad, plain.as_bytes())),
        None => Value::Text(plain.to_owned()),
    }
}

pub(super) fn describe(aad: &Aad<'_>) -> String {
    format!(
        "{} of job {:?} record {}",
        aad.field, aad.job_id, aad.number
    )
}

/// Opens a stored blob.
pub(super) fn open_blob(key: Option<&AtRestKey>, aad: &Aad<'_>, v: Value) -> StoreResult<Vec<u8>> {
    match (key, v) {
        (Some(k), Value::Blob(b)) => k
            .open(aad, &b)
            .map_err(|e| encryption_error(format!("{}: {e}", describe(aad)))),
        (None, Value::Blob(b)) => Ok(b),
        (Some(_), _) => Err(encryption_error(format!(
            "{}: stored in clear in an encrypted database",
            describe(aad)
        ))),
        (None, other) => Err(corrupt(format!(
            "{}: expected a blob, found {:?}",
            describe(aad),
            other.data_type()
        ))),
    }
}

/// Opens a stored text column.
pub(super) fn open_text(key: Option<&AtRestKey>, aad: &Aad<'_>, v: Value) -> StoreResult<String> {
    let bytes = match (key, v) {
        (None, Value::Text(t)) => return Ok(t),
        (Some(_), Value::Text(_)) => {
            return Err(encryption_error(format!(
                "{}: stored in clear in an encrypted database",
                describe(aad)
            )));
        }
        (key @ Some(_), v @ Value::Blob(_)) => open_blob(key, aad, v)?,
        (_, other) => {
            return Err(corrupt(format!(
                "{}: expected text, found {:?}",
                describe(aad),
                other.data_type()
            )));
        }
    };
    String::from_utf8(bytes).map_err(|_| corrupt(format!("{}: not UTF-8", describe(aad))))
}

pub(super) fn version_aad<'a>(field: &'static str, job_id: &'a str, version: u64) -> Aad<'a> {
    Aad {
        field,
        job_id,
        number: version,
    }
}

/// What a job's spec and resolution are sealed to (with encryption at rest,
/// they are authenticated like every other record: whoever can write the
/// database cannot turn a job's noise off or change its q or z).
pub(super) fn job_aad<'a>(field: &'static str, job_id: &'a str) -> Aad<'a> {
    Aad {
        field,
        job_id,
        number: 0,
    }
}

pub(super) fn participation_aad(client_id: &str) -> Aad<'_> {
    Aad {
        field: "clients.participation",
        job_id: client_id,
        number: 0,
    }
}
