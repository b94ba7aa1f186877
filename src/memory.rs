//! Resident memory of an instance: the sum of the RSS of every process in its process
//! group (the instance and what it started), read from /proc.

use std::fs;

/// The page size, for /proc's RSS in pages.
fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |n| n as u64)
}

/// (pgrp, rss pages) from a /proc/PID/stat line: fields after the `)` that ends `comm`.
fn pgrp_and_rss(stat: &str) -> Option<(i32, u64)> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): pgrp is field 5, rss field 24.
    let pgrp = fields.get(2)?.parse().ok()?;
    let rss = fields.get(21)?.parse().ok()?;
    Some((pgrp, rss))
}

/// Bytes resident in the process groups `pgids`, one figure per group, in one pass over /proc.
pub fn group_rss(pgids: &[i32]) -> Vec<u64> {
    let mut pages = vec![0u64; pgids.len()];
    if pgids.is_empty() {
        return pages;
    }
    let Ok(entries) = fs::read_dir("/proc") else {
        return pages;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.as_encoded_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((pgrp, rss)) = pgrp_and_rss(&stat) {
            if let Some(i) = pgids.iter().position(|&g| g == pgrp) {
                pages[i] += rss;
            }
        }
    }
    let size = page_size();
    pages.into_iter().map(|p| p * size).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pgrp_and_rss_even_with_spaces_in_comm() {
        let stat = "123 (my (odd) app) S 1 123 123 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 555 1000000 2500 18446744073709551615";
        assert_eq!(pgrp_and_rss(stat), Some((123, 2500)));
    }

    #[test]
    fn this_process_group_has_memory() {
        let me = nix::unistd::getpgrp().as_raw();
        assert!(group_rss(&[me])[0] > 1024 * 1024);
    }
}
