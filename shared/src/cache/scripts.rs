//! The Redis scripts that write L2 where a revoked marker may be: each runs on one user's slot
//! (its keys share the user's hash tag), so it works on a cluster (ElastiCache Serverless) as on
//! one node. The invalidation message is published beside the script, in the same round trip.
//!
//! The scripts read the payload of a sealed value (`<tag>.<payload>`) without checking its tag:
//! Redis does not hold the MAC key. What they keep, the caller opens and checks; a value that
//! fails, it overwrites. They answer `''` for "nothing" (never `false`, which RESP3 would turn
//! into a boolean).

/// KEYS: the token's key. ARGV: the sealed entry, its TTL (ms).
///
/// Caches a valid entry (a new one, or one that learnt an app) unless a revoked marker is there:
/// a validation whose read began before the revoke never lands "valid" after it. Returns 1 when
/// it wrote.
pub(super) const FILL: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur and string.find(cur, '^[^.]*%.r|') then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#;

/// KEYS: the token's key, the user's watermark key. ARGV: the sealed marker, its TTL (ms).
///
/// Writes the revoked marker unless one is there already. Returns the marker kept (or '') and
/// the user's watermark entry (or '').
pub(super) const MARK_TOKEN: &str = r#"
local cur = redis.call('GET', KEYS[1])
local kept = cur and string.find(cur, '^[^.]*%.r|')
if not kept then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return {kept and cur or '', redis.call('GET', KEYS[2]) or ''}
"#;

/// KEYS: the user's watermark key. ARGV: the sealed entry, its `before_ms`, its kept session ('' for
/// none), its TTL (ms).
///
/// Writes the watermark unless the one there covers at least as much: a later `before_ms`, or the
/// same with no kept session or the same one. Comparing `before_ms` suffices because a user's
/// watermarks form one growing chain: each one written to DynamoDB is the union of the one in
/// force and the new one (`Watermark::union`, swapped in conditionally), and a kept session is
/// always one that no earlier watermark covered. So a fan-out that hears an older revoke-all after
/// a newer one's write-through never narrows L2. Returns the entry kept (or '' when it wrote).
pub(super) const MARK_WATERMARK: &str = r#"
local cur = redis.call('GET', KEYS[1])
local keep_cur = false
if cur then
  local before, keep = string.match(cur, '^[^.]*%.u|[^|]*|(%d+)|([^|]*)')
  if before then
    local b, nb = tonumber(before), tonumber(ARGV[2])
    keep_cur = b > nb or (b == nb and (keep == '' or keep == ARGV[3]))
  end
end
if keep_cur then
  return cur
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
return ''
"#;
