//! Process metrics read from `/proc/self` each time `/metrics` is rendered: resident
//! memory, CPU time, open and maximum file descriptors, threads and start time.
//!
//! They are written straight into the exposition rather than through the `metrics`
//! registry, because CPU time is a fractional counter, which the registry cannot hold. On a
//! system without `/proc` nothing is written.

use std::fmt::Write;

use crate::metrics as m;

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`): 100 on every Linux
/// architecture's user-space ABI.
const USER_HZ: f64 = 100.0;

/// One reading of the process.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProcessSample {
    pub resident_memory_bytes: Option<f64>,
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub threads: Option<f64>,
    pub start_time_seconds: Option<f64>,
}

impl ProcessSample {
    /// Reads `/proc/self`; fields that cannot be read stay `None`.
    pub fn read() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let stat = read("/proc/self/stat").and_then(|s| parse_stat(&s));
        let btime = read("/proc/stat").and_then(|s| parse_btime(&s));
        ProcessSample {
            resident_memory_bytes: read("/proc/self/status").and_then(|s| parse_vm_rss(&s)),
            cpu_seconds: stat.map(|s| s.cpu_ticks / USER_HZ),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as f64),
            max_fds: read("/proc/self/limits").and_then(|s| parse_max_fds(&s)),
            threads: stat.map(|s| s.threads),
            start_time_seconds: stat.zip(btime).map(|(s, b)| b + s.start_ticks / USER_HZ),
        }
    }

    /// Appends the sample in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let metrics: [(&str, &str, &str, Option<f64>); 6] = [
            (
                m::PROCESS_RESIDENT_MEMORY,
                "gauge",
                "Resident memory of the process in bytes",
                self.resident_memory_bytes,
            ),
            (
                m::PROCESS_CPU,
                "counter",
                "User and system CPU time of the process in seconds",
                self.cpu_seconds,
            ),
            (
                m::PROCESS_OPEN_FDS,
                "gauge",
                "Open file descriptors of the process",
                self.open_fds,
            ),
            (
                m::PROCESS_MAX_FDS,
                "gauge",
                "Limit on open file descriptors of the process",
                self.max_fds,
            ),
            (
                m::PROCESS_THREADS,
                "gauge",
                "Threads of the process",
                self.threads,
            ),
            (
                m::PROCESS_START_TIME,
                "gauge",
                "Start time of the process as a Unix timestamp in seconds",
                self.start_time_seconds,
            ),
        ];
        for (name, kind, help, value) in metrics {
            if let Some(v) = value {
                // writing to a String cannot fail
                let _ = write!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n\n"
                );
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    cpu_ticks: f64,
    threads: f64,
    start_ticks: f64,
}

/// Fields of `/proc/<pid>/stat` after the command name (which may hold spaces and
/// parentheses, so the split is at the last `)`).
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state): field n is f[n - 3]
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    Some(Stat {
        cpu_ticks: num(14)? + num(15)?,
        threads: num(20)?,
        start_ticks: num(22)?,
    })
}

fn parse_vm_rss(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

fn parse_max_fds(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn parse_btime(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "4242 (price stream) (x) S 1 4242 4242 0 -1 4194560 2405 0 0 0 \
                    150 25 0 0 20 0 7 0 123456 1000000 5000 18446744073709551615";
        assert_eq!(
            parse_stat(stat),
            Some(Stat {
                cpu_ticks: 175.0,
                threads: 7.0,
                start_ticks: 123456.0
            })
        );
        assert_eq!(
            parse_vm_rss("Name:\tx\nVmRSS:\t   2048 kB\nVmData: 1 kB\n"),
            Some(2_097_152.0)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024.0));
        assert_eq!(parse_btime("cpu 1 2\nbtime 1700000000\n"), Some(1.7e9));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_and_renders_this_process() {
        let s = ProcessSample::read();
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        assert!(s.resident_memory_bytes.unwrap() > 0.0);
        assert!(s.open_fds.unwrap() >= 1.0);
        assert!(s.threads.unwrap() >= 1.0);
        assert!(s.start_time_seconds.unwrap() > 1.0e9);
        let mut out = String::new();
        s.render(&mut out);
        assert!(out.contains("# TYPE pricestream_process_cpu_seconds_total counter\n"));
        assert!(out.contains("\npricestream_process_resident_memory_bytes "));
    }
}
