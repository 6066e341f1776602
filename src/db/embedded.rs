//! The embedded default: a private PostgreSQL cluster inside the data directory, reachable only
//! through a Unix socket there, started and stopped with the server.
//!
//! Layout under the data directory: `postgres/` (PGDATA), `run/` (the socket), `postgres.log`
//! and `pgstorage.lock` (held while a server uses the directory).

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid, User};

/// The database the embedded default creates for its own schema.
pub const DATABASE: &str = "pgstorage";
/// The superuser initdb creates.
pub const SUPERUSER: &str = "postgres";
/// The NOINHERIT login role request traffic connects as.
pub const REQUEST_ROLE: &str = "pgstorage_authenticator";

/// The files of one cluster and how to run its binaries. Starting and stopping is explicit;
/// [`EmbeddedCluster`] adds the lock and lifecycle the server needs.
#[derive(Debug, Clone)]
pub struct ClusterDir {
    root: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    bin: PathBuf,
    /// PostgreSQL's `port` (names the socket file; the TCP port where TCP is turned on).
    port: Option<u16>,
    /// The unprivileged user that owns and runs the cluster when we are root (PostgreSQL
    /// refuses to run as root).
    run_as: Option<User>,
}

impl ClusterDir {
    pub fn new(root: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("creating data directory {}", root.display()))?;
        let root = root
            .canonicalize()
            .with_context(|| format!("resolving {}", root.display()))?;
        let run_as = if Uid::effective().is_root() {
            Some(unprivileged_user()?)
        } else {
            None
        };
        Ok(Self {
            pgdata: root.join("postgres"),
            socket_dir: root.join("run"),
            bin: find_postgres_binaries()?,
            port: None,
            run_as,
            root,
        })
    }

    /// Uses `port` instead of PostgreSQL's default 5432, for the socket file and for TCP where
    /// a `listen_addresses` setting given to [`ClusterDir::spawn`] turns TCP on.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn pgdata(&self) -> &Path {
        &self.pgdata
    }

    /// A connection config for `user` on `dbname` through the cluster's socket.
    pub fn config(&self, user: &str, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .user(user)
            .dbname(dbname)
            .application_name("pgstorage")
            .connect_timeout(Duration::from_secs(10));
        if let Some(port) = self.port {
            config.port(port);
        }
        config
    }

    /// Writes `contents` to `name` in PGDATA as a file that only the cluster's user can read
    /// (what PostgreSQL demands of `ssl_key_file`). Call after [`ClusterDir::ensure_initialized`].
    pub fn write_private_file(&self, name: &str, contents: &[u8]) -> anyhow::Result<PathBuf> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.pgdata.join(name);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        file.write_all(contents)
            .with_context(|| format!("writing {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        if let Some(user) = &self.run_as {
            std::os::unix::fs::chown(&path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .with_context(|| format!("giving {} to user {}", path.display(), user.name))?;
        }
        Ok(path)
    }

    /// Runs initdb unless the cluster exists. Returns true when it created one.
    pub fn ensure_initialized(&self) -> anyhow::Result<bool> {
        if self.pgdata.join("PG_VERSION").exists() {
            return Ok(false);
        }
        if self.pgdata.exists() {
            // A previous initdb died half-way; start over.
            std::fs::remove_dir_all(&self.pgdata).with_context(|| {
                format!("removing incomplete cluster {}", self.pgdata.display())
            })?;
        }
        for dir in [&self.pgdata, &self.socket_dir] {
            std::fs::create_dir_all(dir)?;
            self.give_to_runner(dir)?;
        }
        let output = self
            .command("initdb")
            .args([
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ])
            .arg(format!("--username={SUPERUSER}"))
            .arg("-D")
            .arg(&self.pgdata)
            .output()
            .context("running initdb")?;
        if !output.status.success() {
            let _ = std::fs::remove_dir_all(&self.pgdata);
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&output.stderr).trim(),
                self.access_hint()
            );
        }
        Ok(true)
    }

    /// Stops a postmaster left running by a server that died without stopping it. Returns true
    /// if there was one. Only call while holding the data directory lock.
    pub fn stop_orphan(&self) -> anyhow::Result<bool> {
        let Some(pid) = self.running_postmaster() else {
            return Ok(false);
        };
        tracing::warn!(
            pid,
            "stopping a PostgreSQL left running by an earlier server"
        );
        stop_pid(pid, Duration::from_secs(60))?;
        Ok(true)
    }

    /// The pid of a live postmaster serving this PGDATA, if any.
    pub fn running_postmaster(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.pgdata.join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let alive = kill(Pid::from_raw(pid), None).is_ok();
        (alive && String::from_utf8_lossy(&cmdline).contains("postgres")).then_some(pid)
    }

    /// Starts the postmaster in its own process group (so a Ctrl-C aimed at the server's
    /// terminal does not reach it), listening only on the socket. `settings` are extra `-c`
    /// options, and win over these defaults (`listen_addresses=127.0.0.1` turns on TCP).
    pub fn spawn(&self, settings: &[(&str, &str)]) -> anyhow::Result<Child> {
        std::fs::create_dir_all(&self.socket_dir)?;
        self.give_to_runner(&self.socket_dir)?;
        let log_path = self.root.join("postgres.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-k")
            .arg(&self.socket_dir)
            .args([
                "-c",
                "listen_addresses=",
                "-c",
                "unix_socket_permissions=0700",
            ]);
        if let Some(port) = self.port {
            command.arg("-c").arg(format!("port={port}"));
        }
        for (name, value) in settings {
            command.arg("-c").arg(format!("{name}={value}"));
        }
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        command.spawn().context("starting postgres")
    }

    /// Waits until the cluster accepts connections, failing early if `child` exits.
    pub async fn wait_ready(&self, mut child: Option<&mut Child>) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let config = self.config(SUPERUSER, "postgres");
        loop {
            if config.connect(tokio_postgres::NoTls).await.is_ok() {
                return Ok(());
            }
            if let Some(child) = child.as_deref_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "postgres exited during start-up ({status}); last lines of {}:\n{}",
                    self.root.join("postgres.log").display(),
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "postgres did not accept connections within 60 s:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates the pgstorage database if missing.
    pub async fn ensure_database(&self, name: &str) -> anyhow::Result<()> {
        let client = super::connect(&self.config(SUPERUSER, "postgres")).await?;
        let exists = client
            .query_opt("select 1 from pg_database where datname = $1", &[&name])
            .await?
            .is_some();
        if !exists {
            client
                .batch_execute(&format!(
                    "create database {}",
                    super::migrate::quote_ident(name)
                ))
                .await
                .with_context(|| format!("creating database {name}"))?;
        }
        Ok(())
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        // The cluster gets a clean environment: nothing of ours (secrets) leaks into it.
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LC_ALL", "C");
        if let Some(user) = &self.run_as {
            command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        command
    }

    fn give_to_runner(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        if let Some(user) = &self.run_as {
            std::os::unix::fs::chown(dir, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .with_context(|| format!("giving {} to user {}", dir.display(), user.name))?;
        }
        Ok(())
    }

    fn access_hint(&self) -> String {
        match &self.run_as {
            Some(user) => format!(
                "\n(running as root, the cluster runs as the unprivileged user '{}': every \
                 parent directory of {} must be searchable by that user)",
                user.name,
                self.root.display()
            ),
            None => String::new(),
        }
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(self.root.join("postgres.log")) {
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// A running embedded cluster owned by this process. Holding it holds the data directory lock.
pub struct EmbeddedCluster {
    dir: ClusterDir,
    child: Child,
    _lock: Flock<File>,
}

impl EmbeddedCluster {
    /// Locks the data directory, initialises the cluster if needed, recovers from a crashed
    /// predecessor, starts PostgreSQL and creates the pgstorage database.
    pub async fn start(data_dir: &Path) -> anyhow::Result<Self> {
        let dir = ClusterDir::new(data_dir)?;
        let lock = lock_data_dir(&dir.root)?;
        if dir.ensure_initialized()? {
            tracing::info!(pgdata = %dir.pgdata.display(), "created a new PostgreSQL cluster");
        }
        dir.stop_orphan()?;
        let mut child = dir.spawn(&[])?;
        if let Err(error) = dir.wait_ready(Some(&mut child)).await {
            let _ = stop_child(&mut child);
            return Err(error);
        }
        let cluster = Self {
            dir,
            child,
            _lock: lock,
        };
        cluster.dir.ensure_database(DATABASE).await?;
        Ok(cluster)
    }

    pub fn dir(&self) -> &ClusterDir {
        &self.dir
    }

    /// The privileged connection (migrations, maintenance).
    pub fn admin_config(&self) -> tokio_postgres::Config {
        self.dir.config(SUPERUSER, DATABASE)
    }

    /// The request connection: the NOINHERIT login role.
    pub fn request_config(&self) -> tokio_postgres::Config {
        self.dir.config(REQUEST_ROLE, DATABASE)
    }

    /// A URL for humans (psql) to reach the cluster.
    pub fn display_url(&self) -> String {
        format!(
            "postgresql:///{DATABASE}?host={}&user={SUPERUSER}",
            self.dir.socket_dir.display()
        )
    }

    /// Fast shutdown: open sessions are ended, committed data is safe.
    pub fn stop(mut self) -> anyhow::Result<()> {
        stop_child(&mut self.child)
    }
}

fn stop_child(child: &mut Child) -> anyhow::Result<()> {
    if child.try_wait()?.is_some() {
        return Ok(());
    }
    let pid = i32::try_from(child.id()).context("postgres pid out of range")?;
    stop_pid(pid, Duration::from_secs(60))?;
    let _ = child.wait();
    Ok(())
}

/// SIGINT (PostgreSQL's fast shutdown), then waits; SIGQUIT if it does not stop in time.
fn stop_pid(pid: i32, patience: Duration) -> anyhow::Result<()> {
    let pid = Pid::from_raw(pid);
    if kill(pid, Signal::SIGINT).is_err() {
        return Ok(());
    }
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if !alive(pid) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = kill(pid, Signal::SIGQUIT);
    bail!("postgres (pid {pid}) did not stop within {patience:?}; sent SIGQUIT")
}

/// True while `pid` exists and is not a zombie we are about to reap.
fn alive(pid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Takes the data directory's lock so that a second server cannot share it.
fn lock_data_dir(root: &Path) -> anyhow::Result<Flock<File>> {
    let path = root.join("pgstorage.lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            lock.set_len(0)?;
            lock.rewind()?;
            write!(lock, "{}", std::process::id())?;
            Ok(lock)
        }
        Err((mut file, _)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            bail!(
                "the data directory {} is in use by another pgstorage process (pid {}); stop \
                 it first or choose another --data-dir",
                root.display(),
                holder.trim()
            )
        }
    }
}

/// The user that runs the cluster when pgstorage runs as root.
fn unprivileged_user() -> anyhow::Result<User> {
    for name in ["postgres", "nobody"] {
        if let Some(user) = User::from_name(name)? {
            return Ok(user);
        }
    }
    bail!("running as root, but there is no 'postgres' or 'nobody' user to run PostgreSQL as")
}

/// Finds the directory holding `initdb` and `postgres`: on PATH, through `pg_config --bindir`,
/// or the newest `/usr/lib/postgresql/*/bin`.
pub fn find_postgres_binaries() -> anyhow::Result<PathBuf> {
    search_postgres_binaries(
        std::env::var_os("PATH").as_deref(),
        Path::new("/usr/lib/postgresql"),
    )
}

/// [`find_postgres_binaries`] over a given PATH and Debian-style versioned root.
fn search_postgres_binaries(
    path: Option<&OsStr>,
    versioned_root: &Path,
) -> anyhow::Result<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let path_dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    for dir in &path_dirs {
        if has_both(dir) {
            // Follow symlinks (Debian links into /usr/lib/postgresql/N/bin) so that all
            // binaries come from one installation.
            let real = dir.join("postgres").canonicalize()?;
            if let Some(parent) = real.parent().filter(|p| has_both(p)) {
                return Ok(parent.to_path_buf());
            }
            return Ok(dir.clone());
        }
    }
    let pg_config = path_dirs
        .iter()
        .map(|dir| dir.join("pg_config"))
        .find(|p| p.is_file());
    if let Some(pg_config) = pg_config
        && let Ok(output) = Command::new(pg_config).arg("--bindir").output()
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if has_both(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(versioned_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "PostgreSQL server binaries (initdb, postgres) were not found on PATH, through \
             `pg_config --bindir`, or under {}/*/bin. Install PostgreSQL \
             (Debian/Ubuntu: apt-get install postgresql) or pass --database-url to use an \
             existing database",
            versioned_root.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory removed at the end of the test.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("pgstorage-bins-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        /// Creates `initdb` and `postgres` (empty files are enough for the search) in `dir`.
        fn install(&self, dir: &str) -> PathBuf {
            let bin = self.0.join(dir);
            std::fs::create_dir_all(&bin).unwrap();
            for name in ["initdb", "postgres"] {
                std::fs::write(bin.join(name), b"").unwrap();
            }
            bin
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn no_binaries_says_what_to_install_or_pass() {
        let scratch = Scratch::new();
        let empty = scratch.0.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let error = search_postgres_binaries(Some(empty.as_os_str()), &scratch.0.join("none"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("apt-get install postgresql"), "{error}");
        assert!(error.contains("--database-url"), "{error}");
        assert!(error.contains("initdb"), "{error}");
    }

    #[test]
    fn path_wins_over_versioned_installs() {
        let scratch = Scratch::new();
        let on_path = scratch.install("path-bin");
        scratch.install("lib/17/bin");
        let found =
            search_postgres_binaries(Some(on_path.as_os_str()), &scratch.0.join("lib")).unwrap();
        assert_eq!(found, on_path.canonicalize().unwrap());
    }

    #[test]
    fn newest_versioned_install_is_chosen_numerically() {
        let scratch = Scratch::new();
        scratch.install("lib/9/bin");
        let newest = scratch.install("lib/15/bin");
        scratch.install("lib/not-a-version/bin");
        let found = search_postgres_binaries(None, &scratch.0.join("lib")).unwrap();
        assert_eq!(found, newest);
    }
}
