//! Parsers for flag values written as etcd (Go) writes them: booleans (`strconv.ParseBool`),
//! durations (`time.ParseDuration`: `5s`, `100ms`, `2h45m`) and plain milliseconds. Each
//! error names the flag.

use std::time::Duration;

/// Go's `strconv.ParseBool`: `1 t T TRUE true True` and `0 f F FALSE false False`.
pub fn parse_go_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("'{text}' is not a boolean (true or false)")),
    }
}

/// Nanoseconds in one of Go's duration units.
fn unit_nanoseconds(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Go's `time.ParseDuration` for non-negative durations: a sequence of decimal numbers,
/// each with an optional fraction and a unit (`ns us µs ms s m h`), e.g. `1h30m`,
/// `1.5s`, `300ms`; a bare `0` is zero.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("'{text}' is not a duration (a number with a unit: 500ms, 5s, 10m, 2h)");
    let body = text.strip_prefix('+').unwrap_or(text);
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.starts_with('-') {
        return Err(format!("'{text}' is negative; a duration here must be 0 or more"));
    }
    if body.is_empty() {
        return Err(invalid());
    }
    let mut total_nanoseconds: u128 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let number_length = rest.find(|character: char| !(character.is_ascii_digit() || character == '.'));
        let number_length =
            number_length.ok_or_else(|| format!("'{text}' has a number without a unit (ms, s, m, h)"))?;
        let (number, after) = rest.split_at(number_length);
        let unit_length = after.find(|character: char| character.is_ascii_digit() || character == '.');
        let (unit, next) = after.split_at(unit_length.unwrap_or(after.len()));
        let scale = unit_nanoseconds(unit).ok_or_else(invalid)?;
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(invalid());
        }
        let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| invalid())? };
        let mut part = whole.checked_mul(scale).ok_or_else(invalid)?;
        let mut fraction_scale = scale;
        for digit in fraction.bytes() {
            fraction_scale /= 10;
            part += u128::from(digit - b'0') * fraction_scale;
        }
        total_nanoseconds = total_nanoseconds.checked_add(part).ok_or_else(invalid)?;
        rest = next;
    }
    let seconds = u64::try_from(total_nanoseconds / 1_000_000_000).map_err(|_| invalid())?;
    Ok(Duration::new(seconds, (total_nanoseconds % 1_000_000_000) as u32))
}

/// Writes a duration as Go prints one (`5s`, `1m30s`, `100ms`, `2h0m0s`).
pub fn format_go_duration(duration: Duration) -> String {
    let nanoseconds = duration.as_nanos();
    if nanoseconds == 0 {
        return "0s".into();
    }
    if nanoseconds < 1_000_000_000 {
        let (value, unit) = match nanoseconds {
            n if n < 1_000 => (n as f64, "ns"),
            n if n < 1_000_000 => (n as f64 / 1e3, "\u{b5}s"),
            n => (n as f64 / 1e6, "ms"),
        };
        return format!("{value}{unit}");
    }
    let seconds = duration.as_secs_f64() % 60.0;
    let minutes = duration.as_secs() / 60 % 60;
    let hours = duration.as_secs() / 3600;
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m{seconds}s"),
        _ => format!("{hours}h{minutes}m{seconds}s"),
    }
}

/// A value parser for a duration flag whose errors name `--flag`.
pub fn duration_flag(flag: &'static str) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |text| parse_go_duration(text).map_err(|reason| format!("--{flag}: {reason}"))
}

/// A value parser for a boolean flag (`--flag`, `--flag=true|false`) whose errors name `--flag`.
pub fn bool_flag(flag: &'static str) -> impl Fn(&str) -> Result<bool, String> + Clone + Send + Sync + 'static {
    move |text| parse_go_bool(text).map_err(|reason| format!("--{flag}: {reason}"))
}

/// A value parser for a flag in whole milliseconds (etcd's `--heartbeat-interval` and
/// `--election-timeout`): `100ms` is refused with a message saying it wants milliseconds.
pub fn milliseconds_flag(flag: &'static str) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync + 'static {
    move |text| {
        text.trim().parse::<u64>().map_err(|_| {
            let hint = parse_go_duration(text)
                .map(|duration| format!(" (write {} for {text})", duration.as_millis()))
                .unwrap_or_default();
            format!("--{flag}: '{text}' is not a number of milliseconds{hint}")
        })
    }
}

/// A value parser for a path flag: any text, the empty text included (etcd's default of
/// `--wal-dir` and the TLS file flags is `''`, which means "not set").
pub fn path_flag(text: &str) -> Result<std::path::PathBuf, String> {
    Ok(std::path::PathBuf::from(text))
}

/// A value parser for a flag that takes one of `choices`; errors name `--flag`.
pub fn choice_flag(
    flag: &'static str,
    choices: &'static [&'static str],
) -> impl Fn(&str) -> Result<String, String> + Clone + Send + Sync + 'static {
    move |text| {
        if choices.contains(&text) {
            Ok(text.to_string())
        } else {
            Err(format!("--{flag}: '{text}' is not one of {}", choices.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_go_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_go_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_go_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_go_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_go_duration("1h30m15s").unwrap(), Duration::from_secs(5415));
        assert_eq!(parse_go_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_go_duration(".5ms").unwrap(), Duration::from_micros(500));
        assert_eq!(parse_go_duration("3us").unwrap(), Duration::from_micros(3));
        assert_eq!(parse_go_duration("3\u{b5}s").unwrap(), Duration::from_micros(3));
        assert_eq!(parse_go_duration("7ns").unwrap(), Duration::from_nanos(7));
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_go_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_go_duration("+1s").unwrap(), Duration::from_secs(1));
    }

    #[test]
    fn refuses_bad_durations() {
        for bad in ["", "5", "s", "5x", "1.2.3s", "-1s", "5 s", "1h-1m", "99999999999999999999999h", "."] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} must be refused");
        }
        let message = duration_flag("grpc-keepalive-min-time")("5x").unwrap_err();
        assert!(message.starts_with("--grpc-keepalive-min-time: '5x'"), "{message}");
    }

    #[test]
    fn formats_as_go() {
        assert_eq!(format_go_duration(Duration::from_secs(5)), "5s");
        assert_eq!(format_go_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(format_go_duration(Duration::from_secs(7200)), "2h0m0s");
        assert_eq!(format_go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
        for text in ["5s", "100ms", "2h0m0s", "1m30s", "1.5s"] {
            assert_eq!(format_go_duration(parse_go_duration(text).unwrap()), text);
        }
    }

    #[test]
    fn parses_go_bools() {
        for text in ["1", "t", "T", "true", "TRUE", "True"] {
            assert!(parse_go_bool(text).unwrap());
        }
        for text in ["0", "f", "F", "false", "FALSE", "False"] {
            assert!(!parse_go_bool(text).unwrap());
        }
        assert!(parse_go_bool("yes").is_err());
        assert!(bool_flag("pre-vote")("on").unwrap_err().contains("--pre-vote"));
    }

    #[test]
    fn milliseconds_refuse_units() {
        assert_eq!(milliseconds_flag("heartbeat-interval")("100").unwrap(), 100);
        let message = milliseconds_flag("heartbeat-interval")("100ms").unwrap_err();
        assert_eq!(message, "--heartbeat-interval: '100ms' is not a number of milliseconds (write 100 for 100ms)");
        let message = milliseconds_flag("election-timeout")("1s").unwrap_err();
        assert!(message.contains("not a number of milliseconds (write 1000 for 1s)"), "{message}");
        assert!(milliseconds_flag("election-timeout")("abc").is_err());
    }

    #[test]
    fn choices_name_the_flag() {
        let parser = choice_flag("logger", &["zap", "capnslog"]);
        assert_eq!(parser("zap").unwrap(), "zap");
        assert_eq!(parser("glog").unwrap_err(), "--logger: 'glog' is not one of zap, capnslog");
    }
}
