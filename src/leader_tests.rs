use super::*;

#[test]
fn timings_follow_client_go_ratios_and_round_the_lease_up() {
    let t = Timings::new(Duration::from_secs(15));
    assert_eq!(t.lease_seconds, 15);
    assert_eq!(t.renew_interval, Duration::from_secs(5));
    assert_eq!(t.renew_deadline, Duration::from_secs(10));
    assert!(t.retry_period > Duration::from_secs(2) && t.retry_period < Duration::from_secs(3));
    let t = Timings::new(Duration::from_millis(1500));
    assert_eq!(t.lease_seconds, 2, "never shorter than asked for");
    assert!(t.renew_deadline < t.lease_duration);
}

#[test]
fn a_refused_candidate_backs_off_exponentially_up_to_twice_the_lease() {
    let t = Timings::new(Duration::from_secs(14));
    let waits: Vec<u64> = (1..=7).map(|n| t.backoff(n).as_secs()).collect();
    assert_eq!(waits, [2, 4, 8, 16, 28, 28, 28]);
    assert_eq!(t.backoff(u32::MAX), Duration::from_secs(28));
}

#[test]
fn the_lease_namespace_comes_from_the_first_source_that_names_one() {
    let ns = |flag, pod, account, client| {
        let found = lease_namespace(flag, pod, account, client);
        (found.name, found.source)
    };
    let all = ns(Some("flag"), Some("pod"), Some("account\n"), "context");
    assert_eq!(all, ("flag".into(), "--lease-namespace"));
    assert_eq!(
        ns(None, Some("pod"), Some("account\n"), "context"),
        ("pod".into(), "--pod-namespace")
    );
    // The mounted file ends with a newline on some clusters.
    assert_eq!(
        ns(None, None, Some("account\n"), "context"),
        ("account".into(), "the service account")
    );
    // Outside a pod (issue 12): the kubeconfig context, not "default".
    assert_eq!(
        ns(None, None, None, "container-image-pusher"),
        ("container-image-pusher".into(), "the kubeconfig context")
    );
    assert_eq!(
        ns(Some(""), Some(" "), Some(""), "default"),
        ("default".into(), "the kubeconfig context"),
        "empty values count as absent"
    );
}

#[test]
fn the_identity_is_the_pod_name_where_there_is_one() {
    assert_eq!(identity(Some("pod-1"), Some("host"), 7), "pod-1");
    assert_eq!(identity(Some(""), Some("host"), 7), "host");
    assert_eq!(identity(None, None, 7), "container-image-pusher-7");
}

#[tokio::test]
async fn leadership_lapses_at_the_deadline_on_its_own() {
    let status = Status {
        leader: watch::channel(false).0,
        valid_until: Mutex::new(None),
    };
    let mut changes = status.leader.subscribe();
    assert!(status.set(Some(Instant::now() + Duration::from_secs(60))));
    assert!(status.is_leader());
    assert!(changes.has_changed().unwrap());
    changes.borrow_and_update();
    assert!(!status.set(Some(Instant::now())), "still leader: no change");
    assert!(!status.is_leader(), "past its deadline");
    assert!(status.set(None));
    assert!(!*changes.borrow_and_update());
}
