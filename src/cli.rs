//! The subcommands: `serve`, `migrate`, `token`, `gc`, `s3-keys`, `policy`.

mod bench_sql;
mod policy;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::auth::sealed::Sealer;
use crate::auth::{Authenticator, JwkKeySet, JwtKeys, secret};
use crate::bytes;
use crate::config::{
    Cli, Command, DatabaseArgs, GcArgs, LogFormat, S3KeyAdminArgs, S3KeyCreateArgs, S3KeysCommand,
    ServeArgs, TokenArgs,
};
use crate::core::s3_keys;
use crate::core::sql_files::SqlFileSettings;
use crate::core::{Limits, Storage};
use crate::db::embedded::{self, EmbeddedCluster};
use crate::db::{self, Database, migrate};
use crate::http::{self, AppState};

/// Runs a parsed command line; errors are printed once, as a sentence, with a non-zero exit.
pub fn run(cli: Cli) -> ExitCode {
    let filter = EnvFilter::try_from_env("PGSTORAGE_LOG")
        // s3s logs every refused S3 request (NoSuchKey, AccessDenied, ...) as an error;
        // the S3 front logs its own faults.
        .unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn,s3s=off"));
    // Colours only for a person at a terminal: a log file or collector gets plain lines (and
    // the server skips styling every request's line).
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        // One JSON object per line, with the request span's fields (its id among them).
        LogFormat::Json => logs.json().with_current_span(true).init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Migrate(args) => migrate_only(args).await,
            Command::Token(args) => token(args),
            Command::BenchSql(args) => bench_sql::bench_sql(&args),
            Command::Gc(args) => gc(args).await,
            Command::S3Keys(command) => s3_keys_command(command).await,
            Command::Policy(command) => policy::run(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The database a command works on: an external one, or the embedded cluster (started here and
/// stopped by [`Connected::close`]).
struct Connected {
    admin: db::DbConfig,
    request: db::DbConfig,
    cluster: Option<EmbeddedCluster>,
    display_url: String,
}

impl Connected {
    async fn open(args: &DatabaseArgs, api_roles: &[String]) -> anyhow::Result<Self> {
        let connected = match &args.database_url {
            Some(url) => {
                let admin = db::parse_config(url)?;
                let request = match &args.request_database_url {
                    Some(url) => db::parse_config(url)?,
                    None => {
                        tracing::warn!(
                            "no --request-database-url: request traffic uses --database-url; \
                             give it a NOINHERIT login role that is a member of the API roles \
                             so that a transaction which never switched roles can read nothing"
                        );
                        admin.clone()
                    }
                };
                Self {
                    admin,
                    request,
                    cluster: None,
                    display_url: redact(url),
                }
            }
            None => {
                let cluster = EmbeddedCluster::start(&args.data_dir).await?;
                Self {
                    admin: cluster.admin_config().into(),
                    request: cluster.request_config().into(),
                    display_url: cluster.display_url(),
                    cluster: Some(cluster),
                }
            }
        };
        let mut client = db::connect(&connected.admin).await?;
        let applied = migrate::run(&mut client).await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied migrations");
        }
        if args.database_url.is_some() && args.request_database_url.is_some() {
            // Fail at start-up, not on the first request, when the request URL cannot connect.
            db::connect(&connected.request)
                .await
                .context("checking --request-database-url")?;
        }
        if connected.cluster.is_some() {
            migrate::ensure_request_role(&client, embedded::REQUEST_ROLE, api_roles).await?;
        } else if let Some(user) = connected.request.get_user()
            && let Err(error) = migrate::grant_server_role(&client, user).await
        {
            // Also when request traffic uses the privileged URL: unless that role is a
            // superuser, only membership marks its sessions as the server's (migration 0010).
            tracing::warn!(
                "{error:#}: object writes will be refused (42501) until the request role is a \
                 superuser or a member of {}",
                migrate::SERVER_ROLE
            );
        }
        Ok(connected)
    }

    fn close(self) -> anyhow::Result<()> {
        match self.cluster {
            Some(cluster) => cluster.stop(),
            None => Ok(()),
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Read first: a broken JWKS stops start-up before anything is created.
    let jwks = args.jwt_jwks.as_deref().map(JwkKeySet::load).transpose()?;
    let secret = secret::load_or_create(
        args.jwt.jwt_secret.as_deref(),
        &args.database.data_dir,
        true,
    )?;
    let mut keys = JwtKeys::new(secret.as_bytes());
    if let Some(jwks) = jwks {
        tracing::info!("request tokens may also be signed with {}", jwks.describe());
        keys = keys.with_jwks(jwks);
    }
    let connected = Connected::open(&args.database, &args.roles).await?;
    let result = serve_on(&args, keys, &secret, &connected).await;
    let closed = connected.close();
    result.and(closed)
}

async fn serve_on(
    args: &ServeArgs,
    keys: JwtKeys,
    jwt_secret: &str,
    connected: &Connected,
) -> anyhow::Result<()> {
    let mut database = Database::new(
        connected.admin.clone(),
        connected.request.clone(),
        args.db_pool_size,
    )?;
    if let Some(connections) = args.db_upload_connections {
        database = database.with_upload_connections(connections);
    }
    let store = args.store.store_config(&args.database)?;
    let bytes = bytes::open(&store, &database).await?;
    let storage = Storage::new(
        database,
        bytes,
        Limits {
            max_file_size: args.max_file_size,
            upload_lease: Duration::from_secs(args.upload_lease_seconds.max(1)),
            body_idle_timeout: args.body_idle_timeout.max(Duration::from_millis(100)),
            multipart_min_part_size: args.multipart_min_part_size,
            multipart_expiry: args.multipart_expiry.max(Duration::from_secs(1)),
            min_body_rate: args.body_min_rate,
            body_rate_window: args.body_rate_window.max(Duration::from_secs(1)),
        },
    )
    .with_small_object_cache(args.small_object_cache);
    let collector = (args.gc_interval_seconds > 0).then(|| {
        storage.spawn_collector(
            Duration::from_secs(args.gc_grace_seconds),
            Duration::from_secs(args.gc_interval_seconds),
        )
    });
    let auth = Authenticator::new(keys.clone(), args.roles.clone());
    let anon = keys.stable_anon_key()?;
    let s3 = crate::s3::S3Front::new(
        storage.clone(),
        auth.clone(),
        s3_credentials(args, &anon, jwt_secret)?,
    )
    .with_virtual_host_domain(args.s3_api.s3_api_virtual_host_domain.as_deref())
    .context("--s3-api-virtual-host-domain")?;
    let exporter = (args.metrics || args.metrics_port.is_some())
        .then(|| http::metrics::Exporter::install(storage.clone()));
    let app = http::app_with(
        AppState {
            storage: storage.clone(),
            auth,
            s3: Some(s3),
            transform: crate::transform::Transformer::new(args.transform.config()),
        },
        http::AppOptions {
            metrics: exporter.clone(),
            metrics_route: args.metrics,
        },
    );

    let address: SocketAddr = tokio::net::lookup_host((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("resolving --host {}", args.host))?
        .next()
        .with_context(|| format!("--host {} resolves to no address", args.host))?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("listening on {address}"))?;
    let local = listener.local_addr()?;
    // Before the first request: storage.get_file signs with this key from now on.
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));
    storage
        .publish_sql_file_settings(&SqlFileSettings {
            secret: keys.database_signing_key().to_vec(),
            public_url,
            url_lifetime: args.sql_file_url_lifetime,
            max_inline_size: args.sql_file_max_size,
        })
        .await
        .context("publishing the signing key for storage.get_file")?;

    // Keys for people to try the server with: ten years, like Supabase's API keys. The anon
    // key is the same on every start: S3 session-token requests are signed with it.
    let ten_years = Some(Duration::from_secs(10 * 365 * 86_400));
    let service = keys.mint("service_role", None, ten_years, Default::default())?;
    println!("pgstorage is listening on http://{local}");
    println!("database:         {}", connected.display_url);
    println!("byte store:       {}", store.describe());
    println!("anon key:         {anon}");
    println!("service_role key: {service}");
    println!("S3 endpoint:      http://{local}/s3 (and /storage/v1/s3)");
    if let Some(domain) = &args.s3_api.s3_api_virtual_host_domain {
        println!(
            "S3 virtual hosts: BUCKET.{domain} and {domain} (port {})",
            local.port()
        );
    }
    println!(
        "try: curl -X POST http://{local}/bucket -H \"Authorization: Bearer $SERVICE_KEY\" \
         -H 'content-type: application/json' -d '{{\"name\":\"avatars\"}}'"
    );

    let options = http::ServeOptions {
        header_read_timeout: args.header_read_timeout.max(Duration::from_millis(100)),
    };
    if args.metrics {
        println!("metrics:          http://{local}/metrics (service_role key as bearer)");
    }
    let metrics_server = match (args.metrics_port, exporter) {
        (Some(port), Some(exporter)) => {
            let listener = tokio::net::TcpListener::bind((address.ip(), port))
                .await
                .with_context(|| format!("listening on --metrics-port {port}"))?;
            println!(
                "metrics:          http://{}/metrics",
                listener.local_addr()?
            );
            let routes = http::metrics::routes(exporter, None);
            Some(tokio::spawn(http::serve(
                listener,
                routes,
                options,
                std::future::pending(),
            )))
        }
        _ => None,
    };
    http::serve(listener, app, options, shutdown_signal()).await?;
    if let Some(metrics_server) = metrics_server {
        metrics_server.abort();
    }
    tracing::info!("stopped accepting requests");
    if let Some(collector) = collector {
        collector.abort();
    }
    Ok(())
}

/// How S3 requests authenticate, from the `--s3-api-*` flags.
fn s3_credentials(
    args: &ServeArgs,
    anon_key: &str,
    jwt_secret: &str,
) -> anyhow::Result<crate::s3::S3Credentials> {
    let api = &args.s3_api;
    let static_key = match (&api.s3_api_access_key_id, &api.s3_api_secret_access_key) {
        (Some(id), Some(secret)) => {
            anyhow::ensure!(
                !id.is_empty() && !secret.is_empty(),
                "--s3-api-access-key-id and --s3-api-secret-access-key must not be empty"
            );
            Some(crate::s3::StaticKey {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
            })
        }
        _ => None,
    };
    Ok(crate::s3::S3Credentials {
        static_key,
        session_secret: Some(
            api.s3_api_anon_key
                .clone()
                .unwrap_or_else(|| anon_key.to_string()),
        ),
        sealer: Sealer::derive(
            api.s3_api_sealing_secret
                .as_deref()
                .unwrap_or(jwt_secret)
                .as_bytes(),
        ),
        region: api.s3_api_region.clone(),
    })
}

/// `pgstorage s3-keys create|list|revoke`.
async fn s3_keys_command(command: S3KeysCommand) -> anyhow::Result<()> {
    let admin = match &command {
        S3KeysCommand::Create(args) => &args.admin,
        S3KeysCommand::List(args) => args,
        S3KeysCommand::Revoke(args) => &args.admin,
    };
    let default_roles = ["anon", "authenticated", "service_role"].map(String::from);
    let connected = Connected::open(&admin.database, &default_roles).await?;
    let result = async {
        let database = Database::new(connected.admin.clone(), connected.request.clone(), 1)?;
        match &command {
            S3KeysCommand::Create(args) => s3_key_create(&database, args).await,
            S3KeysCommand::List(_) => s3_key_list(&database).await,
            S3KeysCommand::Revoke(args) => {
                let revoked = s3_keys::revoke(&database, &args.access_key_id)
                    .await
                    .map_err(|e| anyhow::anyhow!("revoking the key failed: {e}"))?;
                anyhow::ensure!(revoked, "no live key has the id {}", args.access_key_id);
                println!("revoked {}", args.access_key_id);
                Ok(())
            }
        }
    }
    .await;
    let closed = connected.close();
    result.and(closed)
}

fn sealer_for(args: &S3KeyAdminArgs) -> anyhow::Result<Sealer> {
    if let Some(secret) = &args.s3_api_sealing_secret {
        return Ok(Sealer::derive(secret.as_bytes()));
    }
    let secret = secret::load_or_create(
        args.jwt.jwt_secret.as_deref(),
        &args.database.data_dir,
        false,
    )?;
    Ok(Sealer::derive(secret.as_bytes()))
}

async fn s3_key_create(database: &Database, args: &S3KeyCreateArgs) -> anyhow::Result<()> {
    let mut claims = match &args.claims {
        None => serde_json::Map::new(),
        Some(text) => match serde_json::from_str(text).context("--claims is not valid JSON")? {
            serde_json::Value::Object(map) => map,
            _ => anyhow::bail!("--claims must be a JSON object"),
        },
    };
    if let Some(sub) = &args.sub {
        claims.insert("sub".into(), sub.clone().into());
    }
    let sealer = sealer_for(&args.admin)?;
    let key = s3_keys::create(
        database,
        &sealer,
        &args.role,
        claims,
        args.description.as_deref(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("creating the key failed: {e}"))?;
    println!("access key id:     {}", key.access_key_id);
    println!("secret access key: {}", key.secret_access_key);
    println!("(the secret is shown only now)");
    Ok(())
}

async fn s3_key_list(database: &Database) -> anyhow::Result<()> {
    let keys = s3_keys::list(database)
        .await
        .map_err(|e| anyhow::anyhow!("listing the keys failed: {e}"))?;
    for key in keys {
        let state = match key.revoked_at {
            Some(at) => format!("revoked {}", at.to_rfc3339()),
            None => "active".to_string(),
        };
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            key.access_key_id,
            key.role,
            serde_json::Value::Object(key.claims),
            key.created_at.to_rfc3339(),
            state,
            key.description.unwrap_or_default()
        );
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

async fn migrate_only(args: DatabaseArgs) -> anyhow::Result<()> {
    let default_roles = ["anon", "authenticated", "service_role"].map(String::from);
    let connected = Connected::open(&args, &default_roles).await?;
    println!("migrations are up to date on {}", connected.display_url);
    connected.close()
}

async fn gc(args: GcArgs) -> anyhow::Result<()> {
    let default_roles = ["anon", "authenticated", "service_role"].map(String::from);
    let connected = Connected::open(&args.database, &default_roles).await?;
    let result = async {
        let database = Database::new(connected.admin.clone(), connected.request.clone(), 2)?;
        let bytes = bytes::open(&args.store.store_config(&args.database)?, &database).await?;
        let storage = Storage::new(database, bytes, Limits::default());
        let bar = gc_progress();
        let report = storage
            .collect_garbage_with(Duration::from_secs(args.gc_grace_seconds), &|so_far| {
                bar.set_message(format!(
                    "{} byte keys freed, {} failed",
                    so_far.freed, so_far.failed
                ))
            })
            .await;
        bar.finish_and_clear();
        let report = report.map_err(|e| anyhow::anyhow!("garbage collection failed: {e}"))?;
        if !report.ran {
            println!("another server is collecting garbage right now; nothing done");
        } else {
            println!(
                "freed {} byte keys ({} could not be deleted and stay queued)",
                report.freed, report.failed
            );
        }
        anyhow::Ok(())
    }
    .await;
    let closed = connected.close();
    result.and(closed)
}

/// A spinner with running totals on a terminal (stderr); nothing at all otherwise, so scripts
/// read only the final line.
fn gc_progress() -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} collecting garbage: {msg} [{elapsed}]")
    {
        bar.set_style(style);
    }
    bar.set_message("looking for unreferenced bytes");
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let secret = secret::load_or_create(args.jwt.jwt_secret.as_deref(), &args.data_dir, false)?;
    let extra = match &args.claims {
        None => Default::default(),
        Some(text) => match serde_json::from_str(text).context("--claims is not valid JSON")? {
            serde_json::Value::Object(map) => map,
            _ => anyhow::bail!("--claims must be a JSON object"),
        },
    };
    let token = JwtKeys::new(secret.as_bytes()).mint(
        &args.role,
        args.sub.as_deref(),
        Some(args.expires_in),
        extra,
    )?;
    println!("{token}");
    Ok(())
}

/// A URL with its password replaced, for printing.
fn redact(url: &str) -> String {
    let parsed = db::tls::split(url).and_then(|(rest, _)| {
        rest.parse::<tokio_postgres::Config>()
            .map_err(anyhow::Error::from)
    });
    match parsed {
        Ok(config) if config.get_password().is_some() => {
            let user = config.get_user().unwrap_or("");
            format!("postgresql://{user}:***@…")
        }
        _ => url.to_string(),
    }
}
