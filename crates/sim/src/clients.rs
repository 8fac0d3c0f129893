//! The client model: each client has at most one operation outstanding, submits it to a
//! random node, retries elsewhere on refusal or timeout, and records the history.

/// One client operation and its history.
#[derive(Clone, Debug)]
pub struct Operation {
    /// Issuing client.
    pub client: usize,
    /// Step at which the client invoked it.
    pub invoke_step: u64,
    /// Step at which it was acknowledged, if it was.
    pub acknowledge_step: Option<u64>,
    /// Node position the current attempt went to.
    pub node: usize,
    /// A linearizable read (ReadIndex) rather than a write.
    pub read: bool,
    /// For an acknowledged read: what it returned, the id of the last write that had taken
    /// effect on the serving node (`None`: no write yet).
    pub read_output: Option<u64>,
}

/// A client's state.
#[derive(Clone, Debug, Default)]
pub struct Client {
    /// Operation id outstanding, if any.
    pub pending: Option<u64>,
    /// Attempt counter (stale retry events carry an older value).
    pub attempt: u64,
}

/// All clients and the whole history.
#[derive(Debug)]
pub struct Clients {
    /// The clients.
    pub clients: Vec<Client>,
    /// `operations[id - 1]`: the operation with that id.
    pub operations: Vec<Operation>,
    /// Most operations a run invokes.
    pub operations_max: usize,
}

impl Clients {
    /// `count` idle clients.
    pub fn new(count: usize, operations_max: usize) -> Self {
        Clients { clients: vec![Client::default(); count], operations: Vec::new(), operations_max }
    }

    /// Starts a new operation (a read if `read`) for `client`; returns its id (`None` at
    /// the bound).
    pub fn invoke(&mut self, client: usize, step: u64, read: bool) -> Option<u64> {
        if self.operations.len() >= self.operations_max || self.clients[client].pending.is_some() {
            return None;
        }
        self.operations.push(Operation {
            client,
            invoke_step: step,
            acknowledge_step: None,
            node: 0,
            read,
            read_output: None,
        });
        let id = self.operations.len() as u64;
        self.clients[client].pending = Some(id);
        Some(id)
    }

    /// The operation with id `id`.
    pub fn operation_mut(&mut self, id: u64) -> Option<&mut Operation> {
        self.operations.get_mut((id as usize).checked_sub(1)?)
    }

    /// Acknowledges `id` if it is pending and its current attempt went to `node`; a read
    /// returns `read_output` (ignored for writes). Returns the client to wake.
    pub fn acknowledge(&mut self, id: u64, node: usize, step: u64, read_output: Option<u64>) -> Option<usize> {
        let operation = self.operation_mut(id)?;
        if operation.acknowledge_step.is_some() || operation.node != node {
            return None;
        }
        operation.acknowledge_step = Some(step);
        if operation.read {
            operation.read_output = read_output;
        }
        let client = operation.client;
        debug_assert_eq!(self.clients[client].pending, Some(id));
        self.clients[client].pending = None;
        Some(client)
    }

    /// Writes acknowledged before `step` that `applied` (a node's applied set) lacks.
    pub fn missing_before(&self, step: u64, applied: impl Fn(u64) -> bool) -> Option<u64> {
        let acknowledged_before = |operation: &Operation| operation.acknowledge_step.is_some_and(|ack| ack < step);
        (1..=self.operations.len() as u64).find(|&id| {
            let operation = &self.operations[id as usize - 1];
            !operation.read && acknowledged_before(operation) && !applied(id)
        })
    }

    /// Number of acknowledged operations.
    pub fn acknowledged(&self) -> u64 {
        self.operations.iter().filter(|operation| operation.acknowledge_step.is_some()).count() as u64
    }

    /// True if some client waits for an acknowledgement.
    pub fn any_pending(&self) -> bool {
        self.clients.iter().any(|client| client.pending.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_and_missing_writes() {
        let mut clients = Clients::new(2, 10);
        let write = clients.invoke(0, 1, false).expect("under the bound");
        assert_eq!(clients.invoke(0, 2, false), None, "one outstanding operation per client");
        clients.operation_mut(write).expect("exists").node = 3;
        assert_eq!(clients.acknowledge(write, 2, 5, None), None, "wrong node");
        assert_eq!(clients.acknowledge(write, 3, 5, Some(9)), Some(0));
        assert_eq!(clients.operation_mut(write).expect("exists").read_output, None, "writes return nothing");
        let read = clients.invoke(1, 6, true).expect("under the bound");
        assert!(clients.any_pending());
        // A read that began after the write was acknowledged must see it.
        assert_eq!(clients.missing_before(6, |_| false), Some(write));
        assert_eq!(clients.missing_before(6, |id| id == write), None);
        // A read that began before the acknowledgement need not.
        assert_eq!(clients.missing_before(5, |_| false), None);
        assert_eq!(clients.acknowledged(), 1);
        assert!(clients.operation_mut(read).expect("exists").read);
        clients.operation_mut(read).expect("exists").node = 1;
        assert_eq!(clients.acknowledge(read, 1, 7, Some(write)), Some(1));
        assert_eq!(clients.operation_mut(read).expect("exists").read_output, Some(write));
    }
}
