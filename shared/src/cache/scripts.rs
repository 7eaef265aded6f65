//! The two Redis scripts that tell the caches a session ended, each one round trip that writes L2
//! and publishes the invalidation together. Both the revoke (write-through) and the fan-out run
//! them; what they keep decides which of the two told the caches first.
//!
//! The scripts read the payload of a sealed value (`<tag>.<payload>`) without checking its tag:
//! Redis does not hold the MAC key. What they keep, the caller opens and checks; a value that
//! fails, it overwrites.

/// KEYS: the token's key, the user's watermark key. ARGV: the sealed marker, its TTL (ms), the
/// channel, the sealed message.
///
/// Writes the revoked marker unless one is there already, publishes, and returns the marker kept
/// (or nil) and the user's watermark entry (or nil).
pub(super) const MARK_TOKEN: &str = r#"
local cur = redis.call('GET', KEYS[1])
local kept = cur and string.find(cur, '^[^.]*%.r|')
if not kept then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return {kept and cur or false, redis.call('GET', KEYS[2]) or false}
"#;

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

/// KEYS: the user's watermark key. ARGV: the sealed entry, its `before_ms`, its kept session ('' for
/// none), its TTL (ms), the channel, the sealed message.
///
/// Writes the watermark unless the one there covers at least as much (a later `before_ms`, or the
/// same with no kept session or the same one): a fan-out that hears an older revoke-all after a
/// newer one's write-through never narrows L2. Publishes either way. Returns the entry kept (or nil
/// when it wrote).
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
if not keep_cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
if keep_cur then
  return cur
end
return false
"#;
