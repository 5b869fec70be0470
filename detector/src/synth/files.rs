//! Writing a directory of generated tenants: logs, labels, the synthetic
//! Internet's network files and a manifest.

use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

use super::{SynthConfig, TenantSummary, netplan, write_tenant};

/// File names of tenant `index` inside an output directory.
pub fn tenant_file_names(index: usize) -> (String, String) {
    (
        format!("tenant-{index:03}.log"),
        format!("tenant-{index:03}.labels.jsonl"),
    )
}

/// File name of the synthetic AS database [`write_dir`] writes.
pub const ASN_DB_FILE: &str = "asn.tsv";

/// Writes every tenant's log and labels into `dir` (created if missing),
/// the synthetic Internet's network files ([`ASN_DB_FILE`],
/// `crawler-ranges/{googlebot,bingbot}.json`) and a `manifest.json` with the
/// configuration and each tenant's summary.
pub fn write_dir(cfg: &SynthConfig, dir: &Path) -> io::Result<Vec<TenantSummary>> {
    cfg.validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::with_capacity(cfg.tenants);
    for i in 0..cfg.tenants {
        let (log_name, labels_name) = tenant_file_names(i);
        let mut log = io::BufWriter::new(std::fs::File::create(dir.join(log_name))?);
        let mut labels = io::BufWriter::new(std::fs::File::create(dir.join(labels_name))?);
        out.push(write_tenant(cfg, i, &mut log, &mut labels)?);
        log.flush()?;
        labels.flush()?;
    }
    // The tenants' network files: the AS database and crawler ranges of the
    // synthetic Internet (`data.asn_db`, `data.crawler_ranges`).
    std::fs::write(dir.join(ASN_DB_FILE), netplan::asn_tsv())?;
    std::fs::create_dir_all(dir.join("crawler-ranges"))?;
    std::fs::write(
        dir.join("crawler-ranges/googlebot.json"),
        netplan::GOOGLEBOT_JSON,
    )?;
    std::fs::write(
        dir.join("crawler-ranges/bingbot.json"),
        netplan::BINGBOT_JSON,
    )?;
    #[derive(Serialize)]
    struct Manifest<'a> {
        generator: &'static str,
        config: &'a SynthConfig,
        asn_db: &'static str,
        crawler_ranges: [&'static str; 2],
        tenants: &'a [TenantSummary],
    }
    let manifest = Manifest {
        generator: concat!("fedsec-detector ", env!("CARGO_PKG_VERSION")),
        config: cfg,
        asn_db: ASN_DB_FILE,
        crawler_ranges: [
            "crawler-ranges/googlebot.json",
            "crawler-ranges/bingbot.json",
        ],
        tenants: &out,
    };
    let mut f = io::BufWriter::new(std::fs::File::create(dir.join("manifest.json"))?);
    serde_json::to_writer_pretty(&mut f, &manifest)?;
    f.write_all(b"\n")?;
    f.flush()?;
    Ok(out)
}
