//! Server process figures from `/proc`: CPU time (utime + stime) and peak resident memory.

use anyhow::{anyhow, Context, Result};

/// Clock ticks per second assumed when `getconf CLK_TCK` cannot be run (Linux's usual value).
const DEFAULT_TICKS_PER_SECOND: u64 = 100;

/// User plus system CPU time of process `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_cpu_ticks(&text).with_context(|| format!("parsing {path}"))
}

/// Parses utime + stime (fields 14 and 15) out of a `/proc/<pid>/stat` line. The command
/// name (field 2) is in parentheses and may contain spaces, so fields are counted after the
/// last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Result<u64> {
    let after_name = stat.rfind(')').map(|position| &stat[position + 1..]).ok_or_else(|| anyhow!("no ')'"))?;
    // After the name, field 3 (state) is index 0, so field n is index n - 3.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize| -> Result<u64> {
        let text = fields.get(number - 3).ok_or_else(|| anyhow!("field {number} missing"))?;
        text.parse::<u64>().with_context(|| format!("field {number} is {text:?}"))
    };
    Ok(field(14)? + field(15)?)
}

/// Peak resident set size (`VmHWM`) of process `pid`, in bytes.
pub fn peak_resident_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status_kilobytes(&text, "VmHWM").map(|kilobytes| kilobytes * 1024).with_context(|| format!("parsing {path}"))
}

/// The value of a `Name:   123 kB` line of `/proc/<pid>/status`, in kilobytes.
pub fn parse_status_kilobytes(status: &str, name: &str) -> Result<u64> {
    let line =
        status.lines().find(|line| line.split(':').next() == Some(name)).ok_or_else(|| anyhow!("no {name} line"))?;
    let number = line.split_whitespace().nth(1).ok_or_else(|| anyhow!("{name} has no value"))?;
    number.parse::<u64>().with_context(|| format!("{name} value {number:?}"))
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, else 100).
pub fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse::<u64>().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(DEFAULT_TICKS_PER_SECOND)
}

/// Whether this process runs with effective user id 0 (from `/proc/self/status`).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("Uid:"))?.to_string();
            line.split_whitespace().nth(2).map(|effective| effective == "0")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_counted_after_the_command_name() {
        let stat = "1234 (etcd server) S 1 1234 1234 0 -1 4194560 2000 0 0 0 150 25 0 0 20 0 12 0 100 \
                    1000000 5000 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat).unwrap(), 175);
        assert!(parse_cpu_ticks("1234 (x) S 1").is_err());
    }

    #[test]
    fn own_process_has_cpu_time_and_peak_memory() {
        let pid = std::process::id();
        assert!(cpu_ticks(pid).is_ok());
        assert!(peak_resident_bytes(pid).unwrap() > 0);
    }

    #[test]
    fn status_values_are_read_in_kilobytes() {
        let status = "Name:\tetcd\nVmPeak:\t  900 kB\nVmHWM:\t   51200 kB\nVmRSS:\t 40000 kB\n";
        assert_eq!(parse_status_kilobytes(status, "VmHWM").unwrap(), 51_200);
        assert!(parse_status_kilobytes(status, "VmSwap").is_err());
    }
}
