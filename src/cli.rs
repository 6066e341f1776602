//! The subcommands: `serve`, `migrate`, `token`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::auth::{Authenticator, JwkKeySet, JwtKeys, secret};
use crate::bytes;
use crate::config::{Cli, Command, DatabaseArgs, GcArgs, ServeArgs, TokenArgs};
use crate::core::{Limits, Storage};
use crate::db::embedded::{self, EmbeddedCluster};
use crate::db::{self, Database, migrate};
use crate::http::{self, AppState};

/// Runs a parsed command line; errors are printed once, as a sentence, with a non-zero exit.
pub fn run(cli: Cli) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("PGSTORAGE_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
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
            Command::Gc(args) => gc(args).await,
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
    let result = serve_on(&args, keys, &connected).await;
    let closed = connected.close();
    result.and(closed)
}

async fn serve_on(args: &ServeArgs, keys: JwtKeys, connected: &Connected) -> anyhow::Result<()> {
    let database = Database::new(
        connected.admin.clone(),
        connected.request.clone(),
        args.db_pool_size,
    )?;
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
        },
    );
    let collector = (args.gc_interval_seconds > 0).then(|| {
        storage.spawn_collector(
            Duration::from_secs(args.gc_grace_seconds),
            Duration::from_secs(args.gc_interval_seconds),
        )
    });
    let auth = Authenticator::new(keys.clone(), args.roles.clone());
    let app = http::app(AppState { storage, auth });

    let address: SocketAddr = tokio::net::lookup_host((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("resolving --host {}", args.host))?
        .next()
        .with_context(|| format!("--host {} resolves to no address", args.host))?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("listening on {address}"))?;
    let local = listener.local_addr()?;

    // Keys for people to try the server with: ten years, like Supabase's API keys.
    let ten_years = Some(Duration::from_secs(10 * 365 * 86_400));
    let anon = keys.mint("anon", None, ten_years, Default::default())?;
    let service = keys.mint("service_role", None, ten_years, Default::default())?;
    println!("pgstorage is listening on http://{local}");
    println!("database:         {}", connected.display_url);
    println!("byte store:       {}", store.describe());
    println!("anon key:         {anon}");
    println!("service_role key: {service}");
    println!(
        "try: curl -X POST http://{local}/bucket -H \"Authorization: Bearer $SERVICE_KEY\" \
         -H 'content-type: application/json' -d '{{\"name\":\"avatars\"}}'"
    );

    let options = http::ServeOptions {
        header_read_timeout: args.header_read_timeout.max(Duration::from_millis(100)),
    };
    http::serve(listener, app, options, shutdown_signal()).await?;
    tracing::info!("stopped accepting requests");
    if let Some(collector) = collector {
        collector.abort();
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
        let report = storage
            .collect_garbage(Duration::from_secs(args.gc_grace_seconds))
            .await
            .map_err(|e| anyhow::anyhow!("garbage collection failed: {e}"))?;
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
