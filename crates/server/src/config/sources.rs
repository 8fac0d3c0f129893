//! Where `raftkv serve`'s settings come from, as etcd 3.4 reads them: the command line,
//! `ETCD_*` environment variables (a flag given both ways is refused), or `--config-file`
//! (etcd's YAML; then the command line and the environment are ignored).
//!
//! Every source is turned into `--flag=value` arguments and parsed by the same clap
//! definition, so a value means the same whichever way it is given; errors name the
//! variable or the key.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Args, FromArgMatches};

use super::ServeArgs;

/// Settings read from every source, with what to log once logging is set up.
#[derive(Debug)]
pub struct LoadedArgs {
    /// The flags.
    pub args: ServeArgs,
    /// Informational lines (which sources were used).
    pub notes: Vec<String>,
    /// Warnings (unrecognized `ETCD_*` variables).
    pub warnings: Vec<String>,
}

impl LoadedArgs {
    /// Logs the notes and warnings (call after the logger is set up).
    pub fn log(&self) {
        for note in &self.notes {
            tracing::info!("{note}");
        }
        for warning in &self.warnings {
            tracing::warn!("{warning}");
        }
    }
}

/// The name `raftkv serve` parses under (shown in clap's errors).
const COMMAND_NAME: &str = "raftkv serve";

/// Flags that are not read from the environment or the config file.
const COMMAND_LINE_ONLY: &[&str] = &["help"];

/// The clap command of `raftkv serve`.
pub fn serve_command() -> clap::Command {
    ServeArgs::augment_args(clap::Command::new(COMMAND_NAME).no_binary_name(true))
}

/// `ETCD_` + the flag's name in upper case with `_` for `-` (etcd's `flags.FlagToEnv`).
pub fn environment_variable_name(flag: &str) -> String {
    format!("ETCD_{}", flag.to_uppercase().replace('-', "_"))
}

/// The long names of every flag of `raftkv serve` (hidden ones included).
pub fn flag_names() -> Vec<String> {
    let command = serve_command();
    command
        .get_arguments()
        .filter_map(|argument| argument.get_long())
        .filter(|long| !COMMAND_LINE_ONLY.contains(long))
        .map(str::to_string)
        .collect()
}

/// Reads the settings: `command_line` are the arguments after `raftkv serve`, `environment`
/// the process environment. Errors name the flag, variable or config-file key.
pub fn load(command_line: Vec<OsString>, environment: Vec<(OsString, OsString)>) -> Result<LoadedArgs, String> {
    let command = serve_command();
    let matches = command.clone().try_get_matches_from(&command_line).map_err(|error| clap_message(&error))?;
    let environment: Vec<(String, String)> = environment
        .into_iter()
        .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().unwrap_or_default())))
        .collect();
    let config_file = matches.get_one::<PathBuf>("config_file").cloned().or_else(|| {
        let variable = environment_variable_name("config-file");
        environment.iter().find(|(key, value)| *key == variable && !value.is_empty()).map(|(_, value)| value.into())
    });
    let (arguments, notes, warnings) = match config_file {
        Some(path) => {
            let arguments = super::file::arguments_from_file(&command, &path)?;
            let note = format!(
                "loading server configuration from {:?}; other command-line flags and environment variables are ignored",
                path.display().to_string()
            );
            (arguments, vec![note], Vec::new())
        }
        None => {
            let (mut arguments, warnings) = arguments_from_environment(&command, &matches, &environment)?;
            let mut all = command_line;
            all.append(&mut arguments);
            (all, Vec::new(), warnings)
        }
    };
    let matches = command.try_get_matches_from(arguments).map_err(|error| clap_message(&error))?;
    let mut args = ServeArgs::from_arg_matches(&matches).map_err(|error| clap_message(&error))?;
    normalize(&mut args);
    Ok(LoadedArgs { args, notes, warnings })
}

/// An empty path flag (`--wal-dir=''`, etcd's default) means the flag is not set.
fn normalize(args: &mut ServeArgs) {
    for path in [
        &mut args.data_dir,
        &mut args.wal_dir,
        &mut args.cert_file,
        &mut args.key_file,
        &mut args.trusted_ca_file,
        &mut args.client_crl_file,
        &mut args.peer_cert_file,
        &mut args.peer_key_file,
        &mut args.peer_trusted_ca_file,
        &mut args.peer_crl_file,
        &mut args.config_file,
    ] {
        if path.as_deref().is_some_and(|path| path.as_os_str().is_empty()) {
            *path = None;
        }
    }
}

/// `--flag=value` for each `ETCD_*` variable whose flag is not on the command line, and
/// warnings for unrecognized `ETCD_*` variables; a flag given both ways is an error.
fn arguments_from_environment(
    command: &clap::Command,
    matches: &clap::ArgMatches,
    environment: &[(String, String)],
) -> Result<(Vec<OsString>, Vec<String>), String> {
    let mut arguments = Vec::new();
    let mut recognized = std::collections::BTreeSet::new();
    for argument in command.get_arguments() {
        let Some(long) = argument.get_long().filter(|long| !COMMAND_LINE_ONLY.contains(long)) else { continue };
        let variable = environment_variable_name(long);
        let Some((_, value)) = environment.iter().find(|(key, _)| *key == variable) else { continue };
        recognized.insert(variable.clone());
        if matches.value_source(argument.get_id().as_str()) == Some(ValueSource::CommandLine) {
            return Err(format!(
                "conflicting environment variable {variable:?} is shadowed by corresponding command-line flag \
                 (either unset environment variable or disable flag)"
            ));
        }
        if value.is_empty() {
            continue;
        }
        check_one(command, long, value)
            .map_err(|reason| format!("invalid value {value:?} for {variable}: {reason}"))?;
        arguments.push(OsString::from(format!("--{long}={value}")));
    }
    let warnings = environment
        .iter()
        .filter(|(key, _)| key.starts_with("ETCD_") && !recognized.contains(key))
        .map(|(key, value)| format!("unrecognized environment variable {key}={value}"))
        .collect();
    Ok((arguments, warnings))
}

/// Parses `--flag=value` alone; the reason it is refused, if it is.
pub(crate) fn check_one(command: &clap::Command, long: &str, value: &str) -> Result<(), String> {
    match command.clone().try_get_matches_from([format!("--{long}={value}")]) {
        Ok(_) => Ok(()),
        Err(error) => Err(std::error::Error::source(&error)
            .map(|source| source.to_string())
            .unwrap_or_else(|| clap_message(&error))),
    }
}

/// The first line of a clap error, without clap's `error: ` prefix.
pub(crate) fn clap_message(error: &clap::Error) -> String {
    let text = error.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// The help text of `raftkv serve` (for tests and docs).
pub fn help_text() -> String {
    serve_command().render_help().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn strings(items: &[&str]) -> Vec<OsString> {
        items.iter().map(OsString::from).collect()
    }

    fn variables(items: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        items.iter().map(|(key, value)| (OsString::from(key), OsString::from(value))).collect()
    }

    #[test]
    fn environment_fills_unset_flags() {
        let loaded = load(
            strings(&["--name", "n1"]),
            variables(&[
                ("ETCD_DATA_DIR", "/tmp/x"),
                ("ETCD_PRE_VOTE", "false"),
                ("ETCD_GRPC_KEEPALIVE_MIN_TIME", "7s"),
                ("ETCD_FOO", "bar"),
                ("ETCDCTL_API", "3"),
                ("ETCD_QUOTA_BACKEND_BYTES", ""),
            ]),
        )
        .unwrap();
        assert_eq!(loaded.args.name, "n1");
        assert_eq!(loaded.args.data_dir.as_deref(), Some(Path::new("/tmp/x")));
        assert!(!loaded.args.pre_vote);
        assert_eq!(loaded.args.grpc_keepalive_min_time, std::time::Duration::from_secs(7));
        assert_eq!(loaded.args.quota_backend_bytes, 0, "an empty variable is ignored, as etcd does");
        assert_eq!(loaded.warnings, vec!["unrecognized environment variable ETCD_FOO=bar".to_string()]);
    }

    #[test]
    fn a_flag_given_twice_is_refused() {
        let error = load(strings(&["--name", "n1"]), variables(&[("ETCD_NAME", "n2")])).unwrap_err();
        assert_eq!(
            error,
            "conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding command-line flag \
             (either unset environment variable or disable flag)"
        );
    }

    #[test]
    fn bad_variables_are_named() {
        let error = load(vec![], variables(&[("ETCD_HEARTBEAT_INTERVAL", "100ms")])).unwrap_err();
        assert_eq!(
            error,
            "invalid value \"100ms\" for ETCD_HEARTBEAT_INTERVAL: --heartbeat-interval: '100ms' is not a number of \
             milliseconds (write 100 for 100ms)"
        );
        let error = load(vec![], variables(&[("ETCD_SNAPSHOT_COUNT", "many")])).unwrap_err();
        assert!(error.starts_with("invalid value \"many\" for ETCD_SNAPSHOT_COUNT: "), "{error}");
        let error = load(vec![], variables(&[("ETCD_STRICT_RECONFIG_CHECK", "maybe")])).unwrap_err();
        assert!(error.contains("ETCD_STRICT_RECONFIG_CHECK") && error.contains("not a boolean"), "{error}");
    }

    #[test]
    fn flags_keep_etcd_defaults_and_forms() {
        let args = load(vec![], vec![]).unwrap().args;
        assert!(args.strict_reconfig_check && args.initial_election_tick_advance && !args.enable_v2);
        assert_eq!((args.max_wals, args.max_snapshots), (5, 5));
        assert_eq!(args.grpc_keepalive_interval, std::time::Duration::from_secs(7200));
        assert_eq!(args.auto_compaction_mode, "periodic");
        assert!(args.wal_dir.is_none());
        let args = load(strings(&["--pre-vote", "--strict-reconfig-check=false", "--wal-dir="]), vec![]).unwrap().args;
        assert!(args.pre_vote && !args.strict_reconfig_check && args.wal_dir.is_none());
        let error = load(strings(&["--heartbeat-interval", "100ms"]), vec![]).unwrap_err();
        assert!(error.contains("--heartbeat-interval: '100ms' is not a number of milliseconds"), "{error}");
        let error = load(strings(&["--grpc-keepalive-timeout", "20"]), vec![]).unwrap_err();
        assert!(error.contains("--grpc-keepalive-timeout"), "{error}");
    }

    #[test]
    fn every_flag_has_a_variable() {
        let names = flag_names();
        assert!(names.contains(&"initial-cluster".to_string()));
        assert_eq!(environment_variable_name("initial-cluster"), "ETCD_INITIAL_CLUSTER");
        assert_eq!(
            environment_variable_name("experimental-corrupt-check-time"),
            "ETCD_EXPERIMENTAL_CORRUPT_CHECK_TIME"
        );
        assert!(help_text().contains("Clustering:"));
    }
}
