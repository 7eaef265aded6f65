//! Update and condition expressions: the soft revoke, the watermark swap and its guard.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, Update};

use crate::domain::{SessionId, UserId};
use crate::model::{AuditEvent, Revocation, Session, SessionStatus, Watermark};
use crate::store::{RevokeOutcome, StoreError};

use super::codec::{attr, audit_item, from_item, key, n, profile_key, s, session_key};
use super::error::build_error;
use super::{Item, TYPE_CLAIM, TYPE_PROFILE};

/// A claim on a name (an (issuer, audience) pair, a user identifier, a signal's `jti`) as a
/// transactional Put: only where none is, or, if `rewrite`, where the same owner (`owner`: its
/// attribute and value) holds it already. `expires_at`: when TTL removes it (epoch seconds).
pub(super) fn claim_put(
    table: &str,
    pk: String,
    owner: (&str, &str),
    rewrite: bool,
    expires_at: Option<i64>,
) -> Result<Put, StoreError> {
    let (owner_attr, owner_value) = owner;
    let mut item = key(pk, crate::keys::CLAIM_SK.to_owned());
    item.insert("Type".into(), s(TYPE_CLAIM));
    item.insert(owner_attr.into(), s(owner_value));
    if let Some(at) = expires_at {
        item.insert(crate::keys::EXPIRES_AT.into(), n(at));
    }
    let put = Put::builder().table_name(table).set_item(Some(item));
    let put = if rewrite {
        put.condition_expression("attribute_not_exists(PK) OR #owner = :owner")
            .expression_attribute_names("#owner", owner_attr)
            .expression_attribute_values(":owner", s(owner_value))
    } else {
        put.condition_expression("attribute_not_exists(PK)")
    };
    put.build().map_err(build_error)
}

/// An audit event as a transactional Put that never overwrites one.
pub(super) fn audit_put(table: &str, event: &AuditEvent) -> Result<Put, StoreError> {
    Put::builder()
        .table_name(table)
        .set_item(Some(audit_item(event)?))
        .condition_expression("attribute_not_exists(PK)")
        .build()
        .map_err(build_error)
}
/// The soft revoke as an update: expression, names and values (shared by the plain UpdateItem
/// and its transactional form).
pub(super) struct RevokeUpdate {
    pub(super) key: Item,
    pub(super) names: HashMap<String, String>,
    pub(super) values: HashMap<String, AttributeValue>,
}

pub(super) const REVOKE_SET: &str =
    "SET #status = :revoked, RevokedAt = :at, RevokedBy = :by, RevokeReason = :reason, ExpiresAt = :tombstone";
/// The condition of every write to a session but its creation: it exists, is active and has not
/// expired (revoke, trust, last activity, apps).
pub(super) const ACTIVE_UNEXPIRED: &str = "attribute_exists(PK) AND #status = :active AND ExpiresAt > :now";

impl RevokeUpdate {
    pub(super) fn new(
        user: &UserId,
        session: SessionId,
        revocation: &Revocation,
        tombstone_secs: i64,
    ) -> Result<Self, StoreError> {
        let now_s = revocation.at_ms.div_euclid(1000);
        let values = HashMap::from([
            (":revoked".to_owned(), attr(SessionStatus::Revoked)?),
            (":active".to_owned(), attr(SessionStatus::Active)?),
            (":at".to_owned(), n(revocation.at_ms)),
            (":by".to_owned(), s(revocation.by())),
            (":reason".to_owned(), attr(revocation.reason)?),
            (":tombstone".to_owned(), n(now_s + tombstone_secs)),
            (":now".to_owned(), n(now_s)),
        ]);
        Ok(Self {
            key: session_key(user, session),
            names: HashMap::from([("#status".to_owned(), "Status".to_owned())]),
            values,
        })
    }

    /// What a failed condition means, given the item as it was.
    pub(super) fn outcome_of_failure(old: Option<Item>) -> Result<RevokeOutcome, StoreError> {
        match old {
            None => Ok(RevokeOutcome::NotFound),
            Some(item) => {
                let old: Session = from_item(item)?;
                Ok(if old.status == SessionStatus::Revoked {
                    RevokeOutcome::AlreadyRevoked
                } else {
                    RevokeOutcome::NotFound
                })
            }
        }
    }
}

/// The watermark swap as an update on the profile: `new` in place of `expected`, and only if the
/// watermark in force is still `expected` (compare-and-set). Beside it, who wrote it, when, why,
/// and the audit event it belongs to (which the sweep marks done).
pub(super) fn watermark_swap(
    table: &str,
    user: &UserId,
    expected: Option<Watermark>,
    new: Watermark,
    revocation: &Revocation,
    event_id: ulid::Ulid,
) -> Result<Update, StoreError> {
    let keep_clause = if new.keep.is_some() { ", RevokeKeep = :keep" } else { " REMOVE RevokeKeep" };
    let mut values = HashMap::from([
        (":type".to_owned(), s(TYPE_PROFILE)),
        (":before".to_owned(), n(new.before_ms)),
        (":at".to_owned(), n(revocation.at_ms)),
        (":by".to_owned(), s(revocation.by())),
        (":reason".to_owned(), attr(revocation.reason)?),
        (":event".to_owned(), s(event_id.to_string())),
    ]);
    if let Some(keep) = new.keep {
        values.insert(":keep".into(), s(keep.to_string()));
    }
    let condition = match expected {
        None => "attribute_not_exists(RevokedBefore)".to_owned(),
        Some(current) => {
            values.insert(":cur_before".into(), n(current.before_ms));
            match current.keep {
                Some(keep) => {
                    values.insert(":cur_keep".into(), s(keep.to_string()));
                    "RevokedBefore = :cur_before AND RevokeKeep = :cur_keep".to_owned()
                }
                None => "RevokedBefore = :cur_before AND attribute_not_exists(RevokeKeep)".to_owned(),
            }
        }
    };
    Update::builder()
        .table_name(table)
        .set_key(Some(profile_key(user)))
        .update_expression(format!(
            "SET #type = :type, RevokedBefore = :before, WatermarkAt = :at, WatermarkBy = :by, WatermarkReason = :reason, WatermarkEvent = :event{keep_clause}"
        ))
        .condition_expression(condition)
        .expression_attribute_names("#type", "Type")
        .set_expression_attribute_values(Some(values))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(build_error)
}

/// The guard of a revocation on its own: the user's watermark (if any) does not cover the session.
pub(super) fn not_covered_by_watermark(
    table: &str,
    user: &UserId,
    session: SessionId,
    signed_in_at: i64,
) -> Result<ConditionCheck, StoreError> {
    ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(profile_key(user)))
        .condition_expression(
            "attribute_not_exists(RevokedBefore) OR RevokedBefore < :signed_in OR RevokeKeep = :session",
        )
        .expression_attribute_values(":signed_in", n(signed_in_at))
        .expression_attribute_values(":session", s(session.to_string()))
        .build()
        .map_err(build_error)
}
