//! Arguments of the operator subcommands (`s3-keys`, `policy`, the hidden `bench-sql`), apart
//! from `serve`'s, which are most of [`super`].

use clap::{Args, Subcommand};

use super::{DatabaseArgs, JwtArgs, parse_size};

/// Which request's transactions `bench-sql` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BenchRequest {
    /// A download: identity and the row's select, one transaction.
    Get,
    /// What an upload to a new key runs in the database: the checked staging, then the row.
    Upload,
    /// The insert of one row under the caller's policies (its key staged), one commit.
    Insert,
}

#[derive(Debug, Clone, Args)]
pub struct BenchSqlArgs {
    pub request: BenchRequest,
    /// The caller's role.
    #[arg(long, default_value = "authenticated")]
    pub role: String,
    /// The caller's `sub` (also the owner of uploaded rows).
    #[arg(long, default_value = "")]
    pub sub: String,
    /// The caller's claims as JSON (what `auth.jwt()` returns).
    #[arg(long, default_value = "{}")]
    pub claims: String,
    /// The request headers as JSON, as the server passes them.
    #[arg(long, default_value = "{}")]
    pub headers: String,
    /// The request path as the server passes it (`{name}` is replaced by the object's name).
    #[arg(long, default_value = "/object/authenticated/{bucket}/{name}")]
    pub path: String,
    #[arg(long, default_value = "bench")]
    pub bucket: String,
    /// Names are `<prefix><n>.bin`; a GET picks n in 1..=objects.
    #[arg(long, default_value = "")]
    pub prefix: String,
    #[arg(long, default_value_t = 1000)]
    pub objects: u32,
}

#[derive(Debug, Subcommand)]
pub enum S3KeysCommand {
    /// Create a key pair bound to a role and claims; prints the secret once.
    Create(S3KeyCreateArgs),
    /// List the keys (never their secrets).
    List(S3KeyAdminArgs),
    /// Revoke a key at once.
    Revoke(S3KeyRevokeArgs),
}

/// What every `s3-keys` command needs: the database and the secret the keys are sealed with.
#[derive(Debug, Clone, Args)]
pub struct S3KeyAdminArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub jwt: JwtArgs,

    /// As for `serve`: the secret the key sealing secrets is derived from (default: the JWT
    /// secret).
    #[arg(long, env = "PGSTORAGE_S3_API_SEALING_SECRET", hide_env_values = true)]
    pub s3_api_sealing_secret: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct S3KeyCreateArgs {
    #[command(flatten)]
    pub admin: S3KeyAdminArgs,

    /// The role requests signed with this key run as (e.g. authenticated).
    #[arg(long)]
    pub role: String,

    /// The `sub` claim (the user id that `auth.uid()` returns and owner_id records).
    #[arg(long)]
    pub sub: Option<String>,

    /// Extra claims as a JSON object.
    #[arg(long)]
    pub claims: Option<String>,

    /// A note shown by `s3-keys list`.
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct S3KeyRevokeArgs {
    #[command(flatten)]
    pub admin: S3KeyAdminArgs,

    /// The access key id to revoke.
    pub access_key_id: String,
}

// Parsed once at start-up: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// May this role and sub do this operation here? Answers which policies decide, evaluated
    /// in a transaction that is rolled back.
    Check(PolicyCheckArgs),
    /// Print the policies on the storage tables, per table, command and role.
    List(PolicyListArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PolicyCheckArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// The role the request runs as (anon, authenticated, service_role, ...).
    #[arg(long, default_value = "anon")]
    pub role: String,

    /// The `sub` claim (what `auth.uid()` returns and `owner_id` records).
    #[arg(long)]
    pub sub: Option<String>,

    /// Further claims as a JSON object (what `auth.jwt()` returns).
    #[arg(long)]
    pub claims: Option<String>,

    /// The operation, as `storage.operation()` names it (e.g. storage.upload, storage.download,
    /// storage.bucket.create; the `storage.` prefix may be left out).
    #[arg(long)]
    pub op: String,

    /// The bucket.
    #[arg(long)]
    pub bucket: String,

    /// The object's path in the bucket (not used by bucket operations).
    #[arg(long)]
    pub path: Option<String>,

    /// The size of an upload (e.g. 1MB), checked against the bucket's file_size_limit.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<u64>,

    /// The type of an upload (default: guessed from the path, as an upload does).
    #[arg(long)]
    pub mime: Option<String>,

    /// Where a move or copy lands (default: the same bucket).
    #[arg(long)]
    pub to_bucket: Option<String>,

    /// The path a move or copy lands at.
    #[arg(long)]
    pub to_path: Option<String>,

    /// As for `serve`: the largest object the server accepts.
    #[arg(long, env = "PGSTORAGE_MAX_FILE_SIZE", default_value = "50GB", value_parser = parse_size)]
    pub max_file_size: u64,

    /// Print the answer as JSON (as `POST /admin/policy/check` answers).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PolicyListArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Only the policies that apply to this role.
    #[arg(long)]
    pub role: Option<String>,

    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}
