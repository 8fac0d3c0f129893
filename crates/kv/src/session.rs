//! Client sessions for exactly-once application of retried commands (R8).
//! See the crate documentation for the protocol.

use imbl::{OrdMap, OrdSet};

use proto::raftkvpb::InternalResponse;

/// Default number of client sessions remembered.
pub const DEFAULT_MAXIMUM_SESSIONS: usize = 4096;

/// The last answered request of one client.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Session {
    /// Sequence number of the last applied request.
    pub sequence: u64,
    /// Log index at which the session was last used (eviction age).
    pub last_used_index: u64,
    /// The answer recorded for that request.
    pub response: InternalResponse,
}

/// What the session table says about an incoming request.
#[derive(Debug, PartialEq)]
pub(crate) enum Lookup<'a> {
    /// Never seen: apply it.
    Fresh,
    /// Already applied: answer with the recorded response.
    Duplicate(&'a InternalResponse),
    /// Older than the last applied request: refuse.
    Stale,
}

/// Bounded table of client sessions with least-recently-used eviction by log index.
#[derive(Clone, Debug)]
pub(crate) struct Sessions {
    maximum_sessions: usize,
    by_client: OrdMap<u64, Session>,
    by_age: OrdSet<(u64, u64)>,
}

impl Sessions {
    /// An empty table holding at most `maximum_sessions` clients.
    pub fn new(maximum_sessions: usize) -> Sessions {
        assert!(maximum_sessions > 0, "at least one session");
        Sessions { maximum_sessions, by_client: OrdMap::new(), by_age: OrdSet::new() }
    }

    /// Classifies request `sequence` of `client_id`.
    pub fn lookup(&self, client_id: u64, sequence: u64) -> Lookup<'_> {
        match self.by_client.get(&client_id) {
            None => Lookup::Fresh,
            Some(session) if sequence > session.sequence => Lookup::Fresh,
            Some(session) if sequence == session.sequence => Lookup::Duplicate(&session.response),
            Some(_) => Lookup::Stale,
        }
    }

    /// Records the answer to request `sequence` of `client_id`, applied at `index`.
    /// Evicts the least recently used session when the table is full.
    pub fn record(&mut self, client_id: u64, sequence: u64, index: u64, response: InternalResponse) {
        if let Some(old) = self.by_client.remove(&client_id) {
            assert!(old.sequence < sequence, "sequences of a client grow");
            self.by_age.remove(&(old.last_used_index, client_id));
        }
        while self.by_client.len() >= self.maximum_sessions {
            let oldest = self.by_age.remove_min().expect("a full table has an oldest session");
            self.by_client.remove(&oldest.1);
        }
        self.by_age.insert((index, client_id));
        self.by_client.insert(client_id, Session { sequence, last_used_index: index, response });
        assert_eq!(self.by_age.len(), self.by_client.len(), "indexes agree");
    }

    /// All sessions in client id order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Session)> {
        self.by_client.iter().map(|(client, session)| (*client, session))
    }

    /// Restores one session (from a snapshot), subject to the same bound.
    pub fn restore(&mut self, client_id: u64, session: Session) {
        let response = session.response;
        self.record(client_id, session.sequence, session.last_used_index, response);
    }

    /// Number of remembered sessions.
    pub fn len(&self) -> usize {
        self.by_client.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used() {
        let mut sessions = Sessions::new(2);
        sessions.record(1, 1, 10, InternalResponse::default());
        sessions.record(2, 1, 11, InternalResponse::default());
        sessions.record(1, 2, 12, InternalResponse::default());
        sessions.record(3, 1, 13, InternalResponse::default());
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions.lookup(2, 1), Lookup::Fresh, "client 2 was evicted");
        assert!(matches!(sessions.lookup(1, 2), Lookup::Duplicate(_)));
        assert_eq!(sessions.lookup(1, 1), Lookup::Stale);
        assert_eq!(sessions.lookup(3, 2), Lookup::Fresh);
    }
}
