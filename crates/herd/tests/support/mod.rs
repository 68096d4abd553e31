//! Helpers for tests that need a teacher server: a `herd serve` child
//! process, and a proxy in front of it that injects network faults.
//!
//! The proxy is a test double of a flaky *network*, not of the teacher:
//! every request it lets through is answered by the real server, and the
//! ones it fails get the answers an overloaded or broken gateway gives
//! (429 with `Retry-After`, 500, or a dropped connection).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Runs the herd binary with `env` set.
pub fn herd_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herd"));
    command
        .args(["--threads", "2"])
        .args(args)
        .env_remove("HERD_MODEL");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run herd")
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A `herd serve` child on a free port; killed on drop.
pub struct Served {
    child: Child,
    addr: SocketAddr,
}

impl Served {
    /// Starts `herd serve --port 0 ARGS` and waits until it listens.
    pub fn start(args: &[&str]) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_herd"))
            .args(["--threads", "2", "serve", "--port", "0"])
            .args(args)
            .env_remove("HERD_MODEL")
            .env_remove("HERD_API_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start herd serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("herd serve exited before listening")
                .unwrap();
            if let Some(at) = line.find("listening on http://") {
                break line[at + "listening on http://".len()..]
                    .trim()
                    .parse()
                    .unwrap();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Served { child, addr }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its OpenAI base URL.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which requests the proxy fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Faults {
    /// None: a stable address in front of servers that come and go.
    None,
    /// Every third request: 429 (`Retry-After: 0`) and 500 in turn.
    EveryThird,
}

/// A one-request-per-connection HTTP proxy with fault injection.
pub struct FaultyProxy {
    addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    faults: Arc<AtomicUsize>,
}

impl FaultyProxy {
    /// Listens on a free port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr, faults: Faults) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = Arc::new(Mutex::new(upstream));
        let injected = Arc::new(AtomicUsize::new(0));
        let (up, inj) = (upstream.clone(), injected.clone());
        std::thread::spawn(move || {
            let count = Arc::new(AtomicUsize::new(0));
            for stream in listener.incoming().flatten() {
                let (up, inj, count) = (up.clone(), inj.clone(), count.clone());
                std::thread::spawn(move || {
                    let k = count.fetch_add(1, Ordering::Relaxed) + 1;
                    let fail = faults == Faults::EveryThird && k % 3 == 0;
                    if fail {
                        inj.fetch_add(1, Ordering::Relaxed);
                    }
                    let target = *up.lock().unwrap();
                    let _ = serve_one(stream, target, fail.then_some(k));
                });
            }
        });
        FaultyProxy {
            addr,
            upstream,
            faults: injected,
        }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Sends later requests to another server.
    pub fn set_upstream(&self, addr: SocketAddr) {
        *self.upstream.lock().unwrap() = addr;
    }

    /// Requests failed on purpose so far.
    pub fn faults(&self) -> usize {
        self.faults.load(Ordering::Relaxed)
    }
}

/// Reads one request; answers it with a fault or the upstream's answer.
fn serve_one(
    mut client: TcpStream,
    upstream: SocketAddr,
    fault: Option<usize>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if !lower.starts_with("connection:") {
            head.push(line);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    if let Some(k) = fault {
        let status = if (k / 3) % 2 == 1 {
            "429 Too Many Requests\r\nRetry-After: 0"
        } else {
            "500 Internal Server Error"
        };
        let text = "{\"error\": {\"message\": \"injected fault\"}}";
        return client.write_all(
            format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            )
            .as_bytes(),
        );
    }
    // A dead upstream: drop the connection, as a network would.
    let mut server = TcpStream::connect(upstream)?;
    let mut request = head.concat();
    request.push_str("Connection: close\r\n\r\n");
    server.write_all(request.as_bytes())?;
    server.write_all(&body)?;
    let mut response = Vec::new();
    server.read_to_end(&mut response)?;
    client.write_all(&response)
}
