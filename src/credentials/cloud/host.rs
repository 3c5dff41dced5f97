//! Registry host names as the providers match them.

/// A registry host as given (`host[:port]`) and its lowercase name without
/// port, which is what providers match.
#[derive(Debug, Clone)]
pub(crate) struct RegistryHost {
    /// As given, for messages.
    pub given: String,
    /// Lowercase `host[:port]`.
    pub authority: String,
    /// Lowercase host name without port or trailing dot.
    pub name: String,
}

impl RegistryHost {
    pub(crate) fn parse(given: &str) -> RegistryHost {
        let authority = given
            .trim()
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let name = if authority.starts_with('[') {
            // An IPv6 literal: never a cloud registry.
            authority.clone()
        } else {
            authority.split(':').next().unwrap_or_default().to_owned()
        };
        RegistryHost {
            given: given.to_owned(),
            name: name.trim_end_matches('.').to_owned(),
            authority,
        }
    }
}

/// Whether `name` is `<label>.<suffix>` with one DNS label before the suffix
/// (the suffix starts with a dot or a dash).
pub(crate) fn one_label_before(name: &str, suffix: &str) -> bool {
    name.strip_suffix(suffix).is_some_and(is_dns_label)
}

pub(crate) fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts_are_lowercased_without_port() {
        let host = RegistryHost::parse("MyReg.AzureCR.io:443");
        assert_eq!(host.name, "myreg.azurecr.io");
        assert_eq!(host.authority, "myreg.azurecr.io:443");
        assert_eq!(host.given, "MyReg.AzureCR.io:443");
        assert_eq!(RegistryHost::parse("gcr.io.").name, "gcr.io");
        assert_eq!(RegistryHost::parse("https://gcr.io/project").name, "gcr.io");
        assert_eq!(RegistryHost::parse("[::1]:5000").name, "[::1]:5000");
    }

    #[test]
    fn dns_labels() {
        assert!(one_label_before("eu.gcr.io", ".gcr.io"));
        assert!(!one_label_before("a.b.gcr.io", ".gcr.io"));
        assert!(!one_label_before(".gcr.io", ".gcr.io"));
        assert!(!one_label_before("-x.gcr.io", ".gcr.io"));
    }
}
