//! The audit log's hash chain (issue 21): pure hashing, no storage.
//!
//! Every audit row `i` (id, time, kind, job, client, detail) is chained to
//! the one before it: `h_i = SHA-256(h_{i-1} || canonical(row_i))`, with
//! `h_0` = [`genesis`]. [`canonical`] is length-prefixed field by field, so
//! no two rows share an encoding. A changed row no longer hashes to its
//! stored `h_i`; a deleted or reordered row breaks the link of the row after
//! it; rows pruned by the retention policy are replaced by a checkpoint that
//! carries the hash of the last pruned row, so the chain still verifies from
//! there. The newest head is anchored in every signed model release
//! (`fedsec_proto::release`), so a chain rewritten from scratch no longer
//! matches what clients were served.

use fedsec_proto::release::AuditAnchor;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::NewAuditEvent;

/// Domain of the genesis hash.
const GENESIS: &[u8] = b"fedsec.v1 audit chain genesis";

/// `h_0`: the hash an empty chain starts from.
pub fn genesis() -> [u8; 32] {
    Sha256::digest(GENESIS).into()
}

/// The canonical bytes of row `id`: id (u64), unix_ms (i64), then kind,
/// job_id, client_id and detail each as u64 byte length + UTF-8 bytes, all
/// little-endian.
pub fn canonical(id: u64, e: &NewAuditEvent) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(48 + e.kind.len() + e.job_id.len() + e.client_id.len() + e.detail.len());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&e.unix_ms.to_le_bytes());
    for s in [&e.kind, &e.job_id, &e.client_id, &e.detail] {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out
}

/// `h_i` of row `id` following `prev`.
pub fn link(prev: &[u8; 32], id: u64, e: &NewAuditEvent) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical(id, e));
    h.finalize().into()
}

/// What was pruned from the front of the chain: rows up to `last_id`, the
/// last of which hashed to `head`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// Id of the last pruned row.
    pub last_id: u64,
    /// Its hash: the `h_{i-1}` of the first kept row.
    #[serde(with = "hex_bytes")]
    pub head: [u8; 32],
    /// Rows pruned so far, in total.
    pub pruned_rows: u64,
    /// When the last prune ran.
    pub pruned_unix_ms: i64,
}

/// One problem `admin audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    /// Row id where the chain breaks (the first row that does not verify).
    pub id: u64,
    /// What is wrong there.
    pub problem: String,
}

/// The result of verifying a whole audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Rows checked.
    pub rows: u64,
    /// First and last row id checked.
    pub first_id: Option<u64>,
    /// Last row id.
    pub last_id: Option<u64>,
    /// The pruning checkpoint the chain starts from, if any.
    pub checkpoint: Option<Checkpoint>,
    /// The chain head (last row, or the checkpoint, or genesis).
    #[serde(with = "hex_bytes")]
    pub head: [u8; 32],
    /// Model-version anchors checked against their rows.
    pub anchors_checked: u64,
    /// Breaks, in row order (empty: the log verifies).
    pub breaks: Vec<ChainBreak>,
}

impl ChainReport {
    /// Whether the whole log verified.
    pub fn ok(&self) -> bool {
        self.breaks.is_empty()
    }

    /// The head as an anchor.
    pub fn anchor(&self) -> AuditAnchor {
        AuditAnchor {
            seq: self
                .last_id
                .or(self.checkpoint.as_ref().map(|c| c.last_id))
                .unwrap_or(0),
            hash: self.head,
        }
    }
}

/// Walks rows `(id, event, stored hash)` in id order from `start` (the
/// checkpoint head or genesis), recording every row whose stored hash is not
/// the recomputed link. Returns the recomputed hashes by id for anchor
/// checks, and the breaks. After a break the walk continues from the
/// stored hash, so one edit is reported once (at the first row it breaks),
/// not at every later row.
pub fn walk(
    start: [u8; 32],
    first_expected_id: Option<u64>,
    rows: impl IntoIterator<Item = (u64, NewAuditEvent, Option<[u8; 32]>)>,
) -> (Vec<(u64, [u8; 32])>, Vec<ChainBreak>) {
    let mut prev = start;
    let mut expected = first_expected_id;
    let mut hashes = Vec::new();
    let mut breaks = Vec::new();
    for (id, event, stored) in rows {
        if let Some(want) = expected
            && id != want
        {
            breaks.push(ChainBreak {
                id,
                problem: if id > want {
                    format!("rows {want}..={} are missing (deleted)", id - 1)
                } else {
                    format!("row id {id} is out of order (expected {want})")
                },
            });
        }
        expected = Some(id + 1);
        let computed = link(&prev, id, &event);
        match stored {
            None => breaks.push(ChainBreak {
                id,
                problem: "the row has no chain hash (inserted outside the coordinator)".into(),
            }),
            Some(h) if h != computed => breaks.push(ChainBreak {
                id,
                problem: "the row's content or position does not match its chain hash \
                          (changed, reordered, or a row before it was deleted)"
                    .into(),
            }),
            Some(_) => {}
        }
        let next = stored.unwrap_or(computed);
        hashes.push((id, next));
        prev = next;
    }
    (hashes, breaks)
}

/// Serde of 32-byte hashes as hex.
pub(crate) mod hex_bytes {
    use serde::Serializer;

    /// Hex of the bytes.
    pub(crate) fn serialize<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, detail: &str) -> NewAuditEvent {
        NewAuditEvent {
            unix_ms: 1000,
            kind: kind.into(),
            job_id: "j".into(),
            client_id: String::new(),
            detail: detail.into(),
        }
    }

    fn chain(events: &[NewAuditEvent]) -> Vec<(u64, NewAuditEvent, Option<[u8; 32]>)> {
        let mut prev = genesis();
        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let id = i as u64 + 1;
                prev = link(&prev, id, e);
                (id, e.clone(), Some(prev))
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies_and_each_edit_breaks_it_where_it_happened() {
        let events: Vec<_> = (0..5).map(|i| event("k", &format!("d{i}"))).collect();
        let rows = chain(&events);
        assert!(walk(genesis(), Some(1), rows.clone()).1.is_empty());
        // Changed content.
        let mut changed = rows.clone();
        changed[2].1.detail = "forged".into();
        let breaks = walk(genesis(), Some(1), changed).1;
        assert_eq!(breaks.len(), 1);
        assert_eq!(breaks[0].id, 3);
        // Deleted row.
        let mut deleted = rows.clone();
        deleted.remove(1);
        let breaks = walk(genesis(), Some(1), deleted).1;
        assert_eq!(breaks[0].id, 3);
        assert!(breaks[0].problem.contains("missing"), "{breaks:?}");
        // Two rows' contents swapped (ids kept).
        let mut swapped = rows.clone();
        let (a, b) = (swapped[1].1.clone(), swapped[3].1.clone());
        swapped[1].1 = b;
        swapped[3].1 = a;
        let breaks = walk(genesis(), Some(1), swapped).1;
        assert_eq!(breaks.iter().map(|b| b.id).collect::<Vec<_>>(), [2, 4]);
        // A wrong start (a forged checkpoint) breaks the first row.
        assert_eq!(walk([0; 32], Some(1), rows).1[0].id, 1);
    }

    #[test]
    fn canonical_rows_are_length_prefixed() {
        let a = NewAuditEvent {
            kind: "ab".into(),
            job_id: "c".into(),
            ..event("", "")
        };
        let b = NewAuditEvent {
            kind: "a".into(),
            job_id: "bc".into(),
            ..event("", "")
        };
        assert_ne!(canonical(1, &a), canonical(1, &b));
        assert_ne!(canonical(1, &a), canonical(2, &a));
    }
}
