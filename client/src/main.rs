//! `fedsec-client` binary (filled by its issue).

fn main() {}
