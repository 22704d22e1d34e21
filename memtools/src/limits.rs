//! The memory a process could grow into when the session does not say: this machine's.
//!
//! The recorder stores the machine's memory with each session and each process's cgroup limit
//! with the process; [`crate::detect`] prefers those facts and falls back to this machine.

/// The machine's memory in bytes (MemTotal of /proc/meminfo).
pub fn machine_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo_total(&meminfo)
}

/// MemTotal in bytes from the text of /proc/meminfo.
pub fn parse_meminfo_total(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total_is_in_bytes() {
        let text = "MemTotal:       24630272 kB\nMemFree:        23000000 kB\n";
        assert_eq!(parse_meminfo_total(text), Some(24_630_272 * 1024));
        assert_eq!(parse_meminfo_total("nothing"), None);
    }

    #[test]
    fn this_machine_has_memory() {
        assert!(machine_memory().is_some_and(|m| m > 0));
    }
}
