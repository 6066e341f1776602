//! Tokens already verified, so that a client sending the same token on every request pays for
//! the signature check and the claims' parsing once.
//!
//! Only tokens signed with the server's own HS256 secret are kept (that key never changes while
//! the process runs; keys from a JWKS may), and an entry is used only while the token's `exp`
//! (with the same leeway as a full check) has not passed. A token is verified in full the first
//! time and whenever it has fallen out of the cache, which is emptied when full.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::Identity;

/// Distinct tokens kept at most (a few hundred bytes each).
const CAPACITY: usize = 1024;

#[derive(Debug, Default)]
pub(super) struct VerifiedTokens {
    entries: Mutex<HashMap<Box<str>, Entry>>,
}

#[derive(Debug)]
struct Entry {
    identity: Identity,
    /// Last second (Unix time) at which the token is still valid; `None` without `exp`.
    valid_until: Option<u64>,
}

impl VerifiedTokens {
    /// The identity `token` was found to carry, if it is cached and not expired.
    pub(super) fn get(&self, token: &str) -> Option<Identity> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(token)?;
        match entry.valid_until {
            Some(until) if now() > until => None,
            _ => Some(entry.identity.clone()),
        }
    }

    /// Keeps `identity`, which `token` (verified with the server's own secret) carries.
    pub(super) fn put(&self, token: &str, identity: &Identity, leeway: u64) {
        let valid_until = match identity.claims.get("exp") {
            None => None,
            Some(Value::Number(exp)) => match exp.as_u64() {
                Some(exp) => Some(exp.saturating_add(leeway)),
                // A fractional or negative `exp`: not worth caching.
                None => return,
            },
            Some(_) => return,
        };
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(
            token.into(),
            Entry {
                identity: identity.clone(),
                valid_until,
            },
        );
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(exp: Option<u64>) -> Identity {
        let mut identity = Identity::anon();
        if let Some(exp) = exp {
            identity.claims.insert("exp".into(), exp.into());
        }
        identity
    }

    #[test]
    fn an_expired_entry_is_not_used() {
        let cache = VerifiedTokens::default();
        cache.put("old", &identity(Some(now() - 100)), 5);
        cache.put("fresh", &identity(Some(now() + 100)), 5);
        cache.put("forever", &identity(None), 5);
        assert!(cache.get("old").is_none());
        assert!(cache.get("fresh").is_some());
        assert!(cache.get("forever").is_some());
        assert!(cache.get("unknown").is_none());
    }

    #[test]
    fn a_full_cache_starts_over() {
        let cache = VerifiedTokens::default();
        for i in 0..CAPACITY + 1 {
            cache.put(&format!("t{i}"), &identity(None), 5);
        }
        assert!(cache.entries.lock().unwrap().len() <= CAPACITY);
    }
}
