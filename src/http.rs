//! What every HTTP peer of the pusher (registries, token servers,
//! remote-write receivers) needs from a response: a body read with a bound,
//! whatever the peer sends, and its `Retry-After`.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Reading a body failed: it was longer than allowed, or the connection broke.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the body is larger than the {limit} bytes allowed")]
    TooLarge { limit: usize },
    #[error("reading the body failed: {}", crate::describe_error(.0))]
    Transport(#[from] reqwest::Error),
}

/// The whole body, refusing a declared or actual length over `limit`
/// before buffering it.
pub async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, ReadError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge { limit });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// At most `limit` bytes of the body as one line of text, for a log line
/// or an error message; never fails (an unreadable body is empty).
pub async fn body_excerpt(mut response: reqwest::Response, limit: usize) -> String {
    let mut body = Vec::new();
    let mut truncated = false;
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() > room {
            truncated = true;
            break;
        }
    }
    let mut text = String::from_utf8_lossy(&body)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if truncated {
        text.push('…');
    }
    text
}

/// `Retry-After` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (date.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
        .or(Some(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            retry_after(&headers),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        let soon = chrono::Utc::now() + chrono::Duration::seconds(30);
        headers.insert(RETRY_AFTER, soon.to_rfc2822().parse().unwrap());
        assert!(retry_after(&headers).unwrap() > Duration::from_secs(25));
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }
}
