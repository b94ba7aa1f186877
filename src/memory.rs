//! Resident memory and CPU time of an instance: the sums over every process in its
//! process group (the instance and what it started), read from /proc in one pass; and the
//! CPU share over an interval (`CpuMeter`, pure), for `hotrun status`.

use std::collections::HashMap;
use std::fs;
use std::time::{Duration, Instant};

/// The page size, for /proc's RSS in pages.
fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |n| n as u64)
}

/// Clock ticks per second, for /proc's CPU times.
fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100, |n| n as u64)
}

/// One process's line of /proc/PID/stat: its group, resident pages, CPU ticks.
#[derive(Debug, PartialEq, Eq)]
struct StatLine {
    pgrp: i32,
    rss_pages: u64,
    cpu_ticks: u64,
}

/// Reads a /proc/PID/stat line: the fields after the `)` that ends `comm`.
fn stat_line(stat: &str) -> Option<StatLine> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): pgrp is field 5, utime 14, stime 15, rss 24.
    let num = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(StatLine {
        pgrp: fields.get(2)?.parse().ok()?,
        rss_pages: num(21)?,
        cpu_ticks: num(11)? + num(12)?,
    })
}

/// The process group of a /proc/PID/stat line.
pub(crate) fn pgrp_of(stat: &str) -> Option<i32> {
    stat_line(stat).map(|l| l.pgrp)
}

/// What the processes of one group use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub rss_bytes: u64,
    /// CPU time used so far (user + system) by the group's live processes.
    pub cpu: Duration,
}

/// Bytes resident in the process groups `pgids`, one figure per group, in one pass over /proc.
pub fn group_rss(pgids: &[i32]) -> Vec<u64> {
    group_usage(pgids)
        .into_iter()
        .map(|u| u.rss_bytes)
        .collect()
}

/// Memory and CPU time of the process groups `pgids`, one per group, in one pass over /proc.
pub fn group_usage(pgids: &[i32]) -> Vec<Usage> {
    let mut pages = vec![0u64; pgids.len()];
    let mut ticks = vec![0u64; pgids.len()];
    if pgids.is_empty() {
        return Vec::new();
    }
    let Ok(entries) = fs::read_dir("/proc") else {
        return vec![Usage::default(); pgids.len()];
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.as_encoded_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(line) = stat_line(&stat) {
            if let Some(i) = pgids.iter().position(|&g| g == line.pgrp) {
                pages[i] += line.rss_pages;
                ticks[i] += line.cpu_ticks;
            }
        }
    }
    let (size, hz) = (page_size(), ticks_per_second());
    pages
        .into_iter()
        .zip(ticks)
        .map(|(p, t)| Usage {
            rss_bytes: p * size,
            cpu: Duration::from_millis(t * 1000 / hz),
        })
        .collect()
}

/// Samples shorter than this are measured against the older one they follow.
const MIN_INTERVAL: Duration = Duration::from_millis(200);

/// The CPU share of each group over the last interval between two readings (as `pm2 ls`,
/// whose figure also covers the time since its previous look); the first reading of a
/// group covers its lifetime.
#[derive(Debug, Default)]
pub struct CpuMeter {
    /// The last sample of each group: when, and the CPU time then.
    samples: HashMap<i32, (Instant, Duration)>,
}

impl CpuMeter {
    /// The share (100 = one core) of group `pgid`, which started at `started` and has used
    /// `cpu` by `now`.
    pub fn percent(&mut self, pgid: i32, started: Instant, cpu: Duration, now: Instant) -> f64 {
        let (since, before) = self
            .samples
            .get(&pgid)
            .copied()
            .unwrap_or((started, Duration::ZERO));
        let elapsed = now.saturating_duration_since(since);
        if elapsed >= MIN_INTERVAL || !self.samples.contains_key(&pgid) {
            self.samples.insert(pgid, (now, cpu));
        }
        if elapsed.is_zero() {
            return 0.0;
        }
        let used = cpu.saturating_sub(before);
        (used.as_secs_f64() / elapsed.as_secs_f64() * 1000.0).round() / 10.0
    }

    /// Forgets the groups not in `live`.
    pub fn retain(&mut self, live: &[i32]) {
        self.samples.retain(|g, _| live.contains(g));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pgrp_rss_and_cpu_even_with_spaces_in_comm() {
        let stat = "123 (my (odd) app) S 1 123 123 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 555 1000000 2500 18446744073709551615";
        let want = StatLine {
            pgrp: 123,
            rss_pages: 2500,
            cpu_ticks: 3,
        };
        assert_eq!(stat_line(stat), Some(want));
    }

    #[test]
    fn cpu_share_over_the_last_interval() {
        let t0 = Instant::now();
        let ms = |n: u64| Duration::from_millis(n);
        let mut m = CpuMeter::default();
        // (pgid, reading at ms, cpu used by then in ms, share)
        let table = [
            (1, 1000, 50, 5.0),     // first look: over its lifetime (node's start-up)
            (1, 2000, 1050, 100.0), // a busy second: one core
            (1, 2100, 1060, 10.0),  // 100 ms later: against the older sample, kept
            (1, 3000, 1060, 1.0),   // then idle
            (2, 500, 250, 50.0),
            (2, 1500, 250, 0.0),
        ];
        for (pgid, at, cpu, want) in table {
            let got = m.percent(pgid, t0, ms(cpu), t0 + ms(at));
            assert_eq!(got, want, "group {pgid} at {at} ms");
        }
        m.retain(&[2]);
        assert!(!m.samples.contains_key(&1));
    }

    #[test]
    fn this_process_group_has_memory() {
        let me = nix::unistd::getpgrp().as_raw();
        assert!(group_rss(&[me])[0] > 1024 * 1024);
    }
}
