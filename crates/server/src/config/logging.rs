//! `--logger`, `--log-level`, `--log-outputs` and the deprecated `--debug`, read as etcd 3.4
//! reads them. Both loggers (`zap`, `capnslog`) log through `tracing`: `zap` as JSON
//! lines (as etcd's zap logger writes), `capnslog` as text.

use std::path::PathBuf;

use super::ServeArgs;

/// Where log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogOutput {
    /// Standard error (`default` and `stderr`).
    Stderr,
    /// Standard output.
    Stdout,
    /// A file, created if missing and appended to.
    File(PathBuf),
}

/// The logging settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    /// JSON lines (`--logger zap`) instead of text (`capnslog`).
    pub json: bool,
    /// The `tracing` level directive (`debug`, `info`, `warn`, `error`).
    pub level: &'static str,
    /// Targets, at least one, without repeats.
    pub outputs: Vec<LogOutput>,
}

impl LogSettings {
    /// Reads the logging flags; errors name the flag.
    pub fn from_args(args: &ServeArgs) -> Result<LogSettings, String> {
        let json = match args.logger.as_str() {
            "zap" => true,
            "capnslog" => false,
            other => return Err(format!("--logger: '{other}' is not one of zap, capnslog")),
        };
        let level = match args.log_level.as_str() {
            _ if args.debug => "debug",
            "debug" => "debug",
            "info" => "info",
            "warn" => "warn",
            // tracing has no levels above error: etcd's panic and fatal log errors only.
            "error" | "panic" | "fatal" => "error",
            other => {
                return Err(format!("--log-level: '{other}' is not one of debug, info, warn, error, panic, fatal"))
            }
        };
        let mut outputs = Vec::new();
        for target in args.log_outputs.split(',').map(str::trim) {
            let output = match target {
                "" => return Err(format!("--log-outputs: '{}' has an empty target", args.log_outputs)),
                "default" | "stderr" => LogOutput::Stderr,
                "stdout" => LogOutput::Stdout,
                path => LogOutput::File(PathBuf::from(path)),
            };
            if !outputs.contains(&output) {
                outputs.push(output);
            }
        }
        Ok(LogSettings { json, level, outputs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sources::load;

    fn settings(flags: &[&str]) -> Result<LogSettings, String> {
        LogSettings::from_args(&load(flags.iter().map(Into::into).collect(), vec![])?.args)
    }

    #[test]
    fn reads_logging_flags() {
        let default = settings(&[]).unwrap();
        assert_eq!(default, LogSettings { json: false, level: "info", outputs: vec![LogOutput::Stderr] });
        let custom =
            settings(&["--logger=zap", "--log-level=fatal", "--log-outputs=stdout,/tmp/a.log,stderr"]).unwrap();
        assert!(custom.json);
        assert_eq!(custom.level, "error");
        assert_eq!(custom.outputs, vec![LogOutput::Stdout, LogOutput::File("/tmp/a.log".into()), LogOutput::Stderr]);
        assert_eq!(settings(&["--debug", "--log-level=warn"]).unwrap().level, "debug");
        assert_eq!(settings(&["--log-outputs=default,stderr"]).unwrap().outputs, vec![LogOutput::Stderr]);
        assert!(settings(&["--logger=glog"]).unwrap_err().starts_with("--logger: 'glog'"));
        assert!(settings(&["--log-level=trace"]).unwrap_err().starts_with("--log-level: 'trace'"));
        assert!(settings(&["--log-outputs=stderr,"]).unwrap_err().starts_with("--log-outputs"));
    }
}
