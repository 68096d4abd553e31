//! The transport: one HTTP agent shared by every thread, a gate that bounds
//! requests in flight, a request budget, and retries with exponential
//! back-off and jitter.
//!
//! ```text
//! call ─▶ gate (≤ concurrency in flight) ─▶ budget (−1) ─▶ POST/GET
//!            ▲                                               │
//!            └── sleep(backoff | Retry-After) ◀── 408/429/5xx, timeout, refused
//! ```
//!
//! A status that retrying cannot fix (400, 401, 404, ...) fails at once, so
//! a wrong key or a bad request is reported before any time is spent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::Value;

use crate::error::{RemoteError, Result};

/// Where the teacher is and how to talk to it.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// Base URL up to and including `/v1`, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// The model id to request; `None` takes the only one `/v1/models` lists.
    pub model: Option<String>,
    /// Sent as `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Back-off policy for failed attempts.
    pub retry: RetryPolicy,
    /// Give up on one attempt after this long.
    pub timeout: Duration,
    /// HTTP requests (attempts, retries included) this client may send in all.
    pub max_requests: Option<u64>,
}

impl RemoteConfig {
    /// Defaults for everything but the URL: 8 in flight, 6 retries, 10 min per attempt.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: None,
            api_key: None,
            concurrency: 8,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(600),
            max_requests: None,
        }
    }
}

/// Exponential back-off with jitter: attempt `a` (0-based) waits a uniform
/// draw from `[d/2, d]` with `d = min(max_delay, base_delay · 2^a)`, or at
/// least what the server's `Retry-After` asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first back-off.
    pub base_delay: Duration,
    /// The longest back-off.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// How long to wait before retry number `attempt + 1`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let full = self
            .base_delay
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max_delay);
        let jittered = full.mul_f64(rand::rng().random_range(0.5..=1.0));
        retry_after.map_or(jittered, |after| after.max(jittered))
    }
}

/// Counters of what the client did, for reports and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// HTTP requests sent (retries included).
    pub requests: u64,
    /// Of those, retries.
    pub retries: u64,
    /// Request body bytes sent.
    pub bytes_sent: u64,
    /// Response body bytes received.
    pub bytes_received: u64,
}

/// One failed attempt: retry it or give up.
enum Failure {
    Retry {
        what: String,
        after: Option<Duration>,
    },
    Fatal(RemoteError),
}

/// The HTTP side of a remote teacher; `Send + Sync`, shared by worker threads.
pub(crate) struct Transport {
    agent: ureq::Agent,
    base: String,
    auth: Option<String>,
    retry: RetryPolicy,
    max_requests: Option<u64>,
    gate: Gate,
    requests: AtomicU64,
    retries: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
}

impl Transport {
    pub(crate) fn new(config: &RemoteConfig) -> Result<Self> {
        let base = config.base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(RemoteError::BadUrl(config.base_url.clone()));
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(config.timeout))
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        Ok(Self {
            agent,
            base,
            auth: config.api_key.as_ref().map(|k| format!("Bearer {k}")),
            retry: config.retry,
            max_requests: config.max_requests,
            gate: Gate::new(config.concurrency.max(1)),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
        })
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn key_given(&self) -> bool {
        self.auth.is_some()
    }

    pub(crate) fn traffic(&self) -> Traffic {
        Traffic {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            bytes_sent: self.sent.load(Ordering::Relaxed),
            bytes_received: self.received.load(Ordering::Relaxed),
        }
    }

    /// `GET base + path`, retried; the parsed JSON body.
    pub(crate) fn get(&self, path: &str) -> Result<Value> {
        self.call(path, None)
    }

    /// `POST base + path` with a JSON body, retried; the parsed JSON body.
    pub(crate) fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(path, Some(body.to_string()))
    }

    fn call(&self, path: &str, body: Option<String>) -> Result<Value> {
        let _slot = self.gate.enter();
        let mut attempt = 0;
        loop {
            self.spend()?;
            match self.attempt(path, body.as_deref()) {
                Ok(value) => return Ok(value),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry { what, after }) => {
                    if attempt >= self.retry.max_retries {
                        return Err(RemoteError::RetriesExhausted {
                            endpoint: path.to_owned(),
                            attempts: attempt + 1,
                            last: what,
                        });
                    }
                    std::thread::sleep(self.retry.delay(attempt, after));
                    attempt += 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Takes one request from the budget.
    fn spend(&self) -> Result<()> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        match self.max_requests {
            Some(limit) if n > limit => {
                self.requests.fetch_sub(1, Ordering::Relaxed);
                Err(RemoteError::BudgetExhausted { limit })
            }
            _ => Ok(()),
        }
    }

    fn attempt(&self, path: &str, body: Option<&str>) -> std::result::Result<Value, Failure> {
        let url = format!("{}{path}", self.base);
        let response = match body {
            Some(body) => {
                self.sent.fetch_add(body.len() as u64, Ordering::Relaxed);
                let mut request = self
                    .agent
                    .post(&url)
                    .header("Content-Type", "application/json");
                if let Some(auth) = &self.auth {
                    request = request.header("Authorization", auth);
                }
                request.send(body)
            }
            None => {
                let mut request = self.agent.get(&url);
                if let Some(auth) = &self.auth {
                    request = request.header("Authorization", auth);
                }
                request.call()
            }
        };
        let mut response = response.map_err(|e| transport_failure(path, e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let text = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .map_err(|e| transport_failure(path, e))?;
        self.received
            .fetch_add(text.len() as u64, Ordering::Relaxed);
        classify(path, status, retry_after, &text)
    }
}

/// Sorts a response into success, retry or fatal error.
fn classify(
    path: &str,
    status: u16,
    retry_after: Option<Duration>,
    text: &str,
) -> std::result::Result<Value, Failure> {
    let parsed: std::result::Result<Value, _> = serde_json::from_str(text);
    if (200..300).contains(&status) {
        return parsed.map_err(|e| {
            Failure::Fatal(RemoteError::BadResponse {
                endpoint: path.to_owned(),
                problem: format!("body is not JSON ({e})"),
            })
        });
    }
    let message = parsed
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.chars().take(300).collect());
    match status {
        408 | 429 | 500 | 502 | 503 | 504 => Err(Failure::Retry {
            what: format!("HTTP {status}: {message}"),
            after: retry_after,
        }),
        _ => Err(Failure::Fatal(RemoteError::Http {
            endpoint: path.to_owned(),
            status,
            message,
        })),
    }
}

/// Timeouts, refused or reset connections and other I/O failures are worth
/// retrying (a restarting server); anything else is not.
fn transport_failure(path: &str, error: ureq::Error) -> Failure {
    match error {
        ureq::Error::Timeout(_)
        | ureq::Error::Io(_)
        | ureq::Error::ConnectionFailed
        | ureq::Error::Protocol(_) => Failure::Retry {
            what: error.to_string(),
            after: None,
        },
        other => Failure::Fatal(RemoteError::Http {
            endpoint: path.to_owned(),
            status: 0,
            message: other.to_string(),
        }),
    }
}

/// A counting semaphore: at most `n` holders at once.
struct Gate {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A held slot; returned on drop.
struct Slot<'g>(&'g Gate);

impl Gate {
    fn new(n: usize) -> Self {
        Self {
            free: Mutex::new(n),
            freed: Condvar::new(),
        }
    }

    fn enter(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let policy = RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for attempt in 0..8 {
            let full = Duration::from_millis(100 * (1 << attempt)).min(Duration::from_secs(1));
            let d = policy.delay(attempt, None);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        let d = policy.delay(0, Some(Duration::from_secs(3)));
        assert_eq!(d, Duration::from_secs(3));
    }

    #[test]
    fn statuses_are_sorted_into_retry_and_fatal() {
        assert!(matches!(
            classify("/x", 429, None, "{}"),
            Err(Failure::Retry { .. })
        ));
        assert!(matches!(
            classify("/x", 503, None, "oops"),
            Err(Failure::Retry { .. })
        ));
        match classify("/x", 400, None, r#"{"error": {"message": "bad n"}}"#) {
            Err(Failure::Fatal(RemoteError::Http {
                status, message, ..
            })) => assert_eq!((status, message.as_str()), (400, "bad n")),
            _ => panic!("400 must be fatal"),
        }
        assert!(matches!(classify("/x", 200, None, "{\"a\": 1}"), Ok(v) if v["a"] == 1));
        assert!(matches!(
            classify("/x", 200, None, "not json"),
            Err(Failure::Fatal(RemoteError::BadResponse { .. }))
        ));
    }

    #[test]
    fn budget_counts_every_attempt() {
        let mut config = RemoteConfig::new("http://127.0.0.1:9/v1");
        config.max_requests = Some(2);
        let t = Transport::new(&config).unwrap();
        assert!(t.spend().is_ok() && t.spend().is_ok());
        assert!(matches!(
            t.spend(),
            Err(RemoteError::BudgetExhausted { limit: 2 })
        ));
        assert_eq!(t.traffic().requests, 2);
    }

    #[test]
    fn urls_must_be_http() {
        assert!(matches!(
            Transport::new(&RemoteConfig::new("ftp://x/v1")),
            Err(RemoteError::BadUrl(_))
        ));
    }
}
