//! Command-line flags. Every flag can also be set through the environment variable named next to
//! it; this file is the one place where configuration is declared and documented.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::bytes::{S3Config, StoreConfig};

mod tools;

pub use tools::{
    BenchRequest, BenchSqlArgs, PolicyCheckArgs, PolicyCommand, PolicyListArgs, S3KeyAdminArgs,
    S3KeyCreateArgs, S3KeyRevokeArgs, S3KeysCommand,
};

/// Postgres-native object storage server.
#[derive(Debug, Parser)]
#[command(name = "pgstorage", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// How log lines on stderr look: `text` for people, `json` (one object per line) for log
    /// collectors.
    #[arg(long, global = true, env = "PGSTORAGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// Parsed once at start-up: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (embedded PostgreSQL unless --database-url is given).
    Serve(ServeArgs),
    /// Apply the embedded migrations and exit.
    Migrate(DatabaseArgs),
    /// Print a JWT signed with the server's secret.
    Token(TokenArgs),
    /// Run one garbage-collection pass over the byte journal and exit.
    Gc(GcArgs),
    /// Manage S3 access keys kept in the database (each bound to a role and claims).
    #[command(name = "s3-keys", subcommand)]
    S3Keys(S3KeysCommand),
    /// Test and list the Row Level Security policies on the storage tables.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Print a pgbench script of the statements a request runs (used by bench/ceilings).
    #[command(name = "bench-sql", hide = true)]
    BenchSql(BenchSqlArgs),
}

/// Where the data lives: the data directory and, optionally, an external database.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Directory for the embedded cluster, the local byte store and the generated JWT secret.
    #[arg(long, env = "PGSTORAGE_DATA_DIR", default_value = "./pgstorage-data")]
    pub data_dir: PathBuf,

    /// PostgreSQL URL of a privileged role (runs migrations and maintenance). Absent: start the
    /// embedded cluster inside the data directory. TLS as in libpq: `?sslmode=` disable, prefer
    /// (default), require, verify-ca or verify-full, and `sslrootcert=` a CA file or `system`.
    #[arg(long, env = "PGSTORAGE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// PostgreSQL URL for request traffic: a NOINHERIT, non-superuser login role that is a member
    /// of the API roles, so a transaction whose role was never switched can read nothing.
    /// Absent with --database-url: request traffic uses --database-url (a warning is logged).
    /// Takes the same TLS parameters as --database-url.
    #[arg(long, env = "PGSTORAGE_REQUEST_DATABASE_URL", hide_env_values = true)]
    pub request_database_url: Option<String>,

    /// Directory of the local-disk byte store. Default: `<data-dir>/bytes`.
    #[arg(long, env = "PGSTORAGE_FS_ROOT")]
    pub fs_root: Option<PathBuf>,
}

impl DatabaseArgs {
    pub fn fs_root(&self) -> PathBuf {
        self.fs_root
            .clone()
            .unwrap_or_else(|| self.data_dir.join("bytes"))
    }
}

/// Which byte store holds object bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// A directory on local disk (--fs-root).
    Fs,
    /// An S3-compatible object store (--s3-*).
    S3,
    /// Inside the database itself: bytes commit in the same transaction as their rows.
    Postgres,
}

/// Where object bytes live.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Byte store for object bytes.
    #[arg(long, env = "PGSTORAGE_BACKEND", value_enum, default_value_t = Backend::Fs)]
    pub backend: Backend,

    #[command(flatten)]
    pub s3: S3Args,
}

/// The S3-compatible store (`--backend s3`).
#[derive(Debug, Clone, Args)]
pub struct S3Args {
    /// S3-compatible endpoint URL (e.g. http://127.0.0.1:9000). Absent: AWS itself, with the
    /// usual AWS settings and credential sources (AWS_* variables, web identity, instance role).
    #[arg(long, env = "PGSTORAGE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// Region (absent: AWS_REGION, else us-east-1).
    #[arg(long, env = "PGSTORAGE_S3_REGION")]
    pub s3_region: Option<String>,

    /// Bucket holding the bytes (required with --backend s3; it must exist).
    #[arg(long, env = "PGSTORAGE_S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// Access key id (absent: the AWS credential sources).
    #[arg(long, env = "PGSTORAGE_S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,

    /// Secret access key (absent: the AWS credential sources).
    #[arg(long, env = "PGSTORAGE_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,

    /// Address the bucket in the URL path rather than the host name (most S3-compatible
    /// servers: MinIO, moto, Ceph).
    #[arg(long, env = "PGSTORAGE_S3_FORCE_PATH_STYLE")]
    pub s3_force_path_style: bool,

    /// Key prefix inside the bucket (e.g. `pgstorage/`), so one bucket can serve several uses.
    #[arg(long, env = "PGSTORAGE_S3_PREFIX")]
    pub s3_prefix: Option<String>,

    /// Longest wait for a connection to the store.
    #[arg(long, env = "PGSTORAGE_S3_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub s3_connect_timeout: Duration,

    /// Longest one request to the store may take (for downloads: the longest pause between
    /// reads); a store that does not answer in time makes the request fail with 503.
    #[arg(long, env = "PGSTORAGE_S3_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub s3_request_timeout: Duration,

    /// Retries of a failed request to the store (within --s3-request-timeout of the first try).
    #[arg(long, env = "PGSTORAGE_S3_MAX_RETRIES", default_value_t = 3)]
    pub s3_max_retries: usize,
}

impl StoreArgs {
    /// The byte store these flags describe (`--fs-root` comes with the database flags, since it
    /// defaults to a directory under the data directory).
    pub fn store_config(&self, database: &DatabaseArgs) -> anyhow::Result<StoreConfig> {
        Ok(match self.backend {
            Backend::Fs => StoreConfig::Fs {
                root: database.fs_root(),
            },
            Backend::Postgres => StoreConfig::Postgres,
            Backend::S3 => {
                let s3 = &self.s3;
                let Some(bucket) = s3.s3_bucket.clone() else {
                    anyhow::bail!("--backend s3 needs --s3-bucket (or PGSTORAGE_S3_BUCKET)");
                };
                StoreConfig::S3(S3Config {
                    endpoint: s3.s3_endpoint.clone(),
                    region: s3.s3_region.clone(),
                    bucket,
                    access_key_id: s3.s3_access_key_id.clone(),
                    secret_access_key: s3.s3_secret_access_key.clone(),
                    force_path_style: s3.s3_force_path_style,
                    prefix: s3.s3_prefix.clone(),
                    connect_timeout: s3.s3_connect_timeout,
                    request_timeout: s3.s3_request_timeout,
                    max_retries: s3.s3_max_retries,
                })
            }
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct JwtArgs {
    /// HS256 secret for JWTs. Absent: generated once and kept in the data directory.
    #[arg(long, env = "PGSTORAGE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub jwt: JwtArgs,

    /// Public keys (a JWKS) that request tokens may also be signed with (ES256, ES384, RS256,
    /// RS384, RS512, PS256, PS384, PS512, EdDSA), e.g. a Supabase project's signing keys: the
    /// JSON itself (starting with `{`) or a path to a JSON file. Read once at start-up.
    #[arg(long, env = "PGSTORAGE_JWT_JWKS", hide_env_values = true)]
    pub jwt_jwks: Option<String>,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub s3_api: S3ApiArgs,

    /// Address to listen on.
    #[arg(long, env = "PGSTORAGE_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on.
    #[arg(long, env = "PGSTORAGE_PORT", default_value_t = 5000)]
    pub port: u16,

    /// Roles a JWT's `role` claim may name (anything else is refused with 403).
    #[arg(
        long,
        env = "PGSTORAGE_ROLES",
        value_delimiter = ',',
        default_value = "anon,authenticated,service_role"
    )]
    pub roles: Vec<String>,

    /// Largest object accepted, in bytes or with a unit (e.g. 50MB, 5GB); buckets may set less.
    #[arg(long, env = "PGSTORAGE_MAX_FILE_SIZE", default_value = "50GB", value_parser = parse_size)]
    pub max_file_size: u64,

    /// Memory for the bytes of small objects (up to 64 KiB each) read recently, e.g. 16MiB;
    /// 0 turns it off. Bytes under a key never change, so a kept copy is never stale; what
    /// a reader may see is still decided by its policies on every request.
    #[arg(long, env = "PGSTORAGE_SMALL_OBJECT_CACHE", default_value = "16MiB", value_parser = parse_size)]
    pub small_object_cache: u64,

    /// Connections in each database pool.
    #[arg(long, env = "PGSTORAGE_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: usize,

    /// Request connections that uploads may hold at once while their bodies stream (the
    /// postgres store writes a body in the transaction of its row). Absent: half of
    /// --db-pool-size. Always fewer than the pool, so downloads, listings and /health find a
    /// connection however many uploads are in progress; further uploads wait for one.
    #[arg(long, env = "PGSTORAGE_DB_UPLOAD_CONNECTIONS")]
    pub db_upload_connections: Option<usize>,

    /// Seconds superseded or abandoned bytes are kept before the collector frees them, so that
    /// readers of an old version can finish.
    #[arg(long, env = "PGSTORAGE_GC_GRACE_SECONDS", default_value_t = 3600)]
    pub gc_grace_seconds: u64,

    /// Seconds between in-process garbage-collection passes (0 disables the in-process collector).
    #[arg(long, env = "PGSTORAGE_GC_INTERVAL_SECONDS", default_value_t = 60)]
    pub gc_interval_seconds: u64,

    /// Seconds an upload's staged bytes are safe without renewal (renewed while bytes flow);
    /// after a crash, the collector frees them once this has passed.
    #[arg(long, env = "PGSTORAGE_UPLOAD_LEASE_SECONDS", default_value_t = 60)]
    pub upload_lease_seconds: u64,

    /// Longest pause allowed between two pieces of an upload's body (e.g. 30s, 2m); a stalled
    /// upload is refused with 408 and frees what it held (with the postgres store, a
    /// transaction and a connection).
    #[arg(long, env = "PGSTORAGE_BODY_IDLE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub body_idle_timeout: std::time::Duration,

    /// Smallest size of each part of a multipart upload except the last (e.g. 5MiB), checked
    /// when the upload completes.
    #[arg(long, env = "PGSTORAGE_MULTIPART_MIN_PART_SIZE", default_value = "5MiB", value_parser = parse_size)]
    pub multipart_min_part_size: u64,

    /// How long a multipart or resumable upload may go without a new part (e.g. 24h, 7d) before
    /// the collector removes it and frees its parts.
    #[arg(long, env = "PGSTORAGE_MULTIPART_EXPIRY", default_value = "24h", value_parser = parse_duration)]
    pub multipart_expiry: std::time::Duration,

    /// Least rate at which an upload's body must arrive, in bytes per second (e.g. 1KB, 0 for no
    /// minimum), averaged over each --body-rate-window; a slower upload is refused with 408 and
    /// frees what it held. Only time spent waiting for the client counts.
    #[arg(long, env = "PGSTORAGE_BODY_MIN_RATE", default_value = "1KB", value_parser = parse_size)]
    pub body_min_rate: u64,

    /// The span over which --body-min-rate is averaged (e.g. 30s).
    #[arg(long, env = "PGSTORAGE_BODY_RATE_WINDOW", default_value = "30s", value_parser = parse_duration)]
    pub body_rate_window: std::time::Duration,

    /// Longest time a client may take to send a request's headers (e.g. 30s); past it the
    /// connection is closed.
    #[arg(long, env = "PGSTORAGE_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub header_read_timeout: std::time::Duration,

    /// The URL clients reach this server at (e.g. https://files.example.com, or
    /// https://api.example.com/storage/v1 behind a gateway). URLs signed in the database by
    /// `storage.get_file` point there. Absent: http://<listening address>.
    #[arg(long, env = "PGSTORAGE_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Largest object `storage.get_file` returns from the database itself (postgres store; e.g.
    /// 25MB): PostgREST holds a whole response in memory. Larger objects are refused (SQLSTATE
    /// 54000).
    #[arg(long, env = "PGSTORAGE_SQL_FILE_MAX_SIZE", default_value = "25MB", value_parser = parse_size)]
    pub sql_file_max_size: u64,

    /// How long the download URLs that `storage.get_file` signs in the database stay valid
    /// (e.g. 60s, 5m).
    #[arg(long, env = "PGSTORAGE_SQL_FILE_URL_LIFETIME", default_value = "60s", value_parser = parse_duration)]
    pub sql_file_url_lifetime: std::time::Duration,

    /// Serve Prometheus metrics at `/metrics` on the main port, to service_role only (a
    /// service_role JWT as `Authorization: Bearer`).
    #[arg(long, env = "PGSTORAGE_METRICS")]
    pub metrics: bool,

    /// Serve Prometheus metrics at `/metrics` on this port of --host too, without
    /// authentication (for a scraper on a private network; implies nothing on the main port).
    #[arg(long, env = "PGSTORAGE_METRICS_PORT")]
    pub metrics_port: Option<u16>,

    #[command(flatten)]
    pub transform: TransformArgs,
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// Directory holding the generated secret (when --jwt-secret is not given).
    #[arg(long, env = "PGSTORAGE_DATA_DIR", default_value = "./pgstorage-data")]
    pub data_dir: PathBuf,

    #[command(flatten)]
    pub jwt: JwtArgs,

    /// The `role` claim.
    #[arg(long)]
    pub role: String,

    /// The `sub` claim (the user id that `auth.uid()` returns).
    #[arg(long)]
    pub sub: Option<String>,

    /// Lifetime, e.g. 3600, 30s, 15m, 1h, 7d, 10y.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub expires_in: std::time::Duration,

    /// Extra claims as a JSON object, merged into the token.
    #[arg(long)]
    pub claims: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub store: StoreArgs,

    /// Free released bytes that have been unreferenced for at least this many seconds.
    #[arg(long, env = "PGSTORAGE_GC_GRACE_SECONDS", default_value_t = 3600)]
    pub gc_grace_seconds: u64,
}

/// Parses a size such as `1048576`, `10MB`, `1.5GB` or `512 KiB`. Decimal units (KB, MB, GB, TB)
/// are powers of 1000 and binary units (KiB, MiB, GiB, TiB) powers of 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size: expected a number with an optional unit"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => return Err(format!("unknown size unit '{other}' in '{text}'")),
    };
    let bytes = number * factor as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 || bytes.fract() != 0.0 {
        return Err(format!("'{text}' is not a whole number of bytes"));
    }
    Ok(bytes as u64)
}

/// Parses a switch: `on`/`off` (also `true`/`false`, `yes`/`no`, `1`/`0`).
pub fn parse_on_off(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(format!("'{text}' is not on or off")),
    }
}

/// Parses a duration such as `3600`, `30s`, `15m`, `1h`, `7d` or `10y` (365 days).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration such as 30s, 15m, 1h or 7d"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "y" => 365 * 86_400,
        other => return Err(format!("unknown duration unit '{other}' in '{text}'")),
    };
    number
        .checked_mul(seconds)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("duration '{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("10 mb"), Ok(10_000_000));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("2MiB"), Ok(2 * 1024 * 1024));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("10XB").is_err());
        assert!(parse_size("1.5B").is_err());
        assert!(parse_size("-1").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_duration("1h").unwrap().as_secs(), 3600);
        assert_eq!(parse_duration("7d").unwrap().as_secs(), 7 * 86_400);
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn transform_flags() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            transform: TransformArgs,
        }
        let parse = |args: &[&str]| {
            let mut argv = vec!["pgstorage"];
            argv.extend_from_slice(args);
            <Cli as clap::Parser>::try_parse_from(argv).map(|cli| cli.transform.config())
        };
        let defaults = parse(&[]).unwrap();
        assert!(defaults.cache);
        assert_eq!(defaults.memory, 160 * 1024 * 1024);
        assert!(!parse(&["--transform-cache", "off"]).unwrap().cache);
        assert!(parse(&["--transform-cache=on"]).unwrap().cache);
        assert!(parse(&["--transform-cache", "maybe"]).is_err());
        assert_eq!(
            parse(&["--transform-memory", "64MiB"]).unwrap().memory,
            64 * 1024 * 1024
        );
    }
}

/// The S3-compatible API that pgstorage serves at `/s3` and `/storage/v1/s3` (not to be confused
/// with the `--s3-*` flags of the S3 byte store, which pgstorage is a client of).
#[derive(Debug, Clone, Args)]
pub struct S3ApiArgs {
    /// Access key id of the static S3 key pair, which runs as service_role (both or neither of
    /// this and --s3-api-secret-access-key).
    #[arg(
        long,
        env = "PGSTORAGE_S3_API_ACCESS_KEY_ID",
        requires = "s3_api_secret_access_key"
    )]
    pub s3_api_access_key_id: Option<String>,

    /// Secret access key of the static S3 key pair.
    #[arg(
        long,
        env = "PGSTORAGE_S3_API_SECRET_ACCESS_KEY",
        hide_env_values = true,
        requires = "s3_api_access_key_id"
    )]
    pub s3_api_secret_access_key: Option<String>,

    /// Region reported to S3 clients (signatures for any region, e.g. `auto`, are accepted).
    #[arg(long, env = "PGSTORAGE_S3_API_REGION", default_value = "us-east-1")]
    pub s3_api_region: String,

    /// The secret that S3 requests carrying a user's JWT as `x-amz-security-token` are signed
    /// with (Supabase's scheme: the anon key). Absent: the anon key printed at start-up.
    #[arg(long, env = "PGSTORAGE_S3_API_ANON_KEY", hide_env_values = true)]
    pub s3_api_anon_key: Option<String>,

    /// Secret from which the key sealing database S3 keys' secrets is derived. Absent: the JWT
    /// secret (then rotating the JWT secret invalidates the database S3 keys).
    #[arg(long, env = "PGSTORAGE_S3_API_SEALING_SECRET", hide_env_values = true)]
    pub s3_api_sealing_secret: Option<String>,

    /// Domain for virtual-host style S3 requests: `Host: bucket.DOMAIN` names the bucket (the
    /// path is the key) and `Host: DOMAIN` is path-style at the root. Every request to these
    /// hosts goes to the S3 API, whatever its path. Absent: path-style under /s3 only.
    #[arg(long, env = "PGSTORAGE_S3_API_VIRTUAL_HOST_DOMAIN")]
    pub s3_api_virtual_host_domain: Option<String>,
}

/// Image transformations (`/render/image/...`, docs/transforms.md).
#[derive(Debug, Clone, Args)]
pub struct TransformArgs {
    /// Largest source image transformed (e.g. 25MB); it is read whole into memory. Larger
    /// sources are refused with 422.
    #[arg(long, env = "PGSTORAGE_TRANSFORM_MAX_SOURCE_BYTES", default_value = "25MB", value_parser = parse_size)]
    pub transform_max_source_bytes: u64,

    /// Most pixels (width × height, as the file declares them) a source image may have; larger
    /// ones are refused with 422 before any pixel is decoded.
    #[arg(
        long,
        env = "PGSTORAGE_TRANSFORM_MAX_PIXELS",
        default_value_t = 25_000_000
    )]
    pub transform_max_pixels: u64,

    /// How many transformations run at once (default: the number of cores).
    #[arg(long, env = "PGSTORAGE_TRANSFORM_CONCURRENCY")]
    pub transform_concurrency: Option<usize>,

    /// How many more transformations may wait for a turn; beyond that, or after waiting
    /// --transform-queue-timeout, requests get 503 with Retry-After (default: 8 per core).
    #[arg(long, env = "PGSTORAGE_TRANSFORM_QUEUE")]
    pub transform_queue: Option<usize>,

    /// Longest wait for a turn (e.g. 30s).
    #[arg(long, env = "PGSTORAGE_TRANSFORM_QUEUE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub transform_queue_timeout: std::time::Duration,

    /// Keep renditions in the byte store and serve them from there next time (on or off).
    /// They are freed with their object (overwrite, delete).
    #[arg(long, env = "PGSTORAGE_TRANSFORM_CACHE", default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub transform_cache: bool,

    /// Memory that image transformations running at once may use together (e.g. 160MiB), as
    /// estimated from each source's header; work that would exceed it waits for its turn.
    #[arg(long, env = "PGSTORAGE_TRANSFORM_MEMORY", default_value = "160MiB", value_parser = parse_size)]
    pub transform_memory: u64,
}

impl TransformArgs {
    pub fn config(&self) -> crate::transform::TransformConfig {
        let defaults = crate::transform::TransformConfig::default();
        crate::transform::TransformConfig {
            max_source_bytes: self.transform_max_source_bytes,
            max_pixels: self.transform_max_pixels,
            concurrency: self
                .transform_concurrency
                .unwrap_or(defaults.concurrency)
                .max(1),
            queue: self.transform_queue.unwrap_or(defaults.queue),
            queue_timeout: self.transform_queue_timeout,
            cache: self.transform_cache,
            memory: self.transform_memory,
        }
    }
}
