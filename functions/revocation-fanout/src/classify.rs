//! What a stream record means for revocation. Everything else is ignored.

use active_sessions::domain::{SessionId, UserId};
use active_sessions::keys;
use active_sessions::model::{Actor, Profile, Revocation, RevokeReason, Session, SessionStatus, Watermark};
use aws_lambda_events::event::dynamodb::EventRecord;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A session went from active to revoked.
    SessionRevoked {
        user: UserId,
        session: SessionId,
        token_hash: String,
        signed_in_at: i64,
        revoked_at_ms: i64,
        reason: Option<RevokeReason>,
    },
    /// A revoke-all watermark was written or raised: sweep the sessions it covers, then mark its
    /// audit event (`event`; absent on watermarks written before events were named) swept.
    Watermark { user: UserId, watermark: Watermark, revocation: Revocation, event: Option<ulid::Ulid> },
    /// TTL deleted a session that was still active: it expired. The session as it was.
    SessionExpired { session: Box<Session> },
    /// Nothing to do (sign-ins, trusted-flag changes, tombstone clean-up, audit events, ...).
    Ignore,
}

/// A record this consumer can't read: it is reported as failed, never silently dropped.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("record has no sort key")]
    NoKey,
    #[error("image is malformed")]
    Image(#[from] serde_dynamo::Error),
    #[error("watermark record is missing {0}")]
    Watermark(&'static str),
}

/// The watermark's who/why, written beside it by revoke-all.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WatermarkMeta {
    watermark_at: i64,
    watermark_by: String,
    watermark_reason: RevokeReason,
    #[serde(default)]
    watermark_event: Option<String>,
}

fn string_attr(item: &serde_dynamo::Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(serde_dynamo::AttributeValue::S(s)) => Some(s.clone()),
        _ => None,
    }
}

/// `user:<id>` / `admin:<id>` / `system` back into actor and id.
fn actor_of(by: &str) -> (Actor, String) {
    match by.split_once(':') {
        Some(("admin", id)) => (Actor::Admin, id.to_owned()),
        Some(("user", id)) => (Actor::User, id.to_owned()),
        _ => (Actor::System, "system".to_owned()),
    }
}

fn is_ttl_delete(record: &EventRecord) -> bool {
    record.user_identity.as_ref().is_some_and(|u| u.type_ == "Service" && u.principal_id == "dynamodb.amazonaws.com")
}

pub fn classify(record: &EventRecord) -> Result<Action, ClassifyError> {
    let change = &record.change;
    let pk = string_attr(&change.keys, keys::PK).ok_or(ClassifyError::NoKey)?;
    let sk = string_attr(&change.keys, keys::SK).ok_or(ClassifyError::NoKey)?;
    let Some(user) = keys::user_id_from_pk(&pk) else { return Ok(Action::Ignore) };

    if sk == keys::PROFILE_SK {
        if record.event_name == "REMOVE" {
            return Ok(Action::Ignore);
        }
        let new: Profile = serde_dynamo::from_item(change.new_image.clone())?;
        let old: Profile = if change.old_image.is_empty() {
            Profile::default()
        } else {
            serde_dynamo::from_item(change.old_image.clone())?
        };
        let Some(watermark) = new.watermark else { return Ok(Action::Ignore) };
        if old.watermark.is_some_and(|w| w.covers_all_of(&watermark)) {
            return Ok(Action::Ignore); // profile edits that leave the watermark as it was
        }
        let meta: WatermarkMeta = serde_dynamo::from_item(change.new_image.clone())
            .map_err(|_| ClassifyError::Watermark("WatermarkAt/By/Reason"))?;
        let (actor, actor_id) = actor_of(&meta.watermark_by);
        let revocation =
            Revocation { at_ms: meta.watermark_at, actor, actor_id, reason: meta.watermark_reason, source_ip: None };
        let event = match meta.watermark_event {
            None => None,
            Some(raw) => Some(ulid::Ulid::from_string(&raw).map_err(|_| ClassifyError::Watermark("WatermarkEvent"))?),
        };
        return Ok(Action::Watermark { user, watermark, revocation, event });
    }

    let Some(session) = keys::session_id_from_sk(&sk) else { return Ok(Action::Ignore) };
    match record.event_name.as_str() {
        "MODIFY" => {
            let old: Session = serde_dynamo::from_item(change.old_image.clone())?;
            let new: Session = serde_dynamo::from_item(change.new_image.clone())?;
            if old.status == SessionStatus::Active && new.status == SessionStatus::Revoked {
                let revoked_at_ms = new.revoked_at.unwrap_or(0);
                return Ok(Action::SessionRevoked {
                    user,
                    session,
                    token_hash: new.token_hash,
                    signed_in_at: new.signed_in_at,
                    revoked_at_ms,
                    reason: new.revoke_reason,
                });
            }
            Ok(Action::Ignore)
        }
        "REMOVE" if is_ttl_delete(record) => {
            let old: Session = serde_dynamo::from_item(change.old_image.clone())?;
            // A tombstone's removal is clean-up; only an active session's removal is an expiry.
            Ok(if old.status == SessionStatus::Active && old.user_id == user && old.session_id == session {
                Action::SessionExpired { session: Box::new(old) }
            } else {
                Action::Ignore
            })
        }
        _ => Ok(Action::Ignore),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::dynamodb::Event;

    fn fixture(name: &str) -> Event {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("event JSON")
    }

    fn only(name: &str) -> Result<Action, ClassifyError> {
        let event = fixture(name);
        assert_eq!(event.records.len(), 1);
        classify(&event.records[0])
    }

    #[test]
    fn a_soft_revoke_is_a_session_revocation() {
        match only("modify-revoke.json").unwrap() {
            Action::SessionRevoked { user, session, token_hash, revoked_at_ms, reason, .. } => {
                assert_eq!(token_hash, "ab".repeat(32));
                assert_eq!(user.as_str(), "alice");
                assert_eq!(session.to_string(), "01M8CPVF8A7ZAP09JVSBBWZEQF");
                assert_eq!(revoked_at_ms, 1_795_730_000_000);
                assert_eq!(reason, Some(RevokeReason::UserLogout));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_raised_watermark_is_a_sweep() {
        match only("modify-watermark.json").unwrap() {
            Action::Watermark { user, watermark, revocation, event } => {
                assert_eq!(event, None, "the fixture predates named events");
                assert_eq!(user.as_str(), "alice");
                assert_eq!(watermark.before_ms, 1_795_730_000_500);
                assert_eq!(watermark.keep.map(|k| k.to_string()).as_deref(), Some("01M8CPVF8A7ZAP09JVSBBWZEQF"));
                assert_eq!(revocation.actor, Actor::Admin);
                assert_eq!(revocation.actor_id, "ada");
                assert_eq!(revocation.reason, RevokeReason::AdminOffboard);
            }
            other => panic!("{other:?}"),
        }
    }

    /// A revoke-all names its audit event on the watermark, so that its sweep can mark the event
    /// swept; a malformed name is a poison record, not a sweep without its event.
    #[test]
    fn a_watermark_names_its_event() {
        let mut event = fixture("modify-watermark.json");
        let mut raw = serde_json::to_value(&event.records[0]).unwrap();
        let id = ulid::Ulid::from_string("01M8CPVF8A7ZAP09JVSBBWZEQF").unwrap();
        raw["dynamodb"]["NewImage"]["WatermarkEvent"] = serde_json::json!({ "S": id.to_string() });
        event.records[0] = serde_json::from_value(raw.clone()).unwrap();
        match classify(&event.records[0]).unwrap() {
            Action::Watermark { event, .. } => assert_eq!(event, Some(id)),
            other => panic!("{other:?}"),
        }
        raw["dynamodb"]["NewImage"]["WatermarkEvent"] = serde_json::json!({ "S": "not-a-ulid" });
        event.records[0] = serde_json::from_value(raw).unwrap();
        assert!(classify(&event.records[0]).is_err());
    }

    #[test]
    fn the_first_watermark_arrives_as_an_insert() {
        assert!(matches!(only("insert-watermark.json").unwrap(), Action::Watermark { .. }));
    }

    #[test]
    fn a_ttl_delete_of_an_active_session_is_an_expiry() {
        match only("remove-ttl.json").unwrap() {
            Action::SessionExpired { session } => {
                assert_eq!(session.user_id.as_str(), "alice");
                assert_eq!(session.session_id.to_string(), "01M8CPVF8A7ZAP09JVSBBWZEQF");
                assert_eq!(session.device.label, "Chrome on macOS");
                assert_eq!(session.expires_at, 1_798_312_000);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unrelated_records_are_ignored() {
        for name in ["insert-session.json", "modify-trusted.json", "remove-user-delete.json", "insert-audit.json"] {
            assert_eq!(only(name).unwrap(), Action::Ignore, "{name}");
        }
    }

    #[test]
    fn a_poison_record_is_an_error_not_a_panic() {
        assert!(only("modify-poison.json").is_err());
    }
}
