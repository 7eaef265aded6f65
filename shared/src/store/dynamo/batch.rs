//! One strongly consistent BatchGetItem, with the retry of unprocessed keys.

use std::time::Duration;

use aws_sdk_dynamodb::types::KeysAndAttributes;

use crate::keys;
use crate::model::Session;
use crate::store::{ReadResult, ReadSet, StoreError};

use super::codec::{from_item, membership_key, pk_of, profile_key, session_key, sk_of, MembershipItem};
use super::error::{build_error, send_error};
use super::{DynamoStore, Item, UNPROCESSED_RETRIES};

impl DynamoStore {
    /// Sessions, profiles and memberships in one strongly consistent read (unprocessed keys retried).
    pub(super) async fn batch_read(&self, set: &ReadSet) -> Result<ReadResult, StoreError> {
        let mut wanted: Vec<Item> = Vec::new();
        let mut push = |k: Item| {
            if !wanted.contains(&k) {
                wanted.push(k);
            }
        };
        set.sessions.iter().for_each(|(u, id)| push(session_key(u, *id)));
        set.profiles.iter().for_each(|u| push(profile_key(u)));
        set.memberships.iter().for_each(|(w, u)| push(membership_key(w, u)));
        let mut result = ReadResult::default();
        if wanted.is_empty() {
            return Ok(result);
        }
        let mut pending =
            KeysAndAttributes::builder().set_keys(Some(wanted)).consistent_read(true).build().map_err(build_error)?;
        for attempt in 0..=UNPROCESSED_RETRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
            }
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, pending.clone())
                .send()
                .await
                .map_err(send_error)?;
            for item in out.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default() {
                let (pk, sk) =
                    (pk_of(&item).unwrap_or_default().to_owned(), sk_of(&item).unwrap_or_default().to_owned());
                if sk == keys::PROFILE_SK {
                    if let Some(user) = keys::user_id_from_pk(&pk) {
                        result.profiles.insert(user, from_item(item)?);
                    }
                } else if keys::session_id_from_sk(&sk).is_some() {
                    let session: Session = from_item(item)?;
                    result.sessions.insert((session.user_id.clone(), session.session_id), session);
                } else {
                    let m: MembershipItem = from_item(item)?;
                    result.memberships.insert((m.workspace_id, m.user_id), m.role);
                }
            }
            match out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                Some(rest) if !rest.keys.is_empty() => pending = rest,
                _ => return Ok(result),
            }
        }
        Err(StoreError::Throttled("BatchGetItem left keys unprocessed after retries".into()))
    }
}
