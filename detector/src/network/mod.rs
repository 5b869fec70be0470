//! Network context of a session beyond the session itself: sliding windows
//! over what its client address, network prefix, user agent, account and
//! autonomous system did ([`windows`]), the autonomous system from a
//! database the tenant supplies ([`asn`]), and verified-crawler checks
//! against the IP ranges search engines publish ([`crawlers`]).
//!
//! [`Enrichment`] bundles the tenant's files; without them the features
//! that need them are marked missing, never guessed.

pub mod asn;
pub mod crawlers;
pub mod windows;

use std::path::PathBuf;

pub use asn::AsnDb;
pub use crawlers::{CrawlerCheck, CrawlerRanges, CrawlerRangesFile};
pub use windows::{WindowConfig, WindowCounts, WindowEvent, Windows};

/// A tenant-supplied network file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not in the expected format.
    #[error("{path}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// The tenant's network files, loaded.
#[derive(Debug, Default)]
pub struct Enrichment {
    /// AS database (`None`: only ASNs written in the log are known).
    pub asn: Option<AsnDb>,
    /// Crawler ranges (empty: verification is missing).
    pub crawlers: CrawlerRanges,
}

impl Enrichment {
    /// Loads the files named in a configuration.
    pub fn load(
        asn_db: Option<&std::path::Path>,
        crawler_ranges: &[CrawlerRangesFile],
    ) -> Result<Self, NetworkError> {
        Ok(Self {
            asn: asn_db.map(AsnDb::open).transpose()?,
            crawlers: CrawlerRanges::load(crawler_ranges)?,
        })
    }

    /// The AS of a request: the one logged, else the database's.
    pub fn asn_of(&self, logged: Option<u32>, addr: Option<std::net::IpAddr>) -> Option<u32> {
        logged.or_else(|| self.asn.as_ref()?.lookup(addr?))
    }
}
