//! Token validation through the caches: what they say (`TokenCache::lookup`), else DynamoDB,
//! whose answer fills them.

use std::sync::Arc;

use super::authenticate;
use crate::cache::{CachedSession, Lookup, TokenCache};
use crate::error::ServiceError;
use crate::store::SessionsStore;
use crate::token::SessionToken;

/// Validates a token: L1, then L2 (`TokenCache::lookup` says how each may answer), then DynamoDB,
/// one strongly consistent read honouring the watermark, which fills both levels.
pub async fn validate<S: SessionsStore>(
    store: &S,
    cache: &TokenCache,
    token: &SessionToken,
    now_ms: i64,
) -> Result<Arc<CachedSession>, ServiceError> {
    match cache.lookup(token, now_ms).await {
        Lookup::Revoked => Err(ServiceError::InvalidToken),
        Lookup::Valid(entry) => Ok(entry),
        Lookup::Unknown => {
            let principal = authenticate(store, token, now_ms).await?;
            let entry = CachedSession::of(&principal.session, now_ms, cache.window_ms());
            cache.fill(token.hash().as_str(), &entry, now_ms).await;
            Ok(Arc::new(entry))
        }
    }
}
