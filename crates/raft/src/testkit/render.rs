//! Draws every node's log the way the seed articles' figures do: a row per node, a column
//! per log index, each entry shown as its term, committed entries boxed.

use std::collections::BTreeMap;

use super::network::Network;
use super::script::role_name;
use crate::NodeId;

/// Explains the drawing.
pub const LEGEND: &str = concat!(
    "legend: one row per node, one column per log index; each cell is the term of the entry at that index.\n",
    "        [t] = committed (at or below that node's commit index), (t) = not yet committed.\n",
);

/// Draws the logs of every node of `network` under `title`; `labels` adds a note per node
/// (e.g. `(a)` for a Figure 7 follower).
pub fn render_logs(network: &Network, labels: &BTreeMap<NodeId, String>, title: &str) -> String {
    let rows: Vec<(String, Vec<String>)> = network.ids().into_iter().map(|id| node_row(network, labels, id)).collect();
    let width = rows.iter().flat_map(|(_, cells)| cells.iter().map(String::len)).max().unwrap_or(3).max(3);
    let name_width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0).max("index".len());
    let columns = rows.iter().map(|(_, cells)| cells.len()).max().unwrap_or(0);
    let mut text = format!("-- {title} --\n");
    let header: Vec<String> = (1..=columns).map(|index| format!("{index:^width$}")).collect();
    text.push_str(&format!("{:<name_width$} | {}\n", "index", header.join(" ").trim_end()));
    for (name, cells) in rows {
        let cells: Vec<String> = cells.iter().map(|cell| format!("{cell:^width$}")).collect();
        text.push_str(&format!("{name:<name_width$} | {}\n", cells.join(" ").trim_end()));
    }
    text
}

/// The row title and the cells of node `id`.
fn node_row(network: &Network, labels: &BTreeMap<NodeId, String>, id: NodeId) -> (String, Vec<String>) {
    let label = labels.get(&id).map(|label| format!(" {label}")).unwrap_or_default();
    let (state, commit) = match network.node(id) {
        Some(node) => (format!("{}, term {}", role_name(node.role()), node.term()), node.commit_index()),
        None => {
            let stored = network.storage(id).map(|storage| storage.hard_state()).unwrap_or_default();
            (format!("crashed, term {}", stored.term), stored.commit)
        }
    };
    let cells = network
        .log_entries(id)
        .iter()
        .map(|entry| if entry.index <= commit { format!("[{}]", entry.term) } else { format!("({})", entry.term) })
        .collect();
    (format!("S{id}{label} ({state})"), cells)
}

/// The entry cells of one row of a drawing (the part after `|`), or None for the header.
pub fn row_cells(row: &str) -> Option<(&str, &str)> {
    let (name, cells) = row.split_once(" | ")?;
    if name.trim() == "index" {
        return None;
    }
    Some((name.trim(), cells.trim()))
}
