//! The process's own figures, read from `/proc/self` at scrape time, under
//! the names Prometheus's client libraries use.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// Linux reports CPU time in clock ticks of 1/100 s (USER_HZ) on every
/// architecture dts builds for.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Default, PartialEq)]
pub struct ProcessFigures {
    pub resident_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub threads: Option<u64>,
}

/// Parses `/proc/self/status` and `/proc/self/stat` text.
pub fn parse(status: &str, stat: &str) -> ProcessFigures {
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    };
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let cpu_seconds = stat.rfind(')').and_then(|i| {
        let f: Vec<&str> = stat[i + 1..].split_whitespace().collect();
        // After ')': state is field 3, utime 14, stime 15 (1-based over the whole line).
        let utime: u64 = f.get(11)?.parse().ok()?;
        let stime: u64 = f.get(12)?.parse().ok()?;
        Some((utime + stime) as f64 / TICKS_PER_SECOND)
    });
    ProcessFigures {
        resident_bytes: field("VmRSS:").map(|kb: u64| kb * 1024),
        cpu_seconds,
        open_fds: None,
        threads: field("Threads:"),
    }
}

fn read() -> ProcessFigures {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let mut figures = parse(&status, &stat);
    figures.open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
    figures
}

#[derive(Debug)]
pub(crate) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let f = read();
        if let Some(cpu) = f.cpu_seconds {
            let m = encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time of the process",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(cpu).encode(m)?;
        }
        for (name, help, value) in [
            ("process_resident_memory_bytes", "Resident memory of the process", f.resident_bytes),
            ("process_open_fds", "Open file descriptors", f.open_fds),
            ("process_threads", "Threads of the process", f.threads),
        ] {
            if let Some(v) = value {
                let m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                ConstGauge::new(v as i64).encode(m)?;
            }
        }
        Ok(())
    }
}
