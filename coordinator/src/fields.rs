//! Bounds on every string and bytes field a caller sends, checked before the
//! value is used, stored, logged or echoed in a status.
//!
//! | field | bound |
//! |---|---|
//! | job ids (`job_id` of every request and header), client ids | `[A-Za-z0-9][A-Za-z0-9._-]{0,63}` (≤ 64 bytes) |
//! | `RegisterRequest.software` | first 128 bytes kept, control characters replaced |
//! | `UpdateHeader.nonce` | 1–64 bytes |
//! | `UpdateTrailer.sha256` | 32 bytes |
//! | `TensorChunk.data` | ≤ 1 MiB, ≥ 64 KiB unless it completes the tensor |
//! | admin reasons (`ClientActionRequest.reason`, `RollbackModelRequest.reason`) | ≤ 1 KiB |
//! | `JobConfig.name` | ≤ 256 bytes |
//! | `JobConfig.init_weights_path` | ≤ 4 KiB |
//! | `JobConfig.noise_source` | ≤ 32 bytes |
//!
//! A refused value is never echoed whole: messages show at most
//! [`SHOWN_BYTES`] of it, escaped ([`shown`]), with its length. Audit-event
//! details are cut at [`MAX_AUDIT_DETAIL_BYTES`] as a last line of defence.

use fedsec_proto::tls::is_valid_id;

use crate::error::{Error, RejectReason};

/// Longest job, client or tenant id (the id grammar allows 64 bytes).
pub(crate) const MAX_ID_BYTES: usize = 64;

/// Longest reason an admin may attach to a client action or a rollback.
pub(crate) const MAX_REASON_BYTES: usize = 1024;

/// Longest software string kept from `Register` (longer ones are cut).
pub(crate) const MAX_SOFTWARE_BYTES: usize = 128;

/// Longest upload nonce.
pub(crate) const MAX_NONCE_BYTES: usize = 64;

/// Longest job name.
pub(crate) const MAX_NAME_BYTES: usize = 256;

/// Longest `init_weights_path`.
pub(crate) const MAX_PATH_BYTES: usize = 4096;

/// Longest noise-source name.
pub(crate) const MAX_NOISE_SOURCE_BYTES: usize = 32;

/// Most bytes of a refused value shown in a message.
pub(crate) const SHOWN_BYTES: usize = 64;

/// Longest audit-event detail stored.
pub(crate) const MAX_AUDIT_DETAIL_BYTES: usize = 4096;

/// The longest prefix of `s` of at most `max` bytes that ends on a character
/// boundary.
pub(crate) fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// `s` for a message: escaped (`{:?}`), at most [`SHOWN_BYTES`] of it, with
/// its length when cut.
pub(crate) fn shown(s: &str) -> String {
    if s.len() <= SHOWN_BYTES {
        format!("{s:?}")
    } else {
        format!("{:?}… ({} bytes)", prefix(s, SHOWN_BYTES), s.len())
    }
}

/// Checks a job id (`field` names it in the error, e.g. `header.job_id`).
pub(crate) fn job_id(field: &str, value: &str) -> Result<(), Error> {
    if is_valid_id(value) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(invalid_id(field, value)))
    }
}

/// Checks a job id that may be empty ("any job").
pub(crate) fn optional_job_id(field: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        Ok(())
    } else {
        job_id(field, value)
    }
}

/// Checks a job id of an upload header (a `bad_header` rejection).
pub(crate) fn header_job_id(value: &str) -> Result<(), Error> {
    if is_valid_id(value) {
        Ok(())
    } else {
        Err(Error::rejected(
            RejectReason::BadHeader,
            invalid_id("header.job_id", value),
        ))
    }
}

/// Checks a client id named in an Admin request.
pub(crate) fn client_id(field: &str, value: &str) -> Result<(), Error> {
    job_id(field, value)
}

fn invalid_id(field: &str, value: &str) -> String {
    if value.is_empty() {
        format!("{field}: required")
    } else {
        format!(
            "{field}: {} is not a valid id ([A-Za-z0-9][A-Za-z0-9._-]{{0,63}}, at most {MAX_ID_BYTES} bytes)",
            shown(value)
        )
    }
}

/// Checks a free-text field against a byte bound.
pub(crate) fn text(field: &str, value: &str, max: usize) -> Result<(), Error> {
    if value.len() <= max {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{field}: {} bytes, the limit is {max}",
            value.len()
        )))
    }
}

/// Checks an admin's reason.
pub(crate) fn reason(field: &str, value: &str) -> Result<(), Error> {
    text(field, value, MAX_REASON_BYTES)
}

/// A client's software string as kept: the first [`MAX_SOFTWARE_BYTES`],
/// with control characters (which could forge log lines) replaced by `?`.
pub(crate) fn software(value: &str) -> String {
    prefix(value, MAX_SOFTWARE_BYTES)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// An audit detail as stored: at most [`MAX_AUDIT_DETAIL_BYTES`].
pub(crate) fn audit_detail(mut detail: String) -> String {
    if detail.len() > MAX_AUDIT_DETAIL_BYTES {
        let keep = prefix(&detail, MAX_AUDIT_DETAIL_BYTES - 3).len();
        detail.truncate(keep);
        detail.push('…');
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_values_are_shown_cut_and_escaped() {
        let huge = "x".repeat(1 << 20);
        let e = job_id("job_id", &huge).unwrap_err().to_string();
        assert!(e.len() < 300, "{} bytes", e.len());
        assert!(e.contains("1048576 bytes"), "{e}");
        let e = job_id("job_id", "a\nb").unwrap_err().to_string();
        assert!(e.contains("\"a\\nb\""), "escaped: {e}");
        assert!(!e.contains('\n'));
        assert_eq!(
            header_job_id(&huge).unwrap_err().reject_reason(),
            Some(RejectReason::BadHeader)
        );
        assert!(job_id("job_id", "bots-1").is_ok());
        assert!(optional_job_id("job_id", "").is_ok());
        assert!(
            job_id("job_id", "")
                .unwrap_err()
                .to_string()
                .contains("required")
        );
        // Multi-byte characters are cut on a boundary.
        let s = "é".repeat(100);
        assert!(shown(&s).contains("200 bytes"));
    }

    #[test]
    fn text_fields_have_byte_bounds() {
        assert!(reason("reason", &"r".repeat(MAX_REASON_BYTES)).is_ok());
        let e = reason("reason", &"r".repeat(MAX_REASON_BYTES + 1)).unwrap_err();
        assert_eq!(e.to_string(), "reason: 1025 bytes, the limit is 1024");
        assert_eq!(software(&"s".repeat(1000)).len(), MAX_SOFTWARE_BYTES);
        assert_eq!(software("fedsec\r\nFAKE LOG"), "fedsec??FAKE LOG");
        assert_eq!(
            audit_detail("d".repeat(10_000)).len(),
            MAX_AUDIT_DETAIL_BYTES
        );
        assert_eq!(audit_detail("ok".into()), "ok");
    }
}
