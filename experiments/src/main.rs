//! `fedsec-experiments` binary (filled by its issue).

fn main() {}
