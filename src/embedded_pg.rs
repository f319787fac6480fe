//! A private PostgreSQL for when no `DATABASE_URL` is given.
//!
//! roomd runs the system's own PostgreSQL binaries on a cluster under
//! `<data-dir>/pg`, reachable only through a Unix socket in that folder, so
//! `cargo run` works on a machine with nothing but the server package
//! installed. The test harness uses the same code for its throwaway cluster.
//!
//! The server runs under a tiny `sh` supervisor whose parent-death signal is
//! set, so the cluster shuts down cleanly even when roomd is killed; an
//! ephemeral cluster's folder is removed by that supervisor once PostgreSQL
//! has stopped.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User, chown};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

/// The database roomd uses inside its private cluster.
pub const DATABASE: &str = "roomd";
/// PostgreSQL's own superuser inside the private cluster.
const SUPERUSER: &str = "postgres";
/// How long a start may take before we give up and show the server log.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a clean stop may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

const INSTALL_HINT: &str = "roomd starts a private PostgreSQL when no database URL is given, \
and for that it needs the PostgreSQL server binaries (`initdb` and `postgres`), which it \
looks for on PATH and under /usr/lib/postgresql/<version>/bin. Install the PostgreSQL \
server package (Debian/Ubuntu: `apt-get install postgresql`; Fedora: `dnf install \
postgresql-server`; macOS: `brew install postgresql`), or point roomd at an existing \
server with --database-url / DATABASE_URL (for example \
postgres://postgres@127.0.0.1:5432/roomd).";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedPgError {
    #[error("PostgreSQL server binaries not found. {INSTALL_HINT}")]
    BinariesNotFound,
    #[error(
        "PostgreSQL refuses to run as root and there is no unprivileged 'postgres' user to run \
         it as; create one (useradd --system postgres), run roomd as a normal user, or set \
         DATABASE_URL"
    )]
    NoUnprivilegedUser,
    #[error("the socket path {0} is too long for a Unix socket; choose a shorter --data-dir")]
    SocketPathTooLong(PathBuf),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{step} failed ({status}); log:\n{log}")]
    Failed {
        step: &'static str,
        status: String,
        log: String,
    },
    #[error("PostgreSQL did not accept connections within {0:?}; log:\n{1}")]
    StartTimeout(Duration, String),
    #[error("could not prepare the '{DATABASE}' database: {0}")]
    Database(#[from] sqlx::Error),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmbeddedPgError {
    let what = what.into();
    move |source| EmbeddedPgError::Io { what, source }
}

/// A running private cluster. Stop it with [`EmbeddedPostgres::stop`]; if it
/// is dropped instead, it is asked to stop without waiting.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    socket_dir: PathBuf,
    /// The supervisor's pid; SIGTERM makes it stop PostgreSQL in fast mode.
    /// (Not SIGINT: a shell started with SIGINT ignored, as background jobs
    /// of scripts are, cannot trap it.)
    supervisor: Pid,
    exited: Option<mpsc::Receiver<()>>,
}

/// Where and how to run the cluster.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Folder holding `data/` (the cluster), `run/` (the socket) and the log.
    pub root: PathBuf,
    /// Throwaway cluster for tests: no fsync, more connections, and the whole
    /// `root` removed after PostgreSQL stops.
    pub ephemeral: bool,
}

impl EmbeddedPostgres {
    /// Creates the cluster on first use, starts it, and makes sure the
    /// `roomd` database exists.
    pub async fn start(options: EmbeddedOptions) -> Result<Self, EmbeddedPgError> {
        let root = options.root.clone();
        let started = tokio::task::spawn_blocking(move || start_blocking(&options))
            .await
            .expect("embedded PostgreSQL start panicked")?;
        tracing::info!(root = %root.display(), "embedded PostgreSQL started");
        started.create_database().await?;
        Ok(started)
    }

    /// Connection options for the `roomd` database of this cluster.
    pub(crate) fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.socket_dir)
            .username(SUPERUSER)
            .database(DATABASE)
    }

    /// A URL for a database of this cluster (the socket folder as `host`).
    pub fn url_for(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@localhost/{database}?host={}",
            self.socket_dir.display()
        )
    }

    /// Connection options for another database of this cluster.
    fn connect_options_for(&self, database: &str) -> PgConnectOptions {
        self.connect_options().database(database)
    }

    async fn create_database(&self) -> Result<(), EmbeddedPgError> {
        // The socket accepts before the server has finished starting up.
        let deadline = Instant::now() + START_TIMEOUT;
        let mut conn = loop {
            match self.connect_options_for("postgres").connect().await {
                Ok(conn) => break conn,
                Err(e) if Instant::now() > deadline => return Err(e.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let exists: bool =
            sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
                .bind(DATABASE)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            sqlx::query(sqlx::AssertSqlSafe(format!("create database {DATABASE}")))
                .execute(&mut conn)
                .await?;
        }
        Ok(())
    }

    /// Stops PostgreSQL (fast shutdown: sessions end, data is checkpointed)
    /// and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = kill(self.supervisor, Signal::SIGTERM);
        if let Some(exited) = self.exited.take() {
            let waited =
                tokio::task::spawn_blocking(move || exited.recv_timeout(STOP_TIMEOUT)).await;
            match waited {
                Ok(Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected)) => {
                    tracing::info!("embedded PostgreSQL stopped");
                }
                _ => tracing::warn!("embedded PostgreSQL did not stop within {STOP_TIMEOUT:?}"),
            }
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if self.exited.is_some() {
            let _ = kill(self.supervisor, Signal::SIGTERM);
        }
    }
}

/// Finds `initdb` and `postgres`: PATH first, then the newest
/// /usr/lib/postgresql/<version>/bin.
fn find_bin_dir() -> Result<PathBuf, EmbeddedPgError> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_both(&dir) {
                return Ok(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or(EmbeddedPgError::BinariesNotFound)
}

/// The account PostgreSQL runs as: ourselves, or `postgres` when we are root.
fn server_account() -> Result<Option<User>, EmbeddedPgError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match User::from_name(SUPERUSER) {
        Ok(Some(user)) => Ok(Some(user)),
        _ => Err(EmbeddedPgError::NoUnprivilegedUser),
    }
}

fn as_account(cmd: &mut Command, account: &Option<User>) {
    if let Some(user) = account {
        cmd.uid(user.uid.as_raw())
            .gid(user.gid.as_raw())
            .env("HOME", &user.dir)
            .env("USER", &user.name);
    }
}

fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The folders and files of one cluster.
struct Layout {
    root: PathBuf,
    data: PathBuf,
    run: PathBuf,
    log: PathBuf,
}

fn start_blocking(options: &EmbeddedOptions) -> Result<EmbeddedPostgres, EmbeddedPgError> {
    let bin = find_bin_dir()?;
    let account = server_account()?;
    let layout = prepare_folders(&options.root)?;
    if let Some(user) = &account {
        hand_over(&layout, user)?;
    }
    if !layout.data.join("PG_VERSION").exists() {
        init_cluster(&bin, &layout, &account, options.ephemeral)?;
    }
    let command = supervised_server(&bin, &layout, &account, options.ephemeral)?;
    let started = spawn_supervisor(command, &layout)?;
    wait_until_accepting(&started, &layout)?;
    Ok(started)
}

/// Creates the cluster's folders; the socket folder is private.
fn prepare_folders(root: &Path) -> Result<Layout, EmbeddedPgError> {
    fs::create_dir_all(root).map_err(io(format!("creating {}", root.display())))?;
    let root = root
        .canonicalize()
        .map_err(io(format!("resolving {}", root.display())))?;
    let layout = Layout {
        data: root.join("data"),
        run: root.join("run"),
        log: root.join("postgres.log"),
        root,
    };
    fs::create_dir_all(&layout.run).map_err(io(format!("creating {}", layout.run.display())))?;
    if layout.run.join(".s.PGSQL.5432").as_os_str().len() > 100 {
        return Err(EmbeddedPgError::SocketPathTooLong(layout.run));
    }
    fs::set_permissions(&layout.run, fs::Permissions::from_mode(0o700))
        .map_err(io("securing the socket folder"))?;
    Ok(layout)
}

/// Gives the cluster's folders to the server account, and lets it reach
/// them through their parent.
fn hand_over(layout: &Layout, user: &User) -> Result<(), EmbeddedPgError> {
    for path in [&layout.root, &layout.run] {
        chown(path, Some(user.uid), Some(user.gid))
            .map_err(|e| io(format!("handing {} to {}", path.display(), user.name))(e.into()))?;
    }
    if layout.log.exists() {
        let _ = chown(&layout.log, Some(user.uid), Some(user.gid));
    }
    if let Some(parent) = layout.root.parent() {
        let mode = fs::metadata(parent)
            .map_err(io("reading the data folder"))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            fs::set_permissions(parent, fs::Permissions::from_mode(mode | 0o711))
                .map_err(io("opening the data folder to the server account"))?;
        }
    }
    Ok(())
}

/// `initdb`: a UTF-8 cluster whose superuser is trusted on the private socket.
fn init_cluster(
    bin: &Path,
    layout: &Layout,
    account: &Option<User>,
    ephemeral: bool,
) -> Result<(), EmbeddedPgError> {
    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(&layout.data)
        .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8"])
        .args(["--no-locale", "--no-instructions"])
        .stdin(Stdio::null());
    if ephemeral {
        initdb.arg("--no-sync");
    }
    as_account(&mut initdb, account);
    let out = initdb.output().map_err(io("running initdb"))?;
    if !out.status.success() {
        return Err(EmbeddedPgError::Failed {
            step: "initdb",
            status: out.status.to_string(),
            log: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

/// The server's settings: no TCP, the private socket; a throwaway cluster
/// trades durability for speed and allows the test suite's connections.
fn server_settings(layout: &Layout, ephemeral: bool) -> Vec<String> {
    let mut settings = vec![
        "listen_addresses=".to_string(),
        format!("unix_socket_directories={}", layout.run.display()),
    ];
    if ephemeral {
        settings.extend(
            [
                "fsync=off",
                "synchronous_commit=off",
                "full_page_writes=off",
                "max_connections=300",
            ]
            .map(String::from),
        );
    }
    settings
}

/// The supervisor: forwards SIGTERM (or SIGINT) to PostgreSQL as a fast
/// shutdown, waits for it, and removes an ephemeral cluster afterwards.
const SUPERVISOR: &str = r#"
    trap 'kill -INT "$pid" 2>/dev/null' INT TERM
    "$0" "$@" &
    pid=$!
    status=0
    while kill -0 "$pid" 2>/dev/null; do
        wait "$pid"
        status=$?
    done
    if [ -n "$ROOMD_PG_REMOVE" ]; then rm -rf "$ROOMD_PG_REMOVE"; fi
    exit "$status"
"#;

/// `postgres` under the supervisor, logging to the cluster's log, in its
/// own process group, told to stop when roomd goes.
fn supervised_server(
    bin: &Path,
    layout: &Layout,
    account: &Option<User>,
    ephemeral: bool,
) -> Result<Command, EmbeddedPgError> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(SUPERVISOR)
        .arg(bin.join("postgres"))
        .arg("-D")
        .arg(&layout.data);
    for setting in server_settings(layout, ephemeral) {
        cmd.arg("-c").arg(setting);
    }
    if ephemeral {
        cmd.env("ROOMD_PG_REMOVE", &layout.root);
    }
    let log_file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&layout.log)
        .map_err(io(format!("opening {}", layout.log.display())))?;
    if let Some(user) = account {
        let _ = chown(&layout.log, Some(user.uid), Some(user.gid));
    }
    let log_copy = log_file
        .try_clone()
        .map_err(io("duplicating the log handle"))?;
    cmd.stdin(Stdio::null()).stdout(log_copy).stderr(log_file);
    as_account(&mut cmd, account);
    // Its own process group: a Ctrl-C in the terminal reaches roomd only,
    // which stops PostgreSQL after its last commits.
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe; it runs after the uid change, which
    // would otherwise clear the parent-death signal.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
        });
    }
    Ok(cmd)
}

/// Spawns the supervisor. The parent-death signal fires when the *thread*
/// that spawned the child ends, so it is spawned from a thread that lives
/// exactly as long as the child.
fn spawn_supervisor(
    mut cmd: Command,
    layout: &Layout,
) -> Result<EmbeddedPostgres, EmbeddedPgError> {
    let (spawned_tx, spawned_rx) = mpsc::channel();
    let (exited_tx, exited_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("embedded-pg".into())
        .spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = spawned_tx.send(Ok(child.id()));
                let _ = child.wait();
                let _ = exited_tx.send(());
            }
            Err(e) => {
                let _ = spawned_tx.send(Err(e));
            }
        })
        .map_err(io("starting the PostgreSQL supervisor thread"))?;
    let pid = spawned_rx
        .recv()
        .expect("supervisor thread reports its spawn")
        .map_err(io("starting postgres"))?;
    Ok(EmbeddedPostgres {
        socket_dir: layout.run.clone(),
        supervisor: Pid::from_raw(pid as i32),
        exited: Some(exited_rx),
    })
}

/// Waits until the socket accepts, or PostgreSQL exits, or time runs out.
fn wait_until_accepting(
    started: &EmbeddedPostgres,
    layout: &Layout,
) -> Result<(), EmbeddedPgError> {
    let deadline = Instant::now() + START_TIMEOUT;
    let socket = layout.run.join(".s.PGSQL.5432");
    loop {
        if socket.exists() && std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return Ok(());
        }
        if let Some(exited) = &started.exited
            && exited.try_recv().is_ok()
        {
            return Err(EmbeddedPgError::Failed {
                step: "starting postgres",
                status: "exited".into(),
                log: log_tail(&layout.log),
            });
        }
        if Instant::now() > deadline {
            return Err(EmbeddedPgError::StartTimeout(
                START_TIMEOUT,
                log_tail(&layout.log),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
