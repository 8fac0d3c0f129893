//! Saving histories as JSON lines and replaying them.

mod common;

use common::{concurrent_history, corrupt_a_read, Workload};
use linearizability::{check, ClientId, History, Input, Operation, Output};

#[test]
fn round_trip_preserves_every_field() {
    let workload = Workload { clients: 3, keys: 2, operations: 200, distinct_values: 4, time_out_per_mille: 100 };
    let mut history = concurrent_history(11, &workload);
    let pending = history.invoke(ClientId(9), Operation::compare_and_set("key-0", "v1", "v2"));
    assert_eq!(history.operation(pending).map(|record| record.return_time), Some(None));
    let text = history.to_json_lines();
    assert_eq!(text.lines().count(), history.len());
    assert_eq!(History::from_json_lines(&text), Ok(history));
}

#[test]
fn binary_keys_and_values_round_trip() {
    let mut history = History::new();
    let binary = vec![0xff, 0x00, 0x80];
    let create = Input::CompareAndSet { expected: None, new: Some(binary.clone()) };
    let id = history.invoke(ClientId(1), Operation::new(binary.clone(), create));
    history.complete(id, Output::compare_and_set(true));
    let id = history.invoke(ClientId(1), Operation::read(binary.clone()));
    history.complete(id, Output::Read { value: Some(binary) });
    let id = history.invoke(ClientId(2), Operation::delete("text"));
    history.time_out(id);
    let text = history.to_json_lines();
    assert!(text.contains("[255,0,128]"), "{text}");
    assert_eq!(History::from_json_lines(&text), Ok(history));
}

#[test]
fn a_saved_failure_replays_identically() {
    let workload = Workload { clients: 4, keys: 3, operations: 300, distinct_values: 3, time_out_per_mille: 50 };
    let (history, changed) = corrupt_a_read(concurrent_history(5, &workload), 5);
    assert!(changed.is_some());
    let original = check(&history);
    assert!(original.violation().is_some());
    let replayed = History::from_json_lines(&history.to_json_lines()).expect("saved history loads");
    assert_eq!(check(&replayed), original);
}

#[test]
fn malformed_histories_are_rejected_with_their_line() {
    let mut history = History::new();
    let id = history.invoke(ClientId(1), Operation::write("x", "1"));
    history.complete(id, Output::write_acknowledged());
    let id = history.invoke(ClientId(1), Operation::read("x"));
    history.complete(id, Output::read_value("1"));
    let text = history.to_json_lines();

    let wrong_output = text.replace(r#"{"type":"read","value":"1"}}"#, r#"{"type":"write"}}"#);
    let error = History::from_json_lines(&wrong_output).unwrap_err();
    assert_eq!(error.position, 2, "{error}");
    assert!(error.message.contains("does not fit"), "{error}");

    let wrong_id = text.replace(r#""id":1"#, r#""id":5"#);
    assert_eq!(History::from_json_lines(&wrong_id).unwrap_err().position, 2);

    let unknown_field = text.replace(r#""client":1,"#, r#""client":1,"colour":"red","#);
    assert_eq!(History::from_json_lines(&unknown_field).unwrap_err().position, 1);
}
