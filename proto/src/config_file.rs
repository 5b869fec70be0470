//! The TOML configuration files of fedsec's binaries (`coordinator.toml`,
//! `client.toml`): one error type whose validation errors name the dotted
//! key, and the reading and parsing both loaders share. Each binary's
//! schema, defaults and validation stay in its own crate.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file (`<config>` for text parsed without a file).
        path: PathBuf,
        /// The parser's message (with line, column and key).
        message: String,
    },
    /// A value is out of range or inconsistent with another one.
    #[error("{key}: {problem}")]
    Invalid {
        /// Dotted path of the offending key, e.g. `jobs[0].delta`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl ConfigError {
    /// An invalid value at `key`.
    pub fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// The offending key, for `Invalid` errors.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// Deserializes TOML text into `T` (the schema decides unknown keys; a
/// failure is a [`ConfigError::Parse`] of `<config>`).
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: PathBuf::from("<config>"),
        message: e.to_string(),
    })
}

/// Reads `path` and hands its text to `from_str` (the binary's parse and
/// validation); a parse error names `path`. Returns the value and the
/// directory relative paths in the file are resolved against.
pub fn load<T>(
    path: &Path,
    from_str: impl FnOnce(&str) -> Result<T, ConfigError>,
) -> Result<(T, PathBuf), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let value = from_str(&text).map_err(|e| match e {
        ConfigError::Parse { message, .. } => ConfigError::Parse {
            path: path.to_owned(),
            message,
        },
        other => other,
    })?;
    let base = path.parent().unwrap_or(Path::new(".")).to_owned();
    Ok((value, base))
}

/// Makes a relative `path` relative to `base` (the config file's directory).
pub fn resolve(base: &Path, path: &mut PathBuf) {
    if path.is_relative() {
        *path = base.join(&*path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Tiny {
        n: u32,
    }

    #[test]
    fn a_parse_error_names_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.toml");
        std::fs::write(&path, "n = 1\nsurprise = 2\n").unwrap();
        let e = load(&path, parse::<Tiny>).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with(&path.display().to_string()), "{text}");
        assert!(text.contains("surprise"), "{text}");
    }

    #[test]
    fn a_missing_file_is_a_read_error_and_relative_paths_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(&dir.path().join("none.toml"), parse::<Tiny>).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e}");
        let path = dir.path().join("tiny.toml");
        std::fs::write(&path, "n = 3\n").unwrap();
        let (t, base) = load(&path, parse::<Tiny>).unwrap();
        assert_eq!(t.n, 3);
        let mut p = PathBuf::from("certs/ca.pem");
        resolve(&base, &mut p);
        assert_eq!(p, dir.path().join("certs/ca.pem"));
        let mut abs = PathBuf::from("/etc/ca.pem");
        resolve(&base, &mut abs);
        assert_eq!(abs, PathBuf::from("/etc/ca.pem"));
        assert_eq!(ConfigError::invalid("a.b", "bad").key(), Some("a.b"));
    }
}
