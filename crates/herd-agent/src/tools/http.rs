//! HTTP tools: a JSON `POST` to one allow-listed base URL.
//!
//! The model supplies only the JSON body and, if the tool declares a
//! `path_argument`, a relative path under the base URL made of plain
//! segments (no `..`, no `//`, no `@`, no scheme), so it cannot name
//! another host. The host is resolved on every call and the request goes
//! to the checked address itself (the name travels in the `Host` header),
//! so a DNS answer that changes between check and connect cannot redirect
//! it. Loopback, private, link-local, shared and multicast addresses are
//! refused unless the host is listed in `allow_private`. Redirects are not
//! followed, and every call has a timeout.
//!
//! Only `http://` is supported: herd builds no TLS stack; put a
//! TLS-terminating proxy you trust in front of an `https` service.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;
use ureq::http::Uri;

use super::Failure;
use crate::config::ToolFile;
use crate::error::AgentError;

/// Largest response body read, in bytes.
const MAX_BODY: u64 = 1 << 20;

/// Which hosts a tool may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Hosts allowed to resolve to non-public addresses.
    pub allow_private: Vec<String>,
}

impl UrlPolicy {
    /// Resolves `host:port` and returns the address to connect to, refusing
    /// non-public addresses for hosts not in `allow_private`.
    pub fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, String> {
        let addresses: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        let private_ok = self
            .allow_private
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host));
        if !private_ok {
            if let Some(bad) = addresses.iter().find(|a| !is_public(a.ip())) {
                return Err(format!(
                    "{host} resolves to the non-public address {}; not allowed",
                    bad.ip()
                ));
            }
        }
        addresses
            .first()
            .copied()
            .ok_or_else(|| format!("{host} has no address"))
    }
}

/// Whether `ip` is an ordinary public unicast address.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// A configured HTTP tool.
#[derive(Debug)]
pub struct HttpTool {
    name: String,
    base: Uri,
    path_argument: Option<String>,
    policy: UrlPolicy,
    agent: ureq::Agent,
}

impl HttpTool {
    /// Checks the base URL and prepares a client that follows no redirects.
    pub(crate) fn new(agent_name: &str, file: &ToolFile) -> Result<HttpTool, AgentError> {
        let ToolFile::Http {
            name,
            url,
            path_argument,
            allow_private,
            timeout_seconds,
            ..
        } = file
        else {
            return Err(AgentError::definition(agent_name, "not an HTTP tool"));
        };
        let bad = |p: &str| {
            AgentError::definition(agent_name, format!("tool {name:?}: url {url:?}: {p}"))
        };
        let base: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        match base.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "https is not supported (no TLS in this build); use http:// behind a TLS proxy",
                ))
            }
            _ => return Err(bad("must start with http://")),
        }
        let authority = base.authority().ok_or_else(|| bad("has no host"))?;
        if authority.as_str().contains('@') || base.query().is_some() {
            return Err(bad("must not carry a user name or a query"));
        }
        if *timeout_seconds == 0 {
            return Err(bad("timeout_seconds must be at least 1"));
        }
        let config = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(*timeout_seconds)))
            .build();
        Ok(HttpTool {
            name: name.clone(),
            base,
            path_argument: path_argument.clone(),
            policy: UrlPolicy {
                allow_private: allow_private.clone(),
            },
            agent: config.into(),
        })
    }

    /// Posts the arguments (without the path argument) as JSON.
    pub(crate) fn run(&self, arguments: &Value) -> Result<Value, Failure> {
        let mut body = arguments.clone();
        let path = match &self.path_argument {
            Some(key) => {
                let value = body.as_object_mut().and_then(|o| o.remove(key));
                match value {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(p)) => checked_path(&p).map_err(Failure::refused)?,
                    Some(other) => {
                        return Err(Failure::refused(format!(
                            "{key} must be a string, not {other}"
                        )))
                    }
                }
            }
            None => String::new(),
        };
        let host = self.base.host().unwrap_or_default();
        let port = self.base.port_u16().unwrap_or(80);
        let address = self.policy.resolve(host, port).map_err(Failure::refused)?;
        let base_path = self.base.path().trim_end_matches('/');
        let url = match path.is_empty() {
            true => format!("http://{address}{}", self.base.path()),
            false => format!("http://{address}{base_path}/{path}"),
        };
        let host_header = self.base.authority().map_or(host, |a| a.as_str());
        let mut response = self
            .agent
            .post(&url)
            .header("Host", host_header)
            .send_json(&body)
            .map_err(|e| Failure::error(format!("{}: {e}", self.name)))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(Failure::refused(format!(
                "{} answered with a redirect ({status}); redirects are not followed",
                self.name
            )));
        }
        let value: Value = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_json()
            .map_err(|e| {
                Failure::error(format!(
                    "{}: HTTP {status}: the body is not JSON: {e}",
                    self.name
                ))
            })?;
        if !status.is_success() {
            return Err(Failure::error(format!(
                "{}: HTTP {status}: {value}",
                self.name
            )));
        }
        Ok(value)
    }
}

/// A relative path of plain segments (`orders/1042`), or why not.
fn checked_path(path: &str) -> Result<String, String> {
    let plain = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c))
    };
    if path.split('/').all(plain) {
        Ok(path.to_owned())
    } else {
        Err(format!(
            "path {path:?} is not a relative path of plain segments under the tool's URL; refused"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn paths_cannot_leave_the_base() {
        assert_eq!(checked_path("orders/1042").unwrap(), "orders/1042");
        for bad in [
            "../admin",
            "a//b",
            "@evil.example/x",
            "http://evil.example",
            "a/./b",
            "x?y=1",
            "",
            "%2e%2e",
        ] {
            assert!(checked_path(bad).is_err(), "{bad}");
        }
    }
}
