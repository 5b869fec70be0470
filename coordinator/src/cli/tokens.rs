//! `fedsec-coordinator tokens ...`: the embedded token issuer for
//! deployments without an IdP — a local ES256 key, the JWKS the
//! coordinator's `[auth.tokens] jwks_file` names, and short-lived access
//! tokens bound to a certificate identity.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use fedsec_coordinator::CoordinatorConfig;
use fedsec_coordinator::auth::mint::{self, AccessClaims, SigningKey};
use fedsec_proto::private_file::{self, Existing};
use fedsec_proto::tls::PeerIdentity;

use super::CliError;

/// Token commands.
#[derive(Debug, Subcommand)]
pub(crate) enum TokensCommand {
    /// Create a signing key (mode 0600) and add its public key to a JWKS
    /// file (created if missing; existing keys stay, so this also rotates).
    Keygen(KeygenArgs),
    /// Mint a short-lived access token.
    Issue(IssueArgs),
    /// Remove a key from the JWKS file (after its tokens have expired).
    Retire(RetireArgs),
}

/// Arguments of `tokens keygen`.
#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// The signing key to create (PKCS#8 PEM, ECDSA P-256).
    #[arg(long)]
    key: PathBuf,
    /// The JWKS file to add the public key to.
    #[arg(long)]
    jwks: PathBuf,
    /// Overwrite an existing key file.
    #[arg(long)]
    force: bool,
}

/// Arguments of `tokens issue`.
#[derive(Debug, Args)]
pub(crate) struct IssueArgs {
    /// The signing key (`tokens keygen`).
    #[arg(long)]
    key: PathBuf,
    /// Take issuer and audience from this coordinator config's `[auth.tokens]`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Issuer (`iss`); overrides the config's.
    #[arg(long)]
    issuer: Option<String>,
    /// Audience (`aud`); overrides the config's.
    #[arg(long)]
    audience: Option<String>,
    /// Subject: the certificate identity the token is for
    /// (`spiffe://fedsec/tenant/<t>/client/<c>` or `spiffe://fedsec/admin/<name>`).
    #[arg(long, conflicts_with = "cert")]
    subject: Option<String>,
    /// Take the subject from this certificate (PEM).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// A scope to grant (repeat): fedsec.client, fedsec.admin.read, fedsec.admin.write.
    #[arg(long = "scope", required = true)]
    scopes: Vec<String>,
    /// Lifetime: 900, 900s, 15m, 1h (at most 24h).
    #[arg(long, default_value = "15m")]
    ttl: String,
    /// Authentication methods to state in `amr` (repeat), e.g. `mfa` for
    /// an admin write token. Only state what the holder really did.
    #[arg(long = "amr")]
    amr: Vec<String>,
    /// Write the token to this file (mode 0600) instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Arguments of `tokens retire`.
#[derive(Debug, Args)]
pub(crate) struct RetireArgs {
    /// The JWKS file.
    #[arg(long)]
    jwks: PathBuf,
    /// The key id to remove.
    #[arg(long)]
    kid: String,
}

/// Runs a tokens subcommand.
pub(crate) fn run(cmd: TokensCommand) -> Result<(), CliError> {
    match cmd {
        TokensCommand::Keygen(a) => {
            let key = SigningKey::generate_file(&a.key, a.force)?;
            let n = mint::add_to_jwks(&a.jwks, &key)?;
            println!(
                "wrote signing key {} (kid {}, mode 0600) and {} ({n} key(s)); \
                 set [auth.tokens] jwks_file to it",
                a.key.display(),
                key.kid(),
                a.jwks.display()
            );
            Ok(())
        }
        TokensCommand::Retire(a) => {
            let n = mint::remove_from_jwks(&a.jwks, &a.kid)?;
            println!(
                "removed {} from {} ({n} key(s) left)",
                a.kid,
                a.jwks.display()
            );
            Ok(())
        }
        TokensCommand::Issue(a) => issue(a),
    }
}

fn issue(a: IssueArgs) -> Result<(), CliError> {
    let configured = match &a.config {
        Some(path) => Some(
            CoordinatorConfig::load(path)?
                .auth
                .tokens
                .ok_or_else(|| format!("{}: no [auth.tokens] section", path.display()))?,
        ),
        None => None,
    };
    let issuer = a
        .issuer
        .clone()
        .or_else(|| configured.as_ref().map(|c| c.issuer.clone()))
        .ok_or("give --issuer or --config")?;
    let audience = a
        .audience
        .clone()
        .or_else(|| configured.as_ref().map(|c| c.audience.clone()))
        .ok_or("give --audience or --config")?;
    let subject = match (&a.subject, &a.cert) {
        (Some(s), None) => {
            PeerIdentity::parse_uri(s).map_err(|e| format!("--subject {s:?}: {e}"))?;
            s.clone()
        }
        (None, Some(cert)) => subject_of(cert)?,
        _ => return Err("give --subject or --cert".into()),
    };
    let ttl = mint::parse_ttl(&a.ttl).map_err(|e| format!("--ttl: {e}"))?;
    let key = SigningKey::load(&a.key)?;
    let mut claims = AccessClaims::new(&issuer, &audience, &subject, &a.scopes, ttl)?;
    claims.amr = a.amr.clone();
    let token = key.issue(&claims)?;
    match &a.out {
        None => println!("{token}"),
        Some(path) => {
            write_private(path, &format!("{token}\n"))?;
            eprintln!(
                "wrote a token for {subject} ({}), valid {} s, to {}",
                a.scopes.join(" "),
                ttl.as_secs(),
                path.display()
            );
        }
    }
    Ok(())
}

/// The SPIFFE identity of a PEM certificate.
fn subject_of(cert: &Path) -> Result<String, CliError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_file(cert)
        .map_err(|e| format!("--cert {}: {e}", cert.display()))?;
    Ok(PeerIdentity::from_cert_der(der.as_ref())
        .map_err(|e| format!("--cert {}: {e}", cert.display()))?
        .to_uri())
}

/// Writes `text` to `path` with mode 0600, replacing it atomically.
fn write_private(path: &Path, text: &str) -> Result<(), CliError> {
    let tmp = path.with_extension("tmp");
    private_file::write(&tmp, text.as_bytes(), Existing::Truncate)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}
