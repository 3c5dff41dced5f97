//! Process plumbing shared by the test servers: free ports, external daemons
//! that die with the test, and readiness polling (on `super::wait`).
//!
//! The external daemons (Debian's `docker-registry` and `prometheus`) are real
//! binaries, so every test that starts one owns a [`ChildGuard`]: dropping it
//! kills and reaps the process, which keeps a failing (panicking) test from
//! leaving a daemon behind. The daemon's stdout and stderr go to a log file in
//! the guard's own tempdir; when a test panics while the guard is alive the
//! log is printed, so a failure shows what the daemon said.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait::{wait_for, wait_for_async, wait_until_async};

/// The most log printed when a test panics with a guard alive, so a chatty
/// daemon does not bury the panic message.
const LOG_TAIL_ON_PANIC: usize = 8 * 1024;

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is found by binding port 0 and dropping the listener, so another
/// process may grab it before the caller binds it; on a test machine that race
/// is rare enough, and a daemon that fails to bind shows it in its logs.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("local address of a freshly bound listener")
        .port()
}

/// Serves `app` on a free 127.0.0.1 port for as long as the test's runtime
/// runs, and returns the address: the stand-in peers tests script.
///
/// Tests check what the pusher did to a peer with reqwest as well (its
/// `/metrics`, the stores), which needs rustls's provider: installed here,
/// so no test has to.
pub async fn serve(app: axum::Router) -> std::net::SocketAddr {
    install_crypto_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("listener has an address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("a stand-in serves") });
    addr
}

/// Installs rustls's ring provider as the process default, as the product
/// does at startup: kube and reqwest build rustls configs even for plain
/// HTTP, and with no provider chosen they panic. Harmless when one is already
/// installed.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The full path of `binary`, searched on `PATH` (then `/usr/sbin` and
/// `/usr/bin`, which a minimal `PATH` may lack).
///
/// Panics with the `apt-get` line that installs `debian_package` when the
/// binary is missing, so a test run on a fresh machine says what to do.
pub fn require_binary(binary: &str, debian_package: &str) -> PathBuf {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path_var).collect();
    dirs.extend([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")]);
    dirs.into_iter()
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| {
            panic!(
                "`{binary}` was not found on PATH; these tests run the real program: \
                 install it with `apt-get install -y {debian_package}`"
            )
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A child process that is killed and reaped when the guard is dropped.
///
/// Its stdout and stderr are both written to one log file in a tempdir owned
/// by the guard (read it with [`ChildGuard::logs`]).
pub struct ChildGuard {
    name: String,
    child: Child,
    log_path: PathBuf,
    // Keeps the log file alive as long as the guard; removed on drop.
    _log_dir: tempfile::TempDir,
}

impl ChildGuard {
    /// Spawns `command` with stdin closed and output sent to the log file.
    ///
    /// `name` is used in messages (e.g. "docker-registry").
    pub fn spawn(name: &str, command: &mut Command) -> ChildGuard {
        let log_dir = tempfile::Builder::new()
            .prefix(&format!("{name}-log-"))
            .tempdir()
            .expect("create a tempdir for the child's log");
        let log_path = log_dir.path().join("output.log");
        let stdout = File::create(&log_path).expect("create the child's log file");
        let stderr = stdout
            .try_clone()
            .expect("duplicate the log file handle for stderr");
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {name} ({command:?}): {e}"));
        ChildGuard {
            name: name.to_owned(),
            child,
            log_path,
            _log_dir: log_dir,
        }
    }

    /// The operating-system process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        match std::fs::read(&self.log_path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("<could not read {}: {e}>", self.log_path.display()),
        }
    }

    /// Sends SIGTERM (as Kubernetes does when stopping a pod) and waits up
    /// to `timeout` for the process to exit; `None` if it did not.
    pub async fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        assert!(
            sent.is_ok_and(|s| s.success()),
            "could not signal {}",
            self.name
        );
        wait_for(timeout, || self.child.try_wait().ok().flatten()).await
    }

    /// `Err` with the exit status and logs if the process has already exited.
    pub fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited early with {status}; its output:\n{}",
                self.name,
                self.logs()
            )),
            Err(e) => Err(format!("could not poll {}: {e}", self.name)),
        }
    }

    /// Polls `url` until `accept` likes the HTTP status, failing fast (with
    /// the logs) if the process exits, or after `timeout` (also with the logs).
    pub async fn wait_until_http(
        &mut self,
        url: &str,
        timeout: Duration,
        accept: impl Fn(reqwest::StatusCode) -> bool,
    ) -> Result<(), String> {
        let client = poll_client();
        let mut last = String::new();
        // Some(Err) ends the wait early: the process has exited.
        let outcome = wait_for_async(timeout, async || {
            if let Err(exited) = self.check_running() {
                return Some(Err(exited));
            }
            match probe(&client, url, &accept).await {
                Ok(()) => Some(Ok(())),
                Err(e) => {
                    last = e;
                    None
                }
            }
        })
        .await;
        outcome.unwrap_or_else(|| {
            Err(format!(
                "{} did not become ready at {url} within {timeout:?} (last: {last}); its output:\n{}",
                self.name,
                self.logs()
            ))
        })
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Kill fails only if the process is already gone, which is fine: wait
        // still reaps it so no zombie is left.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let logs = self.logs();
            let tail_start = logs.len().saturating_sub(LOG_TAIL_ON_PANIC);
            let tail_start = (tail_start..logs.len())
                .find(|&i| logs.is_char_boundary(i))
                .unwrap_or(logs.len());
            eprintln!(
                "----- output of {} (pid {}), last {} bytes -----\n{}\n----- end of {} output -----",
                self.name,
                self.child.id(),
                logs.len() - tail_start,
                &logs[tail_start..],
                self.name
            );
        }
    }
}

/// Polls `url` with GET until it answers 2xx, or gives up after `timeout`.
pub async fn wait_for_http(url: &str, timeout: Duration) -> Result<(), String> {
    let client = poll_client();
    let mut last = String::new();
    let answered = wait_until_async(timeout, async || {
        match probe(&client, url, &|status: reqwest::StatusCode| {
            status.is_success()
        })
        .await
        {
            Ok(()) => true,
            Err(e) => {
                last = e;
                false
            }
        }
    })
    .await;
    if answered {
        Ok(())
    } else {
        Err(format!(
            "{url} did not answer 2xx within {timeout:?} (last: {last})"
        ))
    }
}

fn poll_client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("build a reqwest client for readiness polling")
}

async fn probe(
    client: &reqwest::Client,
    url: &str,
    accept: &impl Fn(reqwest::StatusCode) -> bool,
) -> Result<(), String> {
    match client.get(url).send().await {
        Ok(response) if accept(response.status()) => Ok(()),
        Ok(response) => Err(format!("HTTP {}", response.status())),
        Err(e) => Err(e.to_string()),
    }
}
