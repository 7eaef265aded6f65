//! Telling the caches: a revoked token's marker, or a user's watermark, in L2, and the
//! invalidation to every validator, in one round trip.

use redis::AsyncCommands;

use super::{forged, scripts, token_key, watermark_key, wire, Invalidation, Teller, TokenCache, Told, CHANNEL};
use crate::domain::{SessionId, UserId};
use crate::model::Watermark;

impl TokenCache {
    /// Tells the caches a token is revoked: a revoked marker in L2 (unless one is there) and the
    /// invalidation to every validator, in one round trip. `by` is who is telling. Returns who
    /// told them first: an earlier marker's, or a write-through watermark's that covers the session
    /// (`covered`: its sign-in time and id), or this call's.
    pub async fn invalidate_token(
        &self,
        user: &UserId,
        hash: &str,
        covered: Option<(i64, SessionId)>,
        by: Teller,
        now_ms: i64,
    ) -> Result<Told, redis::RedisError> {
        let told = Told { at_ms: now_ms, by };
        self.apply(&Invalidation::Token(hash.to_owned()));
        let Some(redis) = &self.redis else { return Ok(told) };
        let (key, wm_key) = (token_key(user, hash), watermark_key(user));
        let marker = redis.mac.seal(&key, &wire::encode_marker(told));
        let message = redis.mac.seal(CHANNEL, &Invalidation::Token(hash.to_owned()).encode());
        let ttl_ms = self.window_ttl_ms();
        let mut con = redis.con().await?;
        // One round trip: the script on the user's slot, then the message on the channel.
        let mut calls = redis::pipe();
        calls.cmd("EVAL").arg(scripts::MARK_TOKEN).arg(2).arg(&key).arg(&wm_key).arg(&marker).arg(ttl_ms);
        calls.cmd("PUBLISH").arg(CHANNEL).arg(&message).ignore();
        let ((kept, watermark),): ((String, String),) = redis.bounded(calls.query_async(&mut con)).await?;
        let (kept, watermark) = (Some(kept).filter(|v| !v.is_empty()), Some(watermark).filter(|v| !v.is_empty()));
        if let Some(raw) = kept {
            match redis.mac.open(&key, &raw).and_then(wire::decode_marker) {
                Some(earlier) => return Ok(earlier),
                None => {
                    // Planted by someone without the key: replace it with ours.
                    forged("L2 revoked marker");
                    redis.bounded(con.pset_ex::<_, _, ()>(&key, marker, ttl_ms)).await?;
                }
            }
        }
        let by_watermark = covered.and_then(|(signed_in_at, session)| {
            let (watermark, told) = wire::decode_watermark(redis.mac.open(&wm_key, watermark.as_deref()?)?)?;
            let told = told.filter(|t| t.by == Teller::WriteThrough)?;
            watermark.covers_at(signed_in_at, session).then_some(told)
        });
        Ok(by_watermark.unwrap_or(told))
    }

    /// Tells the caches about a revoke-all: L2 and every validator honour the watermark at once,
    /// before the sweep's per-session records arrive. L2 keeps it for one window, and never trades
    /// it for one that covers less. Returns who told them first (as `invalidate_token`).
    pub async fn invalidate_user(
        &self,
        user: &UserId,
        watermark: Watermark,
        by: Teller,
        now_ms: i64,
    ) -> Result<Told, redis::RedisError> {
        let told = Told { at_ms: now_ms, by };
        let inv = Invalidation::User { user: user.clone(), watermark };
        self.apply(&inv);
        let Some(redis) = &self.redis else { return Ok(told) };
        let key = watermark_key(user);
        let entry = redis.mac.seal(&key, &wire::encode_watermark(user, watermark, told));
        let message = redis.mac.seal(CHANNEL, &inv.encode());
        let ttl_ms = self.window_ttl_ms();
        let keep = watermark.keep.map(|k| k.to_string()).unwrap_or_default();
        let mut con = redis.con().await?;
        let mut calls = redis::pipe();
        calls
            .cmd("EVAL")
            .arg(scripts::MARK_WATERMARK)
            .arg(1)
            .arg(&key)
            .arg(&entry)
            .arg(watermark.before_ms)
            .arg(keep)
            .arg(ttl_ms);
        calls.cmd("PUBLISH").arg(CHANNEL).arg(&message).ignore();
        let (raw,): (String,) = redis.bounded(calls.query_async(&mut con)).await?;
        if raw.is_empty() {
            return Ok(told);
        }
        match redis.mac.open(&key, &raw).and_then(wire::decode_watermark) {
            // The one kept covers this one: whoever wrote it told the caches at least this much.
            Some((_, Some(earlier))) => Ok(earlier),
            Some((_, None)) => Ok(told),
            None => {
                forged("L2 watermark");
                redis.bounded(con.pset_ex::<_, _, ()>(&key, entry, ttl_ms)).await?;
                Ok(told)
            }
        }
    }
}
