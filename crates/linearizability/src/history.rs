//! Client histories: operations on a key-value register store, with the logical times at
//! which they were invoked and returned, built incrementally as clients run.

use std::fmt;

/// A key; each key is an independent register.
pub type Key = Vec<u8>;

/// A value stored under a key. An absent key is `None` wherever a value is optional.
pub type Value = Vec<u8>;

/// Identifies the client (process, session, thread) that issued an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

/// Identifies an operation within its [`History`]: its position in invocation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub usize);

impl fmt::Display for OpId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "op {}", self.0)
    }
}

/// What an operation asks the register under its key to do.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    /// Reads the current value.
    Read,
    /// Sets the value; `None` deletes the key.
    Write {
        /// The new value (`None`: delete).
        value: Option<Value>,
    },
    /// Sets the value to `new` if and only if the current value equals `expected`.
    CompareAndSet {
        /// The value the register must hold for the operation to succeed (`None`: absent).
        expected: Option<Value>,
        /// The value set on success (`None`: delete).
        new: Option<Value>,
    },
}

/// An operation as a client issues it: a key and what to do with it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Operation {
    /// The key operated on.
    pub key: Key,
    /// What the operation does.
    pub input: Input,
}

impl Operation {
    /// An operation with any input.
    pub fn new(key: impl Into<Key>, input: Input) -> Self {
        Operation { key: key.into(), input }
    }

    /// Reads `key`.
    pub fn read(key: impl Into<Key>) -> Self {
        Operation::new(key, Input::Read)
    }

    /// Writes `value` under `key`.
    pub fn write(key: impl Into<Key>, value: impl Into<Value>) -> Self {
        Operation::new(key, Input::Write { value: Some(value.into()) })
    }

    /// Deletes `key` (a write of "absent").
    pub fn delete(key: impl Into<Key>) -> Self {
        Operation::new(key, Input::Write { value: None })
    }

    /// Sets `key` to `new` if it currently holds `expected` (both present values; build an
    /// [`Input::CompareAndSet`] directly to compare against or set "absent").
    pub fn compare_and_set(key: impl Into<Key>, expected: impl Into<Value>, new: impl Into<Value>) -> Self {
        Operation::new(key, Input::CompareAndSet { expected: Some(expected.into()), new: Some(new.into()) })
    }
}

/// What a completed operation returned to its client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// A read's result: the value observed (`None`: the key was absent).
    Read {
        /// The value observed.
        value: Option<Value>,
    },
    /// A write was acknowledged.
    Write,
    /// A compare-and-set's result.
    CompareAndSet {
        /// Whether the comparison held and the new value was set.
        succeeded: bool,
    },
}

impl Output {
    /// A read that observed `value`.
    pub fn read_value(value: impl Into<Value>) -> Self {
        Output::Read { value: Some(value.into()) }
    }

    /// A read that found the key absent.
    pub fn read_absent() -> Self {
        Output::Read { value: None }
    }

    /// An acknowledged write or delete.
    pub fn write_acknowledged() -> Self {
        Output::Write
    }

    /// A compare-and-set's result.
    pub fn compare_and_set(succeeded: bool) -> Self {
        Output::CompareAndSet { succeeded }
    }

    /// Whether this output is of the kind `input` produces.
    pub fn matches(&self, input: &Input) -> bool {
        matches!(
            (input, self),
            (Input::Read, Output::Read { .. })
                | (Input::Write { .. }, Output::Write)
                | (Input::CompareAndSet { .. }, Output::CompareAndSet { .. })
        )
    }
}

/// How an operation ended, as far as the history knows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Invoked and not yet completed or timed out. Checked like [`Outcome::Unknown`].
    Pending,
    /// The client received this output.
    Returned(Output),
    /// The client gave up (timeout, connection loss): the operation may have taken effect
    /// at any time after its invocation, or never.
    Unknown,
}

/// One operation of a history with its timing and outcome.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OperationRecord {
    /// Position in the history (invocation order).
    pub id: OpId,
    /// The client that issued it.
    pub client: ClientId,
    /// What was asked.
    pub operation: Operation,
    /// Logical time of the invocation.
    pub invoke_time: u64,
    /// Logical time of the return; `None` unless the outcome is [`Outcome::Returned`]
    /// (an operation without a return may take effect arbitrarily late).
    pub return_time: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
}

/// A history that is not well formed (from [`History::from_records`] or
/// [`History::from_json_lines`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryError {
    /// The 1-based line (JSON lines) or 0-based record index the problem is in.
    pub position: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for HistoryError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "history record {}: {}", self.position, self.message)
    }
}

impl std::error::Error for HistoryError {}

/// A client history: the operations clients invoked, and how and when each ended.
///
/// Times are logical: [`History::invoke`] and [`History::complete`] each advance an
/// internal clock by one, so events recorded one after another are ordered
/// in real time. Callers with their own clock (a simulator) use the `_at` variants; equal
/// times are treated as concurrent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    records: Vec<OperationRecord>,
    latest_time: Option<u64>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        History::default()
    }

    /// Records that `client` invoked `operation` now; returns its id.
    pub fn invoke(&mut self, client: ClientId, operation: Operation) -> OpId {
        let time = self.next_time();
        self.invoke_at(time, client, operation)
    }

    /// Records that the operation `id` returned `output` now.
    ///
    /// # Panics
    /// If `id` is unknown, already ended, or `output` is not of its input's kind.
    pub fn complete(&mut self, id: OpId, output: Output) {
        let time = self.next_time();
        self.complete_at(time, id, output);
    }

    /// Records that the client gave up on operation `id` (its outcome is unknown). A time-out
    /// has no time: the operation may take effect at any time after its invocation.
    ///
    /// # Panics
    /// If `id` is unknown or already ended.
    pub fn time_out(&mut self, id: OpId) {
        let record = self.pending_record(id);
        record.outcome = Outcome::Unknown;
    }

    /// Like [`History::invoke`], at an explicit logical time.
    ///
    /// # Panics
    /// If `time` is earlier than a time already recorded.
    pub fn invoke_at(&mut self, time: u64, client: ClientId, operation: Operation) -> OpId {
        self.advance_clock(time);
        let id = OpId(self.records.len());
        self.records.push(OperationRecord {
            id,
            client,
            operation,
            invoke_time: time,
            return_time: None,
            outcome: Outcome::Pending,
        });
        id
    }

    /// Like [`History::complete`], at an explicit logical time.
    ///
    /// # Panics
    /// As [`History::complete`], or if `time` is earlier than a time already recorded.
    pub fn complete_at(&mut self, time: u64, id: OpId, output: Output) {
        self.advance_clock(time);
        let record = self.pending_record(id);
        assert!(
            output.matches(&record.operation.input),
            "{id}: output {output:?} does not fit input {:?}",
            record.operation.input
        );
        assert!(record.invoke_time <= time, "{id} returns before it was invoked");
        record.return_time = Some(time);
        record.outcome = Outcome::Returned(output);
    }

    /// Builds a history from records, checking that it is well formed: ids are positions,
    /// returns are not before invocations, a return time is present exactly for returned
    /// operations, and outputs fit their inputs.
    pub fn from_records(records: Vec<OperationRecord>) -> Result<History, HistoryError> {
        let mut latest_time = None;
        for (position, record) in records.iter().enumerate() {
            validate_record(position, record).map_err(|message| HistoryError { position, message })?;
            let end = record.return_time.unwrap_or(record.invoke_time);
            latest_time = latest_time.max(Some(end));
        }
        Ok(History { records, latest_time })
    }

    /// The recorded operations, in invocation order (indexed by [`OpId`]).
    pub fn operations(&self) -> &[OperationRecord] {
        &self.records
    }

    /// The operation `id`, if recorded.
    pub fn operation(&self, id: OpId) -> Option<&OperationRecord> {
        self.records.get(id.0)
    }

    /// The records, consuming the history (to edit and rebuild with [`History::from_records`]).
    pub fn into_records(self) -> Vec<OperationRecord> {
        self.records
    }

    /// The number of operations.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no operation was recorded.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn next_time(&self) -> u64 {
        self.latest_time.map_or(0, |time| time + 1)
    }

    fn advance_clock(&mut self, time: u64) {
        assert!(
            self.latest_time.is_none_or(|latest| time >= latest),
            "time {time} is earlier than the latest recorded time {:?}",
            self.latest_time
        );
        self.latest_time = Some(time);
    }

    fn pending_record(&mut self, id: OpId) -> &mut OperationRecord {
        let record = self.records.get_mut(id.0).unwrap_or_else(|| panic!("{id} was never invoked"));
        assert_eq!(record.outcome, Outcome::Pending, "{id} already ended");
        record
    }
}

fn validate_record(position: usize, record: &OperationRecord) -> Result<(), String> {
    if record.id != OpId(position) {
        return Err(format!("id {} at position {position}", record.id.0));
    }
    match (&record.outcome, record.return_time) {
        (Outcome::Returned(output), Some(return_time)) => {
            if return_time < record.invoke_time {
                return Err(format!("returns at {return_time}, before its invocation at {}", record.invoke_time));
            }
            if !output.matches(&record.operation.input) {
                return Err(format!("output {output:?} does not fit input {:?}", record.operation.input));
            }
            Ok(())
        }
        (Outcome::Returned(_), None) => Err("returned without a return time".to_string()),
        (Outcome::Pending | Outcome::Unknown, Some(_)) => Err("a return time without a returned output".to_string()),
        (Outcome::Pending | Outcome::Unknown, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logical_clock_orders_events() {
        let mut history = History::new();
        let first = history.invoke(ClientId(1), Operation::write("k", "a"));
        let second = history.invoke(ClientId(2), Operation::read("k"));
        history.complete(first, Output::write_acknowledged());
        history.time_out(second);
        let records = history.operations();
        assert_eq!((records[0].invoke_time, records[0].return_time), (0, Some(2)));
        assert_eq!((records[1].invoke_time, records[1].return_time), (1, None));
        assert_eq!(records[1].outcome, Outcome::Unknown);
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn mismatched_output_panics() {
        let mut history = History::new();
        let id = history.invoke(ClientId(1), Operation::read("k"));
        history.complete(id, Output::write_acknowledged());
    }

    #[test]
    #[should_panic(expected = "already ended")]
    fn double_completion_panics() {
        let mut history = History::new();
        let id = history.invoke(ClientId(1), Operation::delete("k"));
        history.complete(id, Output::write_acknowledged());
        history.time_out(id);
    }

    #[test]
    fn from_records_rejects_malformed() {
        let mut history = History::new();
        let id = history.invoke(ClientId(1), Operation::read("k"));
        history.complete(id, Output::read_absent());
        let mut records = history.into_records();
        records[0].return_time = None;
        let error = History::from_records(records).unwrap_err();
        assert_eq!(error.position, 0);
        assert!(error.message.contains("without a return time"), "{error}");
    }
}
