//! The scenario language itself: errors name the script and line; bounds are enforced.

use raft::testkit::run_script;

#[test]
fn a_failing_assertion_names_script_and_line() {
    let script = "# source: test\nnodes 3\n\n# a comment\nexpect commit 1 = 5\n";
    let error = run_script("example.txt", script).expect_err("commit is 0");
    assert_eq!(error.script, "example.txt");
    assert_eq!(error.line, 5);
    assert_eq!(error.text, "expect commit 1 = 5");
    assert!(error.to_string().starts_with("example.txt:5: commit of node 1 is 0"), "{error}");
}

#[test]
fn a_script_must_cite_its_source() {
    let error = run_script("nameless.txt", "nodes 3\n").expect_err("no source line");
    assert!(error.message.contains("# source:"), "{error}");
}

#[test]
fn unknown_commands_and_bad_arguments_are_errors() {
    for (script, fragment) in [
        ("# source: t\nnodes 3\nfly 1\n", "unknown command"),
        ("# source: t\ncampaign 1\n", "no cluster yet"),
        ("# source: t\nnodes 3\ncampaign 9\n", "no node 9"),
        ("# source: t\nnodes 3\ndeliver 1->2 gossip\n", "unknown message kind"),
        ("# source: t\nnodes 3\nexpect leader $X\n", "unknown variable"),
        ("# source: t\nnodes 3\nrepeat 2\n", "without `end`"),
        ("# source: t\nnodes 3\nrepeat 5000\nend\n", "above the bound"),
        ("# source: t\nnodes 3\nlog 1: 3 2\n", "must not decrease"),
        ("# source: t\nnodes 0\n", "node count"),
    ] {
        let error = run_script("bad.txt", script).expect_err(script);
        assert!(error.message.contains(fragment), "{script:?}: {error}");
    }
}

#[test]
fn deliver_all_stops_at_its_bound_and_reports() {
    // One round delivers the vote requests; their answers are still in flight.
    let script = "# source: t\nnodes 3\ncampaign 1\ndeliver-all 1\n";
    let error = run_script("bound.txt", script).expect_err("still busy after one round");
    assert!(error.message.contains("still busy after 1 delivery rounds"), "{error}");
    assert_eq!(error.line, 4);
}

#[test]
fn loops_and_variables_work() {
    let script = "# source: t\nnodes 3\nrun 40\nlet L = leader\nrepeat 3\npropose $L x\nrun 2\nend\n\
                  expect applied *: x x x\nexpect logs-equal\n";
    run_script("loop.txt", script).unwrap_or_else(|error| panic!("{error}"));
}
