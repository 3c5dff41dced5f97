//! Requests to the Lease API: each with a time limit, and what their
//! failure means to the protocol (a conflict, a refusal).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

/// Why a request to the Lease API failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum CallError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl CallError {
    fn status(&self) -> Option<&kube::core::Status> {
        match self {
            CallError::Kube(kube::Error::Api(status)) => Some(status),
            _ => None,
        }
    }

    pub(super) fn is_conflict(&self) -> bool {
        self.status().is_some_and(|s| s.is_conflict())
    }

    pub(super) fn is_forbidden(&self) -> bool {
        self.status().is_some_and(|s| s.code == 403)
    }
}

/// Runs one API request with a time limit.
pub(super) async fn call<T>(
    limit: Duration,
    request: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(limit, request).await {
        Ok(result) => result.map_err(CallError::from),
        Err(_) => Err(CallError::Timeout(limit)),
    }
}

pub(super) fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}
