//! The server's CPU time and memory, read from /proc. The server shares the
//! machine with PostgreSQL and this load generator, so its own CPU seconds
//! are the number that survives best (see BENCHMARKS.md).

/// The server process named by `--server-pid`, if any.
#[derive(Clone, Copy)]
pub struct Server {
    pid: Option<u32>,
}

#[derive(Clone, Copy)]
pub struct Usage {
    /// User plus system time.
    pub cpu_s: f64,
    pub rss_kib: u64,
}

impl Server {
    pub fn new(pid: Option<u32>) -> Self {
        Self { pid }
    }

    /// `None` without a pid, or once the process is gone: a scenario still
    /// reports what it measured itself.
    pub fn usage(self) -> Option<Usage> {
        let pid = self.pid?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may contain spaces; the fields after it do not.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        // USER_HZ is 100 on every Linux this runs on.
        Some(Usage {
            cpu_s: ticks / 100.0,
            rss_kib,
        })
    }

    pub fn rss_kib(self) -> Option<u64> {
        self.usage().map(|u| u.rss_kib)
    }
}
