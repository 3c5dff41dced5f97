use super::*;

/// An environment of the given variables, for `Settings::from_lookup`.
pub(crate) fn env(
    pairs: &'static [(&'static str, &'static str)],
) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[test]
fn token_login_debug_hides_the_password() {
    let login = TokenLogin {
        username: "AWS".into(),
        password: "hunter2-secret".into(),
    };
    let text = format!("{login:?}");
    assert!(text.contains("AWS"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}
