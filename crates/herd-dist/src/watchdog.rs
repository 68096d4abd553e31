//! A failed rank must not hang the others forever. `mpirun` ends the job
//! when a rank dies, but a rank that stops answering (a hung process, a
//! network partition) leaves its peers blocked inside a collective with no
//! error to report. The [`Watchdog`] turns "no progress for `timeout`" into
//! a clear message and a non-zero exit of this rank, which `mpirun` then
//! propagates to the whole job.

use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What the watchdog is waiting for, and until when.
#[derive(Default)]
struct Armed {
    deadline: Option<(Instant, String)>,
}

/// A background thread that exits the process when an armed step overruns.
pub struct Watchdog {
    state: Arc<(Mutex<Armed>, Condvar)>,
    timeout: Duration,
}

/// Exit code of a rank stopped by its watchdog.
pub const WATCHDOG_EXIT_CODE: i32 = 3;

impl Watchdog {
    /// Starts the thread; `rank` names this process in the message.
    pub fn start(timeout: Duration, rank: usize) -> Watchdog {
        let state = Arc::new((Mutex::new(Armed::default()), Condvar::new()));
        let watched = state.clone();
        thread::spawn(move || watch(&watched, timeout, rank));
        Watchdog { state, timeout }
    }

    /// The configured limit.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Arms the watchdog for one step (`what` is named if it expires);
    /// dropping the guard disarms it.
    pub fn arm(&self, what: &str) -> ArmedGuard<'_> {
        let (lock, cvar) = &*self.state;
        if let Ok(mut armed) = lock.lock() {
            armed.deadline = Some((Instant::now() + self.timeout, what.to_string()));
            cvar.notify_one();
        }
        ArmedGuard { dog: self }
    }
}

/// Keeps the watchdog armed while alive.
pub struct ArmedGuard<'a> {
    dog: &'a Watchdog,
}

impl Drop for ArmedGuard<'_> {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.dog.state;
        if let Ok(mut armed) = lock.lock() {
            armed.deadline = None;
            cvar.notify_one();
        }
    }
}

fn watch(state: &(Mutex<Armed>, Condvar), timeout: Duration, rank: usize) {
    let (lock, cvar) = state;
    let Ok(mut armed) = lock.lock() else { return };
    loop {
        let wait = match &armed.deadline {
            None => Duration::from_secs(3600),
            Some((deadline, what)) => {
                let now = Instant::now();
                if now >= *deadline {
                    eprintln!(
                        "error: rank {rank}: no progress for {} s while {what}; another rank \
                         has probably failed or hung (see --comm-timeout)",
                        timeout.as_secs_f64()
                    );
                    std::process::exit(WATCHDOG_EXIT_CODE);
                }
                *deadline - now
            }
        };
        armed = match cvar.wait_timeout(armed, wait) {
            Ok((guard, _)) => guard,
            Err(_) => return,
        };
    }
}
