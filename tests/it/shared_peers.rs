//! The peers the binary's tests share (`support::shared`): two scopes of
//! the shared Prometheus do not see each other's series, and the shared
//! Prometheus does not outlive the test process, whether the process ends
//! or is killed.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use support::fixtures::pod;
use support::prometheus::QueryApi;
use support::shared::{self, SCOPE_LABEL};
use support::{wait_for_http, wait_until, KubeApi, SharedPrometheus};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// What a helper process says about the shared Prometheus it started.
const SAYS: &str = "shared prometheus:";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_scopes_of_the_shared_prometheus_see_only_their_own_series() {
    let (api, first, second) = tokio::join!(
        KubeApi::start(),
        SharedPrometheus::scope(),
        SharedPrometheus::scope()
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    for (scope, name) in [(&first, "first"), (&second, "second")] {
        api.apply(&pod("shop", name, &format!("127.0.0.1:1/{name}:1")));
        support::pusher::run_once(
            &[
                "--once",
                "--remote-write-url",
                &scope.write_url(),
                "--external-label",
                &scope.external_label(),
            ],
            Some(&kubeconfig),
        )
        .await
        .assert_success();
    }

    let info = "container_image_container_info";
    let first_sees = first.query(info).await;
    assert_eq!(first_sees.len(), 1, "{first_sees:?}");
    assert_eq!(first_sees[0].labels["name"], "first");
    assert!(
        !first_sees[0].labels.contains_key(SCOPE_LABEL),
        "answers come without the scope label: {first_sees:?}"
    );
    let second_sees = second.query(&format!("count({info})")).await;
    assert_eq!(second_sees[0].value, 2.0, "the second push had both pods");
    // Unscoped, the store holds both scopes' series, told apart by the label.
    let unscoped = QueryApi::new(shared::prometheus().await.url.clone());
    for (scope, pods) in [(&first, 1.0), (&second, 2.0)] {
        let label = scope.external_label();
        let (name, value) = label.split_once('=').unwrap();
        let count = unscoped
            .query(&format!("count({info}{{{name}={value:?}}})"))
            .await;
        assert_eq!(count[0].value, pods, "{label}: {count:?}");
    }
}

/// Run by the tests below in a process of their own: starts the shared
/// Prometheus, says where it is, and waits until it is killed.
#[tokio::test]
#[ignore = "a helper process of the_shared_prometheus_stops_when_the_test_process_is_killed"]
async fn hold_the_shared_prometheus() {
    say_where_the_shared_prometheus_is().await;
    std::future::pending::<()>().await;
}

/// Run by the tests below in a process of their own: starts the shared
/// Prometheus, says where it is, and ends.
#[tokio::test]
#[ignore = "a helper process of the_shared_prometheus_stops_when_the_tests_end"]
async fn start_the_shared_prometheus_and_end() {
    say_where_the_shared_prometheus_is().await;
}

async fn say_where_the_shared_prometheus_is() {
    let peer = shared::prometheus().await;
    println!("{SAYS} {} {} {}", peer.pid, peer.url, peer.dir.display());
}

/// A helper process and what it prints.
type Helper = (Child, Lines<BufReader<ChildStdout>>);

/// Runs the helper test `name` in a new process of this binary, and reads
/// the shared Prometheus' pid, URL and directory from it.
async fn helper(name: &str) -> (Helper, u32, String, PathBuf) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--ignored", "--nocapture"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(said) = line.split(SAYS).nth(1) {
            let fields: Vec<&str> = said.split_whitespace().collect();
            let [pid, url, dir] = fields[..] else {
                panic!("the helper said {line:?}")
            };
            return ((child, lines), pid.parse().unwrap(), url.into(), dir.into());
        }
    }
    panic!("the helper {name} ended without starting the shared prometheus");
}

/// Waits until the process `pid` is gone and `dir` removed.
async fn assert_gone(pid: u32, url: &str, dir: &Path) {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    assert!(
        wait_until(Duration::from_secs(30), || !proc.exists() && !dir.exists()).await,
        "the shared prometheus (pid {pid}, {}) outlived the test process",
        dir.display()
    );
    assert!(
        wait_for_http(&format!("{url}/-/ready"), Duration::from_millis(300))
            .await
            .is_err(),
        "{url} still answers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_prometheus_stops_when_the_test_process_is_killed() {
    let ((mut child, _output), pid, url, dir) =
        helper("shared_peers::hold_the_shared_prometheus").await;
    wait_for_http(&format!("{url}/-/ready"), Duration::from_secs(10))
        .await
        .expect("the helper's shared prometheus is up");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    // SIGKILL: nothing of the test process runs, no destructor, no handler.
    child.kill().await.unwrap();
    assert_gone(pid, &url, &dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_prometheus_stops_when_the_tests_end() {
    let ((mut child, mut output), pid, url, dir) =
        helper("shared_peers::start_the_shared_prometheus_and_end").await;
    // Read to the end: the helper must not die of a closed pipe.
    while output.next_line().await.unwrap().is_some() {}
    assert!(child.wait().await.unwrap().success());
    assert_gone(pid, &url, &dir).await;
}
