//! TLS to PostgreSQL, with libpq's meaning of `sslmode` and `sslrootcert`.
//!
//! tokio-postgres understands `sslmode=disable|prefer|require` only, and no `sslrootcert`; it
//! leaves the certificate check to the TLS connector. So the connection string is read here
//! first: `sslmode`, `sslrootcert` and `sslsni` are taken out of it (URL query or key/value
//! form), the rest goes to [`tokio_postgres::Config`], and the connector (rustls, with the
//! aws-lc-rs provider the S3 client already uses) checks what the mode asks for:
//!
//! | `sslmode`          | TLS                         | certificate check                      |
//! |--------------------|-----------------------------|----------------------------------------|
//! | `disable`          | never                       | -                                      |
//! | `prefer` (default) | if the server offers it     | none, unless `sslrootcert` is a file   |
//! | `require`          | always, else the connection fails | none, unless `sslrootcert` is a file |
//! | `verify-ca`        | always                      | chain to a trusted root; any host name |
//! | `verify-full`      | always                      | chain to a trusted root and host name  |
//!
//! As in libpq, an explicit `sslrootcert` file makes `prefer` and `require` check the chain too
//! (like `verify-ca`). The trusted roots are the PEM certificates in `sslrootcert`; without it,
//! or with `sslrootcert=system` (libpq 16), the system's store (`SSL_CERT_FILE`/`SSL_CERT_DIR`
//! are honoured), falling back to the Mozilla roots built in when the system has none. Unlike
//! libpq, `~/.postgresql/root.crt` is not read. `sslrootcert=system` asks for `verify-full`
//! (the default with it; a weaker explicit mode is an error, as in libpq). `sslsni=0` turns off
//! Server Name Indication. Unix-socket connections never use TLS, whatever the mode (as in
//! libpq). Client certificates (`sslcert`, `sslkey`) are not supported.
//!
//! A failed check or a server without TLS under `require` fails the connection with a sentence
//! that says which and what to change (see [`explain`]).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> anyhow::Result<Self> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            // libpq's "allow" (plain first, TLS on refusal) is not something tokio-postgres can do.
            other => bail!(
                "invalid sslmode {other:?}: use disable, prefer, require, verify-ca or verify-full"
            ),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// Where the trusted root certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// The system's store (Mozilla's roots when it is empty).
    System,
    /// A PEM file of one or more CA certificates.
    File(PathBuf),
}

/// The TLS part of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// `sslrootcert`; `None` means the system's store where a check needs roots.
    pub root_certs: Option<RootCerts>,
    /// `sslsni` (default on).
    pub sni: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            mode: SslMode::Prefer,
            root_certs: None,
            sni: true,
        }
    }
}

/// What the connector checks of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

impl TlsSettings {
    fn check(&self) -> Check {
        match self.mode {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => match self.root_certs {
                Some(RootCerts::File(_)) => Check::Chain,
                _ => Check::Nothing,
            },
            SslMode::VerifyCa => Check::Chain,
            SslMode::VerifyFull => Check::ChainAndName,
        }
    }

    /// tokio-postgres's own mode: whether to ask for TLS and whether its absence is fatal.
    pub fn postgres_mode(&self) -> tokio_postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }

    fn describe_roots(&self) -> String {
        match &self.root_certs {
            Some(RootCerts::File(path)) => format!("sslrootcert={}", path.display()),
            _ => "the system's root certificates".to_string(),
        }
    }
}

/// The connection parameters handled here rather than by tokio-postgres.
const OWN_PARAMETERS: [&str; 3] = ["sslmode", "sslrootcert", "sslsni"];

/// Splits a libpq connection string (URL or key/value) into the part tokio-postgres parses and
/// the TLS settings.
pub fn split(url: &str) -> anyhow::Result<(String, TlsSettings)> {
    let (rest, params) = take_parameters(url, &OWN_PARAMETERS)?;
    let mut mode = None;
    let mut root_certs = None;
    let mut sni = true;
    // Later settings win, as in libpq.
    for (key, value) in params {
        match key.as_str() {
            "sslmode" => mode = Some(SslMode::parse(&value)?),
            "sslrootcert" => {
                root_certs = match value.as_str() {
                    "" => None,
                    "system" => Some(RootCerts::System),
                    path => Some(RootCerts::File(PathBuf::from(path))),
                }
            }
            "sslsni" => {
                sni = match value.as_str() {
                    "1" => true,
                    "0" => false,
                    other => bail!("invalid sslsni {other:?}: use 0 or 1"),
                }
            }
            _ => {}
        }
    }
    let mode = match (mode, &root_certs) {
        (None, Some(RootCerts::System)) => SslMode::VerifyFull,
        (Some(mode), Some(RootCerts::System)) if mode != SslMode::VerifyFull => bail!(
            "sslmode={} may not be used with sslrootcert=system: use sslmode=verify-full",
            mode.as_str()
        ),
        (mode, _) => mode.unwrap_or(SslMode::Prefer),
    };
    Ok((
        rest,
        TlsSettings {
            mode,
            root_certs,
            sni,
        },
    ))
}

/// Removes `keys` from a connection string, returning what is left and the removed (key, value)
/// pairs in order. A string this cannot read is returned whole, for tokio-postgres to reject
/// with its own message.
fn take_parameters(url: &str, keys: &[&str]) -> anyhow::Result<(String, Vec<(String, String)>)> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        take_from_url(url, keys)
    } else {
        Ok(take_from_key_values(url, keys).unwrap_or_else(|| (url.to_string(), Vec::new())))
    }
}

fn take_from_url(url: &str, keys: &[&str]) -> anyhow::Result<(String, Vec<(String, String)>)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), Vec::new()));
    };
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .map(|text| text.into_owned())
            .with_context(|| format!("invalid database URL: {text:?} is not UTF-8 once decoded"))
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(key)?;
        if keys.contains(&key.as_str()) {
            taken.push((key, decode(value)?));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, taken))
}

/// The key/value form: `host=db.example.com sslmode='verify-full'`, values optionally quoted,
/// with backslash escapes. `None` when the string does not read as one.
fn take_from_key_values(text: &str, keys: &[&str]) -> Option<(String, Vec<(String, String)>)> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let offset = |i: usize| chars.get(i).map_or(text.len(), |&(o, _)| o);
    let mut rest = String::new();
    let mut taken = Vec::new();
    let mut copied = 0; // byte offset up to which `text` is in `rest`
    let mut i = 0;
    loop {
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        if at(i).is_none() {
            break;
        }
        let start = i;
        let mut key = String::new();
        while let Some(c) = at(i).filter(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
            i += 1;
        }
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        if key.is_empty() || at(i) != Some('=') {
            return None;
        }
        i += 1;
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        let mut value = String::new();
        if at(i) == Some('\'') {
            i += 1;
            loop {
                match at(i)? {
                    '\'' => {
                        i += 1;
                        break;
                    }
                    '\\' => {
                        value.push(at(i + 1)?);
                        i += 2;
                    }
                    c => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while let Some(c) = at(i).filter(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(at(i + 1)?);
                    i += 2;
                } else {
                    value.push(c);
                    i += 1;
                }
            }
        }
        if keys.contains(&key.as_str()) {
            rest.push_str(&text[copied..offset(start)]);
            copied = offset(i);
            taken.push((key, value));
        }
    }
    rest.push_str(&text[copied..]);
    Some((rest, taken))
}

/// The rustls connector for these settings. Reads `sslrootcert` (or the system's store) when
/// the mode checks certificates, so a missing or unreadable file is reported here.
pub fn connector(settings: &TlsSettings) -> anyhow::Result<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let check = settings.check();
    let roots = match check {
        Check::Nothing => None,
        Check::Chain | Check::ChainAndName => Some(Arc::new(root_store(settings)?)),
    };
    let verifier = Arc::new(Verifier {
        roots,
        check_name: check == Check::ChainAndName,
        provider: provider.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.enable_sni = settings.sni;
    // What PostgreSQL 17 expects (and requires with sslnegotiation=direct); older servers ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(MakeRustlsConnect::new(config))
}

fn root_store(settings: &TlsSettings) -> anyhow::Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match &settings.root_certs {
        Some(RootCerts::File(path)) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading sslrootcert {}", path.display()))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    anyhow::anyhow!("sslrootcert {}: not a PEM file: {e}", path.display())
                })?;
                store.add(cert).map_err(|e| {
                    anyhow::anyhow!("sslrootcert {}: unusable certificate: {e}", path.display())
                })?;
            }
            if store.is_empty() {
                bail!(
                    "sslrootcert {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    path.display()
                );
            }
        }
        Some(RootCerts::System) | None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(native.certs);
            if added == 0 {
                tracing::warn!(
                    errors = ?native.errors,
                    "no root certificates in the system's store; checking the database's \
                     certificate against the Mozilla roots built into pgstorage"
                );
                store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
        }
    }
    Ok(store)
}

/// Checks what [`Check`] asks for; the handshake's signatures are always checked against the
/// certificate the server presented.
#[derive(Debug)]
struct Verifier {
    /// `None`: the certificate is not checked (`prefer`, `require`).
    roots: Option<Arc<RootCertStore>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
            if self.check_name {
                verify_server_name(&cert, server_name)?;
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A connection error, with a sentence in front when TLS is why it failed: which check failed
/// and what to change.
pub fn explain(error: tokio_postgres::Error, settings: &TlsSettings) -> anyhow::Error {
    let hint = hint(&error, settings);
    let error = anyhow::Error::new(error);
    match hint {
        Some(hint) => error.context(hint),
        None => error,
    }
}

fn hint(error: &tokio_postgres::Error, settings: &TlsSettings) -> Option<String> {
    let mode = settings.mode.as_str();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if current.to_string() == "server does not support TLS" {
            return Some(format!(
                "sslmode={mode} but the server does not offer TLS (turn on ssl in its \
                 postgresql.conf, or use sslmode=prefer or disable)"
            ));
        }
        let rustls_error = current.downcast_ref::<rustls::Error>().or_else(|| {
            current
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls_error) = rustls_error {
            let roots = settings.describe_roots();
            return Some(match rustls_error {
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
                    "the server's TLS certificate is not signed by a CA in {roots} \
                     (sslmode={mode}); name the CA that signed it with sslrootcert"
                ),
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                ) => format!(
                    "the server's TLS certificate does not name the host connected to \
                     (sslmode={mode} checks it): connect by a name the certificate lists, or use \
                     sslmode=verify-ca to check the CA only"
                ),
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired
                    | CertificateError::ExpiredContext { .. }
                    | CertificateError::NotValidYet
                    | CertificateError::NotValidYetContext { .. },
                ) => format!(
                    "the server's TLS certificate is outside its validity period (sslmode={mode})"
                ),
                rustls::Error::InvalidCertificate(_) => {
                    format!("the server's TLS certificate was refused (sslmode={mode}, {roots})")
                }
                _ => format!("the TLS handshake with the server failed (sslmode={mode})"),
            });
        }
        source = current.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> TlsSettings {
        split(url).unwrap().1
    }

    #[test]
    fn the_default_is_prefer_without_a_check() {
        let (rest, tls) = split("postgres://u@db.example.com/app").unwrap();
        assert_eq!(rest, "postgres://u@db.example.com/app");
        assert_eq!(tls, TlsSettings::default());
        assert_eq!(tls.check(), Check::Nothing);
    }

    #[test]
    fn url_parameters_are_taken_out_and_the_rest_kept() {
        let (rest, tls) = split(
            "postgresql://u:p@db:5433/app?application_name=x&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fca%20dir%2Fca.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgresql://u:p@db:5433/app?application_name=x&connect_timeout=5"
        );
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(
            tls.root_certs,
            Some(RootCerts::File("/etc/ca dir/ca.pem".into()))
        );
        assert_eq!(tls.check(), Check::ChainAndName);
        let config: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(config.get_application_name(), Some("x"));
    }

    #[test]
    fn a_url_with_only_our_parameters_loses_its_query() {
        let (rest, tls) = split("postgres://u@h/db?sslmode=require").unwrap();
        assert_eq!(rest, "postgres://u@h/db");
        assert_eq!(tls.mode, SslMode::Require);
        assert_eq!(tls.check(), Check::Nothing);
        assert_eq!(
            tls.postgres_mode(),
            tokio_postgres::config::SslMode::Require
        );
    }

    #[test]
    fn key_value_strings_work_too() {
        let (rest, tls) = split(
            "host=db user=u sslmode = 'verify-ca' sslrootcert='/tmp/it\\'s ca.pem' dbname=app",
        )
        .unwrap();
        assert_eq!(rest, "host=db user=u   dbname=app");
        assert_eq!(tls.mode, SslMode::VerifyCa);
        assert_eq!(
            tls.root_certs,
            Some(RootCerts::File("/tmp/it's ca.pem".into()))
        );
        let config: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(config.get_dbname(), Some("app"));
        assert_eq!(split("host=db sslmode=disable").unwrap().0, "host=db ");
    }

    #[test]
    fn a_malformed_key_value_string_is_left_for_tokio_postgres() {
        let (rest, tls) = split("host=db sslmode").unwrap();
        assert_eq!(rest, "host=db sslmode");
        assert_eq!(tls, TlsSettings::default());
    }

    #[test]
    fn later_settings_win() {
        assert_eq!(
            settings("postgres://h/db?sslmode=disable&sslmode=require").mode,
            SslMode::Require
        );
    }

    #[test]
    fn a_root_cert_file_makes_require_check_the_chain_as_libpq_does() {
        let tls = settings("postgres://h/db?sslmode=require&sslrootcert=/ca.pem");
        assert_eq!(tls.check(), Check::Chain);
        let tls = settings("postgres://h/db?sslmode=verify-ca");
        assert_eq!(tls.check(), Check::Chain);
        assert_eq!(tls.root_certs, None);
    }

    #[test]
    fn sslrootcert_system_means_verify_full() {
        let tls = settings("postgres://h/db?sslrootcert=system");
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_certs, Some(RootCerts::System));
        let error = split("postgres://h/db?sslrootcert=system&sslmode=require").unwrap_err();
        assert!(error.to_string().contains("verify-full"), "{error}");
    }

    #[test]
    fn unknown_values_are_refused_plainly() {
        let error = split("postgres://h/db?sslmode=verify").unwrap_err();
        assert!(error.to_string().contains("invalid sslmode"), "{error}");
        let error = split("postgres://h/db?sslsni=yes").unwrap_err();
        assert!(error.to_string().contains("sslsni"), "{error}");
    }

    #[test]
    fn sslsni_turns_sni_off() {
        assert!(!settings("postgres://h/db?sslsni=0").sni);
        assert!(settings("postgres://h/db?sslsni=1").sni);
    }

    #[test]
    fn a_missing_or_empty_root_cert_file_is_reported_with_its_path() {
        let missing = TlsSettings {
            mode: SslMode::VerifyFull,
            root_certs: Some(RootCerts::File("/nonexistent/ca.pem".into())),
            sni: true,
        };
        let error = format!("{:#}", connector(&missing).err().unwrap());
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");

        let dir = std::env::temp_dir().join(format!("pgstorage-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let settings = TlsSettings {
            root_certs: Some(RootCerts::File(empty.clone())),
            ..missing
        };
        let error = format!("{:#}", connector(&settings).err().unwrap());
        let _ = std::fs::remove_dir_all(&dir);
        assert!(error.contains("holds no PEM certificate"), "{error}");
    }

    #[test]
    fn modes_without_a_check_need_no_roots() {
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Require] {
            let settings = TlsSettings {
                mode,
                ..TlsSettings::default()
            };
            assert!(connector(&settings).is_ok());
        }
    }
}
