use super::*;
use crate::image_facts::{ErrorClass, ImageMetadata, ResolveError};

fn lookup(scope: u64, image: &str, password: Option<&str>) -> Lookup {
    Lookup {
        scope: Scope::for_test(scope),
        image: Arc::from(image),
        logins: password
            .map(|password| Login {
                username: "u".into(),
                password: password.into(),
                source: "secret shop/regcred".into(),
            })
            .into_iter()
            .collect(),
    }
}

/// The resolver's answer to `lookup`, valid until `until`: an error
/// whose message names the image, so answers can be told apart.
fn answered(lookup: &Lookup, until: Option<Instant>) -> Timed {
    let error = ResolveError::new(ErrorClass::NotFound, format!("answer for {}", lookup.image));
    let resolved = (
        lookup.scope,
        lookup.image.to_string(),
        Err(error),
        None,
        false,
    );
    (resolved, until)
}

/// One snapshot of `lookups` at `now`, the resolver answering each asked
/// lookup with `until(image)`; the images asked.
fn tick(
    memo: &mut Memo,
    lookups: &[Lookup],
    now: Instant,
    until: impl Fn(&str) -> Option<Instant>,
) -> Vec<String> {
    let (reused, asked) = memo.split(lookups.to_vec(), Facts::All, now);
    let images: Vec<String> = asked.iter().map(|l| l.image.to_string()).collect();
    let answers = asked.iter().map(|l| answered(l, until(&l.image))).collect();
    let all = memo.record(reused, answers, now);
    assert_eq!(all.len(), lookups.len());
    for (_, image, resolution, _, _) in &all {
        let message = resolution.as_ref().unwrap_err().message.clone();
        assert_eq!(message, format!("answer for {image}"));
    }
    let mut images = images;
    images.sort();
    images
}

#[test]
fn answers_are_reused_until_the_first_fact_they_used_expires_in_expiry_order() {
    let start = Instant::now();
    let s = Duration::from_secs;
    let lookups = [
        lookup(1, "a", None),
        lookup(1, "b", None),
        lookup(2, "c", None),
    ];
    let until = |image: &str| match image {
        "a" => Some(start + s(30)),
        "b" => Some(start + s(10)),
        _ => None,
    };
    let mut memo = Memo::default();
    assert_eq!(tick(&mut memo, &lookups, start, until), ["a", "b", "c"]);
    assert_eq!(
        tick(&mut memo, &lookups, start + s(9), until),
        Vec::<String>::new()
    );
    // The entries are ordered by expiry: b first, then a, then c's cap.
    let order: Vec<&str> = memo.expiries.values().map(|k| &*k.1).collect();
    assert_eq!(order, ["b", "a", "c"]);
    // At its expiry, b is asked again (and answered until later).
    let later = |image: &str| Some(start + s(if image == "b" { 100 } else { 1 }));
    assert_eq!(tick(&mut memo, &lookups, start + s(10), later), ["b"]);
    assert_eq!(tick(&mut memo, &lookups, start + s(30), later), ["a"]);
    // c's facts never change: reused up to MAX_REUSE.
    let c_expires = start + MAX_REUSE;
    assert_eq!(
        tick(&mut memo, &lookups[2..], c_expires - s(1), later),
        Vec::<String>::new()
    );
    assert_eq!(tick(&mut memo, &lookups[2..], c_expires, later), ["c"]);
}

#[test]
fn lookups_absent_from_a_snapshot_are_forgotten() {
    let now = Instant::now();
    let long = |_: &str| Some(now + Duration::from_secs(600));
    let (a, b) = (lookup(1, "a", None), lookup(1, "b", None));
    let mut memo = Memo::default();
    tick(&mut memo, &[a.clone(), b.clone()], now, long);
    assert_eq!(
        tick(&mut memo, std::slice::from_ref(&a), now, long),
        Vec::<String>::new()
    );
    assert_eq!((memo.entries.len(), memo.expiries.len()), (1, 1));
    // b came back: asked again, as it was forgotten.
    assert_eq!(tick(&mut memo, &[a, b], now, long), ["b"]);
    assert_eq!((memo.entries.len(), memo.expiries.len()), (2, 2));
}

#[test]
fn a_changed_login_or_scope_is_asked_and_incomplete_answers_are_not_kept() {
    let now = Instant::now();
    let long = |_: &str| Some(now + Duration::from_secs(600));
    let mut memo = Memo::default();
    tick(&mut memo, &[lookup(1, "a", Some("old"))], now, long);
    assert!(tick(&mut memo, &[lookup(1, "a", Some("old"))], now, long).is_empty());
    // The pull secret's password changed: another key.
    assert_eq!(
        tick(&mut memo, &[lookup(1, "a", Some("new"))], now, long),
        ["a"]
    );
    assert!(tick(&mut memo, &[lookup(1, "a", Some("new"))], now, long).is_empty());
    // Back to the old one: its answer was forgotten with the change.
    assert_eq!(
        tick(&mut memo, &[lookup(1, "a", Some("old"))], now, long),
        ["a"]
    );
    assert_eq!(
        tick(&mut memo, &[lookup(2, "a", Some("new"))], now, long),
        ["a"]
    );
    assert_eq!((memo.entries.len(), memo.expiries.len()), (1, 1));
    // More logins than the answer was obtained with, the same first one.
    let two = Lookup {
        logins: [lookup(2, "a", Some("new")), lookup(2, "a", Some("other"))]
            .into_iter()
            .flat_map(|l| l.logins)
            .collect(),
        ..lookup(2, "a", None)
    };
    assert_eq!(
        tick(&mut memo, std::slice::from_ref(&two), now, long),
        ["a"]
    );
    assert!(tick(&mut memo, &[two], now, long).is_empty());
    // An answer that left facts out is asked again at the next snapshot.
    let l = lookup(3, "d", None);
    let (reused, asked) = memo.split(vec![l.clone()], Facts::All, now);
    let mut partial = answered(&asked[0], None);
    partial.0 .4 = true;
    memo.record(reused, vec![partial], now);
    let (reused, asked) = memo.split(vec![l.clone()], Facts::All, now);
    assert_eq!((reused.len(), asked.len()), (0, 1));
    // And a snapshot that waits only for the known facts asks everything.
    let (reused, asked) = memo.split(vec![l], Facts::Known, now);
    assert_eq!((reused.len(), asked.len()), (0, 1));
}

#[test]
fn an_expired_lookup_answered_the_same_again_keeps_its_old_answer() {
    let start = Instant::now();
    let a = [lookup(1, "a", None)];
    let metadata = |digest: &str| Arc::new(ImageMetadata::digest_only(digest.to_owned()));
    let mut memo = Memo::default();
    // Each tick asks `a` and answers `answer`, valid for half a second.
    let mut tick = |now: Instant, answer: &Arc<ImageMetadata>| {
        let (reused, asked) = memo.split(a.to_vec(), Facts::All, now);
        assert!(reused.is_empty() && asked.len() == 1, "a is asked again");
        let resolved = (a[0].scope, "a".to_owned(), Ok(answer.clone()), None, false);
        let until = Some(now + Duration::from_millis(500));
        let all = memo.record(reused, vec![(resolved, until)], now);
        all[0].2.clone().expect("an answer")
    };
    let first = metadata("sha256:1");
    assert!(Arc::ptr_eq(&tick(start, &first), &first));
    // Asked again after its expiry, the same answer in a new Arc: the old
    // one is kept, so nothing downstream is made again.
    let same = metadata("sha256:1");
    let kept = tick(start + Duration::from_secs(1), &same);
    assert!(
        Arc::ptr_eq(&kept, &first),
        "the equal answer keeps the old Arc"
    );
    // A different answer is taken as it is.
    let moved = metadata("sha256:2");
    let taken = tick(start + Duration::from_secs(2), &moved);
    assert!(
        Arc::ptr_eq(&taken, &moved),
        "a changed answer is the new one"
    );
    // And the entry holds what was returned: reused while valid.
    let now = start + Duration::from_millis(2200);
    let (reused, asked) = memo.split(a.to_vec(), Facts::All, now);
    assert!(asked.is_empty());
    assert!(Arc::ptr_eq(reused[0].2.as_ref().unwrap(), &moved));
}
