//! Time-to-live of etcd's simple tokens on this member.
//!
//! A token is issued by `Authenticate` through the log, so every member learns it (as
//! in etcd, where the simple token provider assigns the token while applying the
//! request); the replicated store cannot expire it (it has no clock). Each member
//! therefore tracks when it last saw each token: a token unused for
//! [`SIMPLE_TOKEN_TTL`] on this member is refused from then on ("etcdserver: invalid
//! auth token"), and every use restarts the countdown, as etcd's simple tokens do. A
//! token's countdown starts the first time this member sees it. Tracking is in memory:
//! after a restart, tokens that the member re-learns from its log are valid again for
//! one time-to-live (the token itself dies with the user's password change, deletion
//! or `AuthDisable`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a simple token stays valid without being used (etcd: 5 minutes).
pub const SIMPLE_TOKEN_TTL: Duration = Duration::from_secs(300);

/// Most tokens tracked before the tracker forgets tokens the store no longer knows.
const TRACKED_TOKENS_MAX: usize = 2 * kv::SIMPLE_TOKENS_MAX;

#[derive(Clone, Copy, Debug)]
struct Activity {
    last_used: Instant,
    expired: bool,
}

/// Last use of every simple token seen by this member.
#[derive(Debug)]
pub struct TokenActivity {
    time_to_live: Duration,
    tokens: Mutex<HashMap<String, Activity>>,
}

impl Default for TokenActivity {
    fn default() -> TokenActivity {
        TokenActivity::new(SIMPLE_TOKEN_TTL)
    }
}

impl TokenActivity {
    /// A tracker that expires tokens unused for `time_to_live`.
    pub fn new(time_to_live: Duration) -> TokenActivity {
        assert!(!time_to_live.is_zero(), "tokens must live a while");
        TokenActivity { time_to_live, tokens: Mutex::new(HashMap::new()) }
    }

    /// Records a use of `token` (known to `auth`) at `now`; false if it has expired.
    pub fn touch(&self, token: &str, now: Instant, auth: &kv::AuthStore) -> bool {
        let mut tokens = self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if tokens.len() >= TRACKED_TOKENS_MAX {
            tokens.retain(|tracked, _| auth.user_for_token(tracked).is_some());
        }
        let activity = tokens.entry(token.to_string()).or_insert(Activity { last_used: now, expired: false });
        if activity.expired || now.saturating_duration_since(activity.last_used) > self.time_to_live {
            activity.expired = true;
            return false;
        }
        activity.last_used = activity.last_used.max(now);
        assert!(tokens.len() <= TRACKED_TOKENS_MAX + 1, "token tracking is bounded");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_when_unused_and_stay_expired() {
        let activity = TokenActivity::new(Duration::from_secs(10));
        let auth = kv::AuthStore::default();
        let start = Instant::now();
        assert!(activity.touch("t", start, &auth));
        assert!(activity.touch("t", start + Duration::from_secs(9), &auth));
        assert!(activity.touch("t", start + Duration::from_secs(18), &auth), "each use restarts the countdown");
        assert!(!activity.touch("t", start + Duration::from_secs(29), &auth));
        assert!(!activity.touch("t", start + Duration::from_secs(29), &auth), "an expired token stays expired");
        assert!(activity.touch("other", start + Duration::from_secs(29), &auth));
    }
}
