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
    pub fn connect_options(&self) -> PgConnectOptions {
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
    pub fn connect_options_for(&self, database: &str) -> PgConnectOptions {
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
pub fn find_bin_dir() -> Result<PathBuf, EmbeddedPgError> {
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

fn start_blocking(options: &EmbeddedOptions) -> Result<EmbeddedPostgres, EmbeddedPgError> {
    let bin = find_bin_dir()?;
    let account = server_account()?;
    fs::create_dir_all(&options.root)
        .map_err(io(format!("creating {}", options.root.display())))?;
    let root = options
        .root
        .canonicalize()
        .map_err(io(format!("resolving {}", options.root.display())))?;
    let data = root.join("data");
    let run = root.join("run");
    let log = root.join("postgres.log");
    fs::create_dir_all(&run).map_err(io(format!("creating {}", run.display())))?;
    if root.join("run/.s.PGSQL.5432").as_os_str().len() > 100 {
        return Err(EmbeddedPgError::SocketPathTooLong(run));
    }
    fs::set_permissions(&run, fs::Permissions::from_mode(0o700))
        .map_err(io("securing the socket folder"))?;
    if let Some(user) = &account {
        for path in [&root, &run] {
            chown(path, Some(user.uid), Some(user.gid)).map_err(|e| {
                io(format!("handing {} to {}", path.display(), user.name))(e.into())
            })?;
        }
        if log.exists() {
            let _ = chown(&log, Some(user.uid), Some(user.gid));
        }
        // The server account must be able to reach `root` through its parent.
        if let Some(parent) = root.parent() {
            let mode = fs::metadata(parent)
                .map_err(io("reading the data folder"))?
                .permissions()
                .mode();
            if mode & 0o001 == 0 {
                fs::set_permissions(parent, fs::Permissions::from_mode(mode | 0o711))
                    .map_err(io("opening the data folder to the server account"))?;
            }
        }
    }

    if !data.join("PG_VERSION").exists() {
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-instructions",
            ])
            .stdin(Stdio::null());
        if options.ephemeral {
            initdb.arg("--no-sync");
        }
        as_account(&mut initdb, &account);
        let out = initdb.output().map_err(io("running initdb"))?;
        if !out.status.success() {
            return Err(EmbeddedPgError::Failed {
                step: "initdb",
                status: out.status.to_string(),
                log: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
    }

    let mut settings = vec![
        "listen_addresses=".to_string(),
        format!("unix_socket_directories={}", run.display()),
    ];
    if options.ephemeral {
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
    // The supervisor: forwards SIGTERM (or SIGINT) to PostgreSQL as a fast
    // shutdown, waits for it, and removes an ephemeral cluster afterwards.
    let script = r#"
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
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(script)
        .arg(bin.join("postgres"))
        .arg("-D")
        .arg(&data);
    for setting in &settings {
        cmd.arg("-c").arg(setting);
    }
    if options.ephemeral {
        cmd.env("ROOMD_PG_REMOVE", &root);
    }
    let log_file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(io(format!("opening {}", log.display())))?;
    if let Some(user) = &account {
        let _ = chown(&log, Some(user.uid), Some(user.gid));
    }
    cmd.stdin(Stdio::null())
        .stdout(
            log_file
                .try_clone()
                .map_err(io("duplicating the log handle"))?,
        )
        .stderr(log_file);
    as_account(&mut cmd, &account);
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

    // The parent-death signal fires when the *thread* that spawned the child
    // ends, so spawn from a thread that lives exactly as long as the child.
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

    let started = EmbeddedPostgres {
        socket_dir: run.clone(),
        supervisor: Pid::from_raw(pid as i32),
        exited: Some(exited_rx),
    };
    let deadline = Instant::now() + START_TIMEOUT;
    let socket = run.join(".s.PGSQL.5432");
    loop {
        if socket.exists() && std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            break;
        }
        if let Some(exited) = &started.exited
            && exited.try_recv().is_ok()
        {
            return Err(EmbeddedPgError::Failed {
                step: "starting postgres",
                status: "exited".into(),
                log: log_tail(&log),
            });
        }
        if Instant::now() > deadline {
            return Err(EmbeddedPgError::StartTimeout(START_TIMEOUT, log_tail(&log)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(started)
}
