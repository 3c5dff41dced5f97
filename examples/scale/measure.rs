//! Processes: CPU, memory, and the idle moments measurement windows
//! start and end at.

use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::support::wait::wait_until;

pub(crate) fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100)
}

/// utime + stime of a whole process (all threads), in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    field(14).unwrap_or(0) + field(15).unwrap_or(0)
}

/// (VmRSS, VmHWM) in bytes.
pub(crate) fn memory(pid: u32) -> (u64, u64) {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return (0, 0);
    };
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

pub(crate) fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut fields = text.split_whitespace().map(|f| f.parse().unwrap_or(0.0));
    [
        fields.next().unwrap_or(0.0),
        fields.next().unwrap_or(0.0),
        fields.next().unwrap_or(0.0),
    ]
}

/// Samples the CPU and RSS of some processes every 100 ms.
pub(crate) struct Monitor {
    pub(crate) pids: Vec<u32>,
    pub(crate) ticks_per_second: f64,
    pub(crate) samples: Arc<Mutex<Vec<ProcSample>>>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
pub(crate) struct ProcSample {
    pub(crate) at: Instant,
    pub(crate) cpu: Vec<u64>,
    pub(crate) rss: Vec<u64>,
}

impl Monitor {
    pub(crate) fn start(pids: Vec<u32>) -> Monitor {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let samples = samples.clone();
            let pids = pids.clone();
            tokio::spawn(async move {
                loop {
                    let sample = ProcSample {
                        at: Instant::now(),
                        cpu: pids.iter().map(|pid| cpu_ticks(*pid)).collect(),
                        rss: pids.iter().map(|pid| memory(*pid).0).collect(),
                    };
                    lock(&samples).push(sample);
                    // The sampling period, not a wait.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        Monitor {
            pids,
            ticks_per_second: clock_ticks() as f64,
            samples,
            task,
        }
    }

    pub(crate) fn cpu_seconds(&self) -> Vec<f64> {
        self.pids
            .iter()
            .map(|pid| cpu_ticks(*pid) as f64 / self.ticks_per_second)
            .collect()
    }

    /// Highest RSS of each process between two instants.
    pub(crate) fn max_rss(&self, from: Instant, to: Instant) -> Vec<u64> {
        let samples = lock(&self.samples);
        (0..self.pids.len())
            .map(|p| {
                samples
                    .iter()
                    .filter(|s| s.at >= from && s.at <= to)
                    .map(|s| s.rss[p])
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Whether every process used at most ~3% CPU (and at least one clock
    /// tick is allowed) over the last `window`.
    pub(crate) fn quiet(&self, window: Duration) -> bool {
        let samples = lock(&self.samples);
        let Some(last) = samples.last() else {
            return false;
        };
        let Some(first) = samples
            .iter()
            .rev()
            .find(|s| last.at.duration_since(s.at) >= window)
        else {
            return false;
        };
        let allowed = ((window.as_secs_f64() * self.ticks_per_second * 0.03) as u64).max(1);
        first
            .cpu
            .iter()
            .zip(&last.cpu)
            .all(|(a, b)| b.saturating_sub(*a) <= allowed)
    }

    /// Waits for a quiet moment, at most `timeout`; false if none came.
    pub(crate) async fn wait_quiet(&self, window: Duration, timeout: Duration) -> bool {
        wait_until(timeout, || self.quiet(window)).await
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
