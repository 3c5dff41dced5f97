//! Which providers are enabled, how they reach their endpoints, and the
//! clock their tokens expire by.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[cfg(feature = "acr")]
use super::acr;
#[cfg(feature = "ecr")]
use super::ecr;
#[cfg(feature = "gcr")]
use super::gcr;

/// The wall clock token expiry is measured against; replaceable in tests.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    pub fn system() -> Clock {
        Clock(Arc::new(SystemTime::now))
    }

    pub fn new(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    pub fn now(&self) -> SystemTime {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// Which providers are enabled and how they reach their endpoints.
/// [`Settings::default`] enables none; [`Settings::from_env`] enables every
/// compiled-in provider, configured from the standard environment variables.
#[derive(Debug, Clone)]
pub struct Settings {
    #[cfg(feature = "ecr")]
    pub ecr: Option<ecr::EcrSettings>,
    #[cfg(feature = "gcr")]
    pub gcr: Option<gcr::GcrSettings>,
    #[cfg(feature = "acr")]
    pub acr: Option<acr::AcrSettings>,
    /// Time limit of one token request.
    pub timeout: Duration,
    /// Time limit to connect, short so that an absent metadata server fails fast.
    pub connect_timeout: Duration,
    /// How long a failure is remembered before the token is asked for again.
    pub error_ttl: Duration,
    /// Tokens are refreshed this long before they expire (at most half
    /// their lifetime before).
    pub refresh_margin: Duration,
    pub clock: Clock,
    /// Host names resolved to these addresses instead of through DNS (the
    /// port of the address is ignored). For tests.
    pub resolve: Vec<(String, SocketAddr)>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            #[cfg(feature = "ecr")]
            ecr: None,
            #[cfg(feature = "gcr")]
            gcr: None,
            #[cfg(feature = "acr")]
            acr: None,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            error_ttl: Duration::from_secs(60),
            refresh_margin: Duration::from_secs(5 * 60),
            clock: Clock::system(),
            resolve: Vec::new(),
        }
    }
}

impl Settings {
    /// Every compiled-in provider, configured from the process environment.
    pub fn from_env() -> Settings {
        Settings::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Like [`Settings::from_env`], reading variables through `var` (empty
    /// values count as unset).
    pub fn from_lookup(var: &dyn Fn(&str) -> Option<String>) -> Settings {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        #[cfg(not(any(feature = "ecr", feature = "gcr", feature = "acr")))]
        let _ = var;
        Settings {
            #[cfg(feature = "ecr")]
            ecr: Some(ecr::EcrSettings::from_lookup(&var)),
            #[cfg(feature = "gcr")]
            gcr: Some(gcr::GcrSettings::from_lookup(&var)),
            #[cfg(feature = "acr")]
            acr: Some(acr::AcrSettings::from_lookup(&var)),
            ..Settings::default()
        }
    }
}
