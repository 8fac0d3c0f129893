//! `--config-file`: etcd 3.4's YAML configuration (keys are the flags' names; TLS settings
//! under `client-transport-security` and `peer-transport-security`). Unlike etcd, which
//! ignores keys it does not know, an unknown key is refused so a typo does not silently
//! start a different cluster. Durations are Go's: integer nanoseconds (what etcd's YAML
//! decoder takes) or a string such as `5s`.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use clap::builder::ValueParser;
use serde_yaml::Value;

use super::sources::check_one;

/// Keys of a `*-transport-security` block, and the flags they set for clients and peers.
const SECURITY_KEYS: &[(&str, &str, &str)] = &[
    ("cert-file", "cert-file", "peer-cert-file"),
    ("key-file", "key-file", "peer-key-file"),
    ("client-cert-auth", "client-cert-auth", "peer-client-cert-auth"),
    ("trusted-ca-file", "trusted-ca-file", "peer-trusted-ca-file"),
    ("ca-file", "trusted-ca-file", "peer-trusted-ca-file"),
    ("auto-tls", "auto-tls", "peer-auto-tls"),
    ("crl-file", "client-crl-file", "peer-crl-file"),
    ("allowed-hostname", "client-cert-allowed-hostname", "peer-cert-allowed-hostname"),
    ("allowed-cn", "", "peer-cert-allowed-cn"),
];

/// Keys that are names of older etcd settings.
const ALIASES: &[(&str, &str)] = &[("log-output", "log-outputs")];

/// Keys that are flags but not settings.
const NOT_KEYS: &[&str] = &["config-file", "version", "help"];

/// The kind of value a flag takes, from its value parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bool,
    Integer,
    Duration,
    Text,
}

fn kind_of(parser: &ValueParser) -> Kind {
    let type_id = parser.type_id();
    if type_id == std::any::TypeId::of::<bool>() {
        Kind::Bool
    } else if type_id == std::any::TypeId::of::<Duration>() {
        Kind::Duration
    } else if [
        std::any::TypeId::of::<u64>(),
        std::any::TypeId::of::<i64>(),
        std::any::TypeId::of::<u32>(),
        std::any::TypeId::of::<usize>(),
    ]
    .into_iter()
    .any(|integer| type_id == integer)
    {
        Kind::Integer
    } else {
        Kind::Text
    }
}

/// Reads `path` and turns its settings into `--flag=value` arguments. Errors name the file
/// and the key.
pub(crate) fn arguments_from_file(command: &clap::Command, path: &Path) -> Result<Vec<OsString>, String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("--config-file {}: {error}", path.display()))?;
    arguments_from_yaml(command, &text).map_err(|reason| format!("config file {}: {reason}", path.display()))
}

/// Turns etcd YAML into `--flag=value` arguments.
pub(crate) fn arguments_from_yaml(command: &clap::Command, text: &str) -> Result<Vec<OsString>, String> {
    let document: Value = serde_yaml::from_str(text).map_err(|error| format!("not valid YAML: {error}"))?;
    let mapping = match document {
        Value::Null => return Ok(Vec::new()),
        Value::Mapping(mapping) => mapping,
        _ => return Err("not a YAML mapping of etcd settings (key: value lines)".into()),
    };
    let mut arguments = Vec::new();
    for (key, value) in &mapping {
        let Value::String(key) = key else { return Err(format!("key {} is not a string", scalar_text(key))) };
        if key == "client-transport-security" || key == "peer-transport-security" {
            let peer = key.starts_with("peer");
            let Value::Mapping(block) = value else {
                if value.is_null() {
                    continue;
                }
                return Err(format!("key \"{key}\": expected a mapping of TLS settings"));
            };
            for (inner_key, inner_value) in block {
                let inner_name = inner_key.as_str().unwrap_or_default();
                let flag = SECURITY_KEYS
                    .iter()
                    .find(|(name, _, _)| *name == inner_name)
                    .map(|(_, client, peer_flag)| if peer { *peer_flag } else { *client })
                    .filter(|flag| !flag.is_empty())
                    .ok_or_else(|| {
                        format!(
                            "unknown key \"{key}.{}\"",
                            inner_key.as_str().map_or_else(|| scalar_text(inner_key), str::to_string)
                        )
                    })?;
                let full_key = format!("{key}.{inner_name}");
                push_setting(command, &mut arguments, &full_key, flag, inner_value)?;
            }
            continue;
        }
        let flag = ALIASES.iter().find(|(alias, _)| alias == key).map_or(key.as_str(), |(_, flag)| flag);
        push_setting(command, &mut arguments, key, flag, value)?;
    }
    Ok(arguments)
}

/// Converts one setting, checks its type and value, and appends `--flag=value`.
fn push_setting(
    command: &clap::Command,
    arguments: &mut Vec<OsString>,
    key: &str,
    flag: &str,
    value: &Value,
) -> Result<(), String> {
    let argument = command
        .get_arguments()
        .find(|argument| argument.get_long() == Some(flag) && !NOT_KEYS.contains(&flag))
        .ok_or_else(|| format!("unknown key \"{key}\""))?;
    if value.is_null() {
        return Ok(());
    }
    let text = value_text(kind_of(argument.get_value_parser()), value)
        .map_err(|expected| format!("key \"{key}\": expected {expected}, found {}", scalar_text(value)))?;
    check_one(command, flag, &text).map_err(|reason| format!("key \"{key}\": {reason}"))?;
    arguments.push(OsString::from(format!("--{flag}={text}")));
    Ok(())
}

/// The flag text of a YAML value of the given kind, or what was expected.
fn value_text(kind: Kind, value: &Value) -> Result<String, &'static str> {
    match (kind, value) {
        (Kind::Bool, Value::Bool(flag)) => Ok(flag.to_string()),
        (Kind::Bool, _) => Err("true or false"),
        (Kind::Integer, Value::Number(number)) if number.is_i64() || number.is_u64() => Ok(number.to_string()),
        (Kind::Integer, _) => Err("an integer"),
        (Kind::Duration, Value::Number(number)) => match number.as_u64() {
            Some(nanoseconds) => Ok(super::values::format_go_duration(Duration::from_nanos(nanoseconds))),
            None => Err("a duration (nanoseconds, or a string such as \"5s\")"),
        },
        (Kind::Duration, Value::String(text)) => Ok(text.clone()),
        (Kind::Duration, _) => Err("a duration (nanoseconds, or a string such as \"5s\")"),
        (Kind::Text, Value::String(text)) => Ok(text.clone()),
        (Kind::Text, Value::Number(number)) => Ok(number.to_string()),
        (Kind::Text, Value::Bool(flag)) => Ok(flag.to_string()),
        (Kind::Text, Value::Sequence(items)) => {
            let parts: Option<Vec<String>> = items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Some(text.clone()),
                    Value::Number(number) => Some(number.to_string()),
                    _ => None,
                })
                .collect();
            parts.map(|parts| parts.join(",")).ok_or("a string or a list of strings")
        }
        (Kind::Text, _) => Err("a string"),
    }
}

/// A short rendering of a YAML value for messages.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::Null => "nothing".into(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => format!("{text:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(_) => "a tagged value".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sources::serve_command;

    fn arguments(text: &str) -> Result<Vec<String>, String> {
        arguments_from_yaml(&serve_command(), text)
            .map(|arguments| arguments.into_iter().map(|argument| argument.into_string().unwrap()).collect())
    }

    #[test]
    fn reads_etcd_keys() {
        let yaml = "name: n1\ndata-dir: /var/lib/n1\nheartbeat-interval: 50\nelection-timeout: 500\n\
                    pre-vote: true\nlog-outputs: [stderr, /tmp/x.log]\ngrpc-keepalive-min-time: 5000000000\n\
                    grpc-keepalive-timeout: 3s\nauto-compaction-retention: 1\nwal-dir:\n\
                    client-transport-security:\n  cert-file: /c.pem\n  client-cert-auth: true\n\
                    peer-transport-security:\n  key-file: /k.pem\n  allowed-cn: n\n";
        assert_eq!(
            arguments(yaml).unwrap(),
            [
                "--name=n1",
                "--data-dir=/var/lib/n1",
                "--heartbeat-interval=50",
                "--election-timeout=500",
                "--pre-vote=true",
                "--log-outputs=stderr,/tmp/x.log",
                "--grpc-keepalive-min-time=5s",
                "--grpc-keepalive-timeout=3s",
                "--auto-compaction-retention=1",
                "--cert-file=/c.pem",
                "--client-cert-auth=true",
                "--peer-key-file=/k.pem",
                "--peer-cert-allowed-cn=n",
            ]
        );
        assert!(arguments("").unwrap().is_empty());
    }

    #[test]
    fn refuses_bad_files_naming_the_key() {
        assert_eq!(arguments("nmae: n1").unwrap_err(), "unknown key \"nmae\"");
        assert_eq!(arguments("config-file: x").unwrap_err(), "unknown key \"config-file\"");
        assert_eq!(
            arguments("pre-vote: yes please").unwrap_err(),
            "key \"pre-vote\": expected true or false, found \"yes please\""
        );
        assert_eq!(
            arguments("snapshot-count: lots").unwrap_err(),
            "key \"snapshot-count\": expected an integer, found \"lots\""
        );
        let error = arguments("heartbeat-interval: 100ms").unwrap_err();
        assert!(error.starts_with("key \"heartbeat-interval\": expected an integer"), "{error}");
        let error = arguments("grpc-keepalive-time: 5s").unwrap_err();
        assert_eq!(error, "unknown key \"grpc-keepalive-time\"");
        let error = arguments("grpc-keepalive-timeout: 5 seconds").unwrap_err();
        assert!(error.starts_with("key \"grpc-keepalive-timeout\": --grpc-keepalive-timeout:"), "{error}");
        let error = arguments("client-transport-security:\n  cert: /x").unwrap_err();
        assert_eq!(error, "unknown key \"client-transport-security.cert\"");
        assert!(arguments("name: [a").unwrap_err().starts_with("not valid YAML"));
        assert!(arguments("- a\n- b").unwrap_err().starts_with("not a YAML mapping"));
        let error = arguments("initial-cluster-state: old").unwrap_err();
        assert!(error.starts_with("key \"initial-cluster-state\":"), "{error}");
    }
}
