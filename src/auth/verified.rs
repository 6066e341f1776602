//! Tokens already verified, so that a client sending the same token on every request (an API
//! key, a session token, a signed URL fetched again) pays for the signature check and the
//! claims' parsing once.
//!
//! Only tokens signed with the server's own HS256 secret are kept (that key never changes while
//! the process runs; keys from a JWKS may), and an entry is used only while the token's `exp`
//! (with the same leeway as a full check) has not passed; its `nbf` had passed when it was
//! verified. A token is verified in full the first time and whenever it has fallen out of the
//! cache, which is emptied when full. Callers check the claims as they would after a full
//! verification.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// Distinct tokens kept at most (a few hundred bytes each).
const CAPACITY: usize = 1024;

#[derive(Debug, Default)]
pub(super) struct VerifiedTokens {
    entries: Mutex<HashMap<Box<str>, Entry>>,
}

#[derive(Debug)]
struct Entry {
    claims: Map<String, Value>,
    /// Last second (Unix time) at which the token is still valid; `None` without `exp`.
    valid_until: Option<u64>,
}

impl VerifiedTokens {
    /// The claims `token` was found to carry, if it is cached and not expired.
    pub(super) fn get(&self, token: &str) -> Option<Map<String, Value>> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(token)?;
        match entry.valid_until {
            Some(until) if now() > until => None,
            _ => Some(entry.claims.clone()),
        }
    }

    /// Keeps `claims`, which `token` (verified with the server's own secret) carries.
    pub(super) fn put(&self, token: &str, claims: &Map<String, Value>, leeway: u64) {
        let valid_until = match claims.get("exp") {
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
                claims: claims.clone(),
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

    fn identity(exp: Option<u64>) -> Map<String, Value> {
        let mut claims = Map::new();
        claims.insert("role".into(), "anon".into());
        if let Some(exp) = exp {
            claims.insert("exp".into(), exp.into());
        }
        claims
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
