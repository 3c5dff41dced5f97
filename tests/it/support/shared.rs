//! Peers shared by every test of the binary, where isolation allows: one
//! Debian `prometheus` (2.42) that tests which only push and query share,
//! each in its own scope. A scope is an external label (`test_scope`) the
//! test's pusher adds to every series; the scope's [`QueryApi`] adds the
//! same matcher to every selector of a query and takes the label off the
//! answers, so a test reads the shared store as if it were its own. A test
//! that needs its own peer (restarts, outages, auth, flags, scrapes) keeps
//! starting one ([`super::Prometheus::start`]).
//!
//! A shared peer lives in a static, which is never dropped, so it cannot
//! die with a guard. It runs under a tiny shell supervisor instead, whose
//! stdin is a pipe held by the test process: when the process exits — at
//! the end of the run, by a panic in `main`, or killed with SIGKILL — the
//! kernel closes the pipe, `read` returns, and the supervisor stops the
//! peer and removes its data (`shared_peers::` proves it).

use std::io::{BufRead, BufReader};
use std::ops::Deref;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::OnceCell;

use super::process::{free_port, require_binary, wait_for_http};
use super::prometheus::QueryApi;

/// The label that keeps the scopes apart.
pub const SCOPE_LABEL: &str = "test_scope";

/// Stops the peer (its pid is `$!`) when stdin closes, then removes its
/// directory. Prints the peer's pid first, so tests can watch it.
const SUPERVISOR: &str = r#"dir=$1; shift
"$@" </dev/null >"$dir/peer.log" 2>&1 &
peer=$!
echo "$peer"
read -r _ || true
kill "$peer" 2>/dev/null
wait "$peer"
rm -rf "$dir""#;

/// A peer running under the supervisor, for the rest of the process.
pub struct SupervisedPeer {
    pub url: String,
    /// The peer's own pid (not the supervisor's).
    pub pid: u32,
    /// Config, data and log; removed by the supervisor.
    pub dir: PathBuf,
    // Closing it (the process exiting) stops the peer.
    _stdin: ChildStdin,
    _supervisor: Child,
}

impl SupervisedPeer {
    /// Starts `program` with `args` under the supervisor; `dir` is the
    /// peer's own (the supervisor removes it).
    fn spawn(name: &str, url: String, dir: PathBuf, program: &str, args: &[String]) -> Self {
        let mut supervisor = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("supervisor")
            .arg(&dir)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start the supervisor of {name}: {e}"));
        let mut line = String::new();
        BufReader::new(supervisor.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("read {name}'s pid from its supervisor: {e}"));
        let pid = line
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}'s supervisor printed {line:?}: {e}"));
        SupervisedPeer {
            url,
            pid,
            dir,
            _stdin: supervisor.stdin.take().expect("piped stdin"),
            _supervisor: supervisor,
        }
    }

    /// What the peer wrote so far (for a failure message).
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("peer.log")).unwrap_or_default()
    }
}

static PROMETHEUS: OnceCell<SupervisedPeer> = OnceCell::const_new();

/// The shared Prometheus, started by the first test that asks for it.
pub async fn prometheus() -> &'static SupervisedPeer {
    PROMETHEUS.get_or_init(start_prometheus).await
}

async fn start_prometheus() -> SupervisedPeer {
    let binary = require_binary("prometheus", "prometheus");
    // Kept by the supervisor, which removes it: not a TempDir, whose drop
    // would never run in a static.
    let dir = tempfile::Builder::new()
        .prefix("shared-prometheus-")
        .tempdir()
        .expect("create a directory for the shared prometheus")
        .keep();
    let config = dir.join("prometheus.yml");
    // No scrape_configs: only remote-written data ends up in the TSDB.
    std::fs::write(
        &config,
        "global:\n  scrape_interval: 1h\n  evaluation_interval: 1h\n",
    )
    .expect("write the shared prometheus config");
    let port = free_port();
    let args = [
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--web.enable-remote-write-receiver".into(),
        "--log.level=warn".into(),
    ];
    let peer = SupervisedPeer::spawn(
        "the shared prometheus",
        format!("http://127.0.0.1:{port}"),
        dir,
        binary.to_str().expect("a UTF-8 path"),
        &args,
    );
    if let Err(message) =
        wait_for_http(&format!("{}/-/ready", peer.url), Duration::from_secs(30)).await
    {
        panic!(
            "the shared prometheus: {message}; its output:\n{}",
            peer.log()
        );
    }
    peer
}

/// A test's own scope of the shared Prometheus; reads through its
/// [`QueryApi`] see only the scope's series, without the scope label.
pub struct SharedPrometheus {
    api: QueryApi,
    write_url: String,
    scope: String,
}

impl SharedPrometheus {
    /// A new scope, named after the test (its thread) and unique in the run.
    pub async fn scope() -> SharedPrometheus {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let peer = prometheus().await;
        let test = std::thread::current().name().unwrap_or("test").to_owned();
        let scope = format!("{test}#{}", NEXT.fetch_add(1, Ordering::Relaxed));
        SharedPrometheus {
            api: QueryApi::scoped(peer.url.clone(), SCOPE_LABEL, &scope),
            write_url: format!("{}/api/v1/write", peer.url),
            scope,
        }
    }

    /// The remote-write receiver endpoint (shared: add [`Self::external_label`]).
    pub fn write_url(&self) -> String {
        self.write_url.clone()
    }

    /// The `--external-label` value that puts a pusher's series in this scope.
    pub fn external_label(&self) -> String {
        format!("{SCOPE_LABEL}={}", self.scope)
    }
}

impl Deref for SharedPrometheus {
    type Target = QueryApi;

    fn deref(&self) -> &QueryApi {
        &self.api
    }
}
