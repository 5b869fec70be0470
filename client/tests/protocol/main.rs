//! The participant against a scripted coordinator (a test implementation of
//! `fedsec.v1.Coordinator` behind real mutual TLS): the simplest honest way
//! to serve a model whose digest does not match, and to fail uploads on
//! purpose. Checks: a tampered model is rejected and nothing is trained or
//! sent; transient upload failures are retried with the same nonce; a
//! definitive refusal is not retried; the ledger entry exists before the
//! first upload byte; the uploaded update is clipped and its digest right.

//!
//! One test binary, split by area: `scripted` (the scripted coordinator and
//! its fixtures), `model` (refused downloads), `upload` (retries, refusals,
//! the ledger around an upload), `task` (what a task may ask).

#![allow(clippy::unwrap_used, unreachable_pub, missing_docs)]

#[path = "../support/mod.rs"]
mod support;

mod model;
mod scripted;
mod task;
mod upload;
