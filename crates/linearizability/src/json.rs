//! Saving and loading histories as JSON lines, one operation per line, so that a failing
//! history can be kept and replayed.
//!
//! A line looks like
//! `{"id":0,"client":1,"key":"x","input":{"type":"write","value":"1"},"invoke_time":0,
//! "return_time":1,"outcome":{"status":"returned","output":{"type":"write"}}}`.
//! Keys and values are JSON strings when they are UTF-8 and arrays of byte values
//! otherwise; `null` is an absent value. Inputs are `read`, `write` (`value`) and
//! `compare_and_set` (`expected`, `new`); outcomes are `pending`, `unknown` and
//! `returned` with an output of type `read` (`value`), `write` or `compare_and_set`
//! (`succeeded`). Blank lines are ignored.

use serde::{Deserialize, Serialize};

use crate::history::{ClientId, History, HistoryError, Input, OpId, OperationRecord, Outcome, Output};
use crate::history::{Operation, Value};

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum BytesLine {
    Text(String),
    Raw(Vec<u8>),
}

impl BytesLine {
    fn from_bytes(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => BytesLine::Text(text.to_string()),
            Err(_) => BytesLine::Raw(bytes.to_vec()),
        }
    }

    fn into_bytes(self) -> Vec<u8> {
        match self {
            BytesLine::Text(text) => text.into_bytes(),
            BytesLine::Raw(bytes) => bytes,
        }
    }
}

fn optional_line(value: &Option<Value>) -> Option<BytesLine> {
    value.as_deref().map(BytesLine::from_bytes)
}

fn optional_bytes(value: Option<BytesLine>) -> Option<Value> {
    value.map(BytesLine::into_bytes)
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum InputLine {
    Read,
    Write { value: Option<BytesLine> },
    CompareAndSet { expected: Option<BytesLine>, new: Option<BytesLine> },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum OutputLine {
    Read { value: Option<BytesLine> },
    Write,
    CompareAndSet { succeeded: bool },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
enum OutcomeLine {
    Pending,
    Returned { output: OutputLine },
    Unknown,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordLine {
    id: usize,
    client: u64,
    key: BytesLine,
    input: InputLine,
    invoke_time: u64,
    return_time: Option<u64>,
    outcome: OutcomeLine,
}

impl RecordLine {
    fn from_record(record: &OperationRecord) -> Self {
        let input = match &record.operation.input {
            Input::Read => InputLine::Read,
            Input::Write { value } => InputLine::Write { value: optional_line(value) },
            Input::CompareAndSet { expected, new } => {
                InputLine::CompareAndSet { expected: optional_line(expected), new: optional_line(new) }
            }
        };
        let outcome = match &record.outcome {
            Outcome::Pending => OutcomeLine::Pending,
            Outcome::Unknown => OutcomeLine::Unknown,
            Outcome::Returned(output) => OutcomeLine::Returned {
                output: match output {
                    Output::Read { value } => OutputLine::Read { value: optional_line(value) },
                    Output::Write => OutputLine::Write,
                    Output::CompareAndSet { succeeded } => OutputLine::CompareAndSet { succeeded: *succeeded },
                },
            },
        };
        RecordLine {
            id: record.id.0,
            client: record.client.0,
            key: BytesLine::from_bytes(&record.operation.key),
            input,
            invoke_time: record.invoke_time,
            return_time: record.return_time,
            outcome,
        }
    }

    fn into_record(self) -> OperationRecord {
        let input = match self.input {
            InputLine::Read => Input::Read,
            InputLine::Write { value } => Input::Write { value: optional_bytes(value) },
            InputLine::CompareAndSet { expected, new } => {
                Input::CompareAndSet { expected: optional_bytes(expected), new: optional_bytes(new) }
            }
        };
        let outcome = match self.outcome {
            OutcomeLine::Pending => Outcome::Pending,
            OutcomeLine::Unknown => Outcome::Unknown,
            OutcomeLine::Returned { output } => Outcome::Returned(match output {
                OutputLine::Read { value } => Output::Read { value: optional_bytes(value) },
                OutputLine::Write => Output::Write,
                OutputLine::CompareAndSet { succeeded } => Output::CompareAndSet { succeeded },
            }),
        };
        OperationRecord {
            id: OpId(self.id),
            client: ClientId(self.client),
            operation: Operation { key: self.key.into_bytes(), input },
            invoke_time: self.invoke_time,
            return_time: self.return_time,
            outcome,
        }
    }
}

impl History {
    /// The history as JSON lines, one operation per line (see the module docs of `json`
    /// for the format), each line ending in a newline.
    pub fn to_json_lines(&self) -> String {
        let mut text = String::new();
        for record in self.operations() {
            let line = serde_json::to_string(&RecordLine::from_record(record)).expect("records serialize to JSON");
            text.push_str(&line);
            text.push('\n');
        }
        text
    }

    /// Loads a history saved by [`History::to_json_lines`]. Errors name the 1-based line.
    pub fn from_json_lines(text: &str) -> Result<History, HistoryError> {
        let mut records = Vec::new();
        let mut line_numbers = Vec::new();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let record: RecordLine = serde_json::from_str(line)
                .map_err(|error| HistoryError { position: index + 1, message: error.to_string() })?;
            records.push(record.into_record());
            line_numbers.push(index + 1);
        }
        History::from_records(records)
            .map_err(|error| HistoryError { position: line_numbers[error.position], message: error.message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format_is_stable() {
        let mut history = History::new();
        let id = history.invoke(ClientId(7), Operation::write("x", "1"));
        history.complete(id, Output::write_acknowledged());
        let expected = r#"{"id":0,"client":7,"key":"x","input":{"type":"write","value":"1"},"invoke_time":0,"return_time":1,"outcome":{"status":"returned","output":{"type":"write"}}}"#;
        assert_eq!(history.to_json_lines(), format!("{expected}\n"));
    }

    #[test]
    fn errors_name_the_line() {
        let text = "\n{\"id\":0,\"client\":1}\n";
        let error = History::from_json_lines(text).unwrap_err();
        assert_eq!(error.position, 2);
    }
}
