//! fedsec coordinator library (filled by the coordinator issue).
