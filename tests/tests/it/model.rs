//! A model-based, concurrent test of the revocation state machine.
//!
//! proptest generates a sequence of steps; each step is one to three operations (sign-in,
//! revoke-one, revoke-all, revoke-others, admin revoke-one, admin offboard, trust and untrust,
//! the fan-out's sweep, time passing for TTL expiry) that run as interleaved concurrent tasks,
//! first on `MemoryStore` (with seeded yields between store calls, so the interleavings vary) and
//! then on DynamoDB Local (a fresh table per case, real concurrency). After every step it checks:
//!
//! - (i) a session that any completed revocation covered never validates again, and every other
//!   unexpired session still does;
//! - (ii) a revocation that changed something writes exactly one audit event, a repeat writes
//!   none, and no session is in two per-session events;
//! - (iii) the listing equals the model's active set, with the current session first;
//! - (iv) the number of active sessions is above the cap by at most the documented bound (and the
//!   newest sign-in of a step is never the one evicted): after N
//!   sign-ins at once, N - 1 (a sign-in does not see the sessions written after it read), until
//!   the next sign-in on its own, which restores the cap exactly.
//!
//! `MODEL_CASES` sets the number of cases (default 48 in memory, 16 on DynamoDB Local; thousands
//! run with e.g. `MODEL_CASES=5000`), and `MODEL_SEED` fixes proptest's seed to replay a run.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use active_sessions::domain::{AppId, ClientKind, PageSize, Role, SessionId, UserId, WorkspaceId};
use active_sessions::model::{Actor, AuditScope, Revocation, RevokeReason};
use active_sessions::service::{
    self, Caller, ListQuery, NewSession, RevokeScope, SessionPatch, Subject, UserProfileInput,
};
use active_sessions::store::SessionsStore;
use active_sessions::store::{MemoryStore, ReadSet};
use active_sessions::testing::ChaosStore;
use active_sessions::token::SessionToken;
use active_sessions::{Policy, ServiceError, SessionStore};
use integration_tests::TestTable;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

const CAP: u32 = 4;
const MEMBER: &str = "member";
const ADMIN: &str = "admin";
const WORKSPACE: &str = "acme";

#[derive(Debug, Clone)]
enum Op {
    SignIn {
        short: bool,
    },
    RevokeOne {
        caller: usize,
        target: usize,
    },
    RevokeAll {
        caller: usize,
    },
    RevokeOthers {
        caller: usize,
    },
    AdminRevokeOne {
        target: usize,
    },
    AdminOffboard,
    Trust {
        caller: usize,
        target: usize,
        trusted: bool,
    },
    /// Introspection marks a session active (last activity now), which reorders evictions.
    Touch {
        target: usize,
    },
    Sweep,
    /// Time passes: 61 s, so sessions signed in with the shortest lifetime (60 s) expire.
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    let i = 0usize..8;
    prop_oneof![
        3 => any::<bool>().prop_map(|short| Op::SignIn { short }),
        2 => (i.clone(), i.clone()).prop_map(|(caller, target)| Op::RevokeOne { caller, target }),
        1 => i.clone().prop_map(|caller| Op::RevokeAll { caller }),
        2 => i.clone().prop_map(|caller| Op::RevokeOthers { caller }),
        1 => i.clone().prop_map(|target| Op::AdminRevokeOne { target }),
        1 => Just(Op::AdminOffboard),
        1 => (i.clone(), i.clone(), any::<bool>()).prop_map(|(caller, target, trusted)| Op::Trust { caller, target, trusted }),
        2 => i.prop_map(|target| Op::Touch { target }),
        2 => Just(Op::Sweep),
        1 => Just(Op::Expire),
    ]
}

/// One step: operations that run at once, each with the seed of its interleaving.
type Step = Vec<(Op, u64)>;

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(prop::collection::vec((op(), any::<u64>()), 1..=3), 1..=14)
}

#[derive(Debug, Clone)]
struct ModelSession {
    id: SessionId,
    token: String,
    signed_in_at: i64,
    expires_at_ms: i64,
    /// A completed revocation covered it.
    covered: bool,
    /// A revoke-all ran while this session was being signed in, with a time after its sign-in:
    /// whether it covered the session depends on which write came first (a revoke-all that finds
    /// nothing active to revoke writes nothing). The step's end learns which, once; from then on
    /// it must hold.
    maybe: bool,
}

impl ModelSession {
    fn active_at(&self, now: i64) -> bool {
        !self.covered && now < self.expires_at_ms
    }
}

/// What a completed operation covered, applied to the model once its step is over.
#[derive(Debug)]
enum Effect {
    None,
    Created(ModelSession),
    One(SessionId),
    /// A revoke-all at `at`; an admin's is written even when it covers nothing active.
    Before {
        at: i64,
        keep: Option<SessionId>,
        admin: bool,
    },
    Trusted,
}

struct Fixture {
    policy: Policy,
    member: UserId,
    admin_token: SessionToken,
    sessions: Vec<ModelSession>,
    now: i64,
    seen_events: HashSet<ulid::Ulid>,
    per_session_events: HashSet<SessionId>,
    /// How far above the cap the last step with sign-ins may have left the account.
    overshoot: usize,
}

fn caller(token: &str) -> Caller {
    Caller { token: SessionToken::parse(token).expect("token"), source_ip: None }
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

async fn setup<S: SessionStore>(store: &S) -> Fixture {
    let ws = WorkspaceId::parse(WORKSPACE).unwrap();
    for (user, role) in [(MEMBER, Role::Member), (ADMIN, Role::Admin)] {
        let input = UserProfileInput {
            workspace_id: Some(ws.clone()),
            role: Some(role),
            sso_linked: Some(false),
            email: None,
            idp_subject: None,
        };
        service::put_user(store, &UserId::parse(user).unwrap(), input).await.expect("put_user");
    }
    let policy = Policy { max_sessions: CAP, ..Policy::default() };
    let now = service::now_ms();
    let admin = service::create_session(store, &policy, new_session(ADMIN, false), now - 1000).await.expect("admin");
    Fixture {
        policy,
        member: UserId::parse(MEMBER).unwrap(),
        admin_token: SessionToken::parse(&admin.token).unwrap(),
        sessions: Vec::new(),
        now,
        seen_events: HashSet::new(),
        per_session_events: HashSet::new(),
        overshoot: 0,
    }
}

fn new_session(user: &str, short: bool) -> NewSession {
    NewSession {
        user_id: UserId::parse(user).unwrap(),
        apps: vec![AppId::parse("chatgpt").unwrap()],
        client: ClientKind::Browser,
        user_agent: active_sessions::testing::CHROME_MAC.into(),
        ip: "203.0.113.9".into(),
        location: None,
        trusted: None,
        ttl_seconds: Some(if short { 60 } else { 3600 }),
    }
}

/// Runs one operation at `now` against the shared store (through its own interleaving wrapper).
async fn run_op<S: SessionStore>(
    store: &ChaosStore<S>,
    f: &Fixture,
    snapshot: &[ModelSession],
    op: &Op,
    now: i64,
) -> Result<Effect, ServiceError> {
    let pick = |i: usize| snapshot.get(i % snapshot.len().max(1));
    let admin = Caller { token: f.admin_token.clone(), source_ip: None };
    let member = Subject::Member(f.member.clone());
    match op {
        Op::SignIn { short } => {
            let created = service::create_session(store, &f.policy, new_session(MEMBER, *short), now).await?;
            Ok(Effect::Created(ModelSession {
                id: created.session_id,
                token: created.token,
                signed_in_at: now,
                expires_at_ms: now + if *short { 60_000 } else { 3_600_000 },
                covered: false,
                maybe: false,
            }))
        }
        Op::RevokeOne { caller: c, target } => {
            let (Some(c), Some(t)) = (pick(*c), pick(*target)) else { return Ok(Effect::None) };
            service::revoke_session(store, &f.policy, &caller(&c.token), &Subject::Own, t.id, now).await?;
            Ok(Effect::One(t.id))
        }
        Op::RevokeAll { caller: c } | Op::RevokeOthers { caller: c } => {
            let Some(c) = pick(*c) else { return Ok(Effect::None) };
            let others = matches!(op, Op::RevokeOthers { .. });
            let scope = if others { RevokeScope::Others } else { RevokeScope::All };
            service::revoke_all(store, &f.policy, &caller(&c.token), &Subject::Own, scope, None, now).await?;
            Ok(Effect::Before { at: now, keep: others.then_some(c.id), admin: false })
        }
        Op::AdminRevokeOne { target } => {
            let Some(t) = pick(*target) else { return Ok(Effect::None) };
            service::revoke_session(store, &f.policy, &admin, &member, t.id, now).await?;
            Ok(Effect::One(t.id))
        }
        Op::AdminOffboard => {
            service::revoke_all(store, &f.policy, &admin, &member, RevokeScope::All, None, now).await?;
            Ok(Effect::Before { at: now, keep: None, admin: true })
        }
        Op::Trust { caller: c, target, trusted } => {
            let (Some(c), Some(t)) = (pick(*c), pick(*target)) else { return Ok(Effect::None) };
            let token = SessionToken::parse(&c.token).unwrap();
            let patch = SessionPatch { trusted: *trusted };
            service::set_trusted(store, &token, t.id, patch, now).await?;
            Ok(Effect::Trusted)
        }
        Op::Touch { target } => {
            let Some(t) = pick(*target) else { return Ok(Effect::None) };
            store.touch_session(&f.member, t.id, now, now).await?;
            Ok(Effect::None)
        }
        Op::Sweep => {
            let read = store.read(&ReadSet { profiles: vec![f.member.clone()], ..Default::default() }).await?;
            let Some(watermark) = read.profiles.get(&f.member).and_then(|p| p.watermark) else {
                return Ok(Effect::None);
            };
            let revocation = Revocation {
                at_ms: now,
                actor: Actor::System,
                actor_id: "system".into(),
                reason: RevokeReason::UserLogoutAll,
                source_ip: None,
            };
            service::sweep_watermark(store, &f.policy, &f.member, watermark, &revocation, None).await?;
            Ok(Effect::None)
        }
        Op::Expire => Ok(Effect::None),
    }
}

/// Whether an operation that completed is a revocation that must have written one audit event:
/// it covered a session that was active when it ran (or was signed in during its step, before it).
fn fresh(effect: &Effect, before: &[ModelSession], created: &[ModelSession], now: i64) -> bool {
    match effect {
        Effect::One(id) => before.iter().any(|s| s.id == *id && s.active_at(now)),
        Effect::Before { admin: true, .. } => true,
        Effect::Before { at, keep, .. } => before
            .iter()
            .filter(|s| s.active_at(now))
            .chain(created.iter().filter(|s| now < s.expires_at_ms))
            .any(|s| s.signed_in_at <= *at && Some(s.id) != *keep),
        _ => false,
    }
}

async fn run_step<S: SessionStore>(
    store: &Arc<S>,
    f: &mut Fixture,
    step: &Step,
    index: usize,
) -> Result<(), TestCaseError> {
    // Each operation of the step at its own millisecond, in the order generated; they run at once.
    let base = f.now + 10;
    let snapshot = f.sessions.clone();
    let wrappers: Vec<ChaosStore<S>> = step.iter().map(|(_, seed)| ChaosStore::new(Arc::clone(store), *seed)).collect();
    let runs = step.iter().zip(&wrappers).enumerate().map(|(i, ((op, _), w))| {
        let f = &*f;
        let snapshot = &snapshot;
        async move { run_op(w, f, snapshot, op, base + i as i64).await }
    });
    let results = futures::future::join_all(runs).await;
    f.now = base + step.len() as i64;

    let mut effects = Vec::new();
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(effect) => effects.push((base + i as i64, effect)),
            // Refusals the model allows: a caller revoked or expired meanwhile, its own session,
            // a target gone.
            Err(
                ServiceError::InvalidToken
                | ServiceError::NotFound
                | ServiceError::CurrentSession
                | ServiceError::Forbidden(_),
            ) => {}
            Err(e) => return Err(fail(format!("step {index}: {:?} failed: {e:?}", step[i].0))),
        }
    }
    let created: Vec<ModelSession> = effects
        .iter()
        .filter_map(|(_, e)| match e {
            Effect::Created(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    let fresh_ops = effects.iter().filter(|(at, e)| fresh(e, &snapshot, &created, *at)).count();
    let new_ids: HashSet<SessionId> = created.iter().map(|s| s.id).collect();
    let sign_ins = step.iter().filter(|(op, _)| matches!(op, Op::SignIn { .. })).count();
    if sign_ins > 0 {
        f.overshoot = sign_ins - 1;
    }
    f.sessions.extend(created);
    for (_, effect) in &effects {
        match effect {
            Effect::One(id) => f.sessions.iter_mut().filter(|s| s.id == *id).for_each(|s| s.covered = true),
            Effect::Before { at, keep, .. } => {
                for s in f.sessions.iter_mut().filter(|s| s.signed_in_at <= *at && Some(s.id) != *keep) {
                    if new_ids.contains(&s.id) {
                        s.maybe = true;
                    } else {
                        s.covered = true;
                    }
                }
            }
            _ => {}
        }
    }
    // Learn how the races of this step's sign-ins with its revoke-alls ended.
    for s in f.sessions.iter_mut().filter(|s| s.maybe) {
        s.maybe = false;
        if !s.covered && f.now < s.expires_at_ms {
            let token = SessionToken::parse(&s.token).unwrap();
            s.covered = service::authenticate(&**store, &token, f.now).await.is_err();
        }
    }
    if step.iter().any(|(op, _)| matches!(op, Op::Expire)) {
        f.now += 61_000;
    }

    // (ii) The audit trail: what this step added.
    let mut events = Vec::new();
    let mut after = None;
    loop {
        let page = store.query_audit(&f.member, after, 100).await.map_err(|e| fail(format!("{e:?}")))?;
        events.extend(page.events);
        match page.last_evaluated {
            Some(last) => after = Some(last),
            None => break,
        }
    }
    let new: Vec<_> = events.into_iter().filter(|e| f.seen_events.insert(e.event_id)).collect();
    let mut revocation_events = 0;
    for e in &new {
        if e.scope == AuditScope::Sessions {
            for id in &e.session_ids {
                if !f.per_session_events.insert(*id) {
                    return Err(fail(format!("step {index}: session {id} has a second audit event: {e:?}")));
                }
            }
        }
        if e.reason == RevokeReason::SessionLimit {
            // Evictions are the store's choice: the model learns them from their events. But the
            // newest sign-in of the step is never evicted (sign-ins never evict newer sessions).
            if let Some(newest) = new_ids.iter().max().filter(|n| e.session_ids.contains(n)) {
                return Err(fail(format!("step {index}: the step's newest sign-in {newest} was evicted")));
            }
            f.sessions.iter_mut().filter(|s| e.session_ids.contains(&s.id)).for_each(|s| s.covered = true);
        } else {
            revocation_events += 1;
        }
    }
    if step.len() == 1 && revocation_events != fresh_ops {
        return Err(fail(format!(
            "step {index}: {:?} wrote {revocation_events} audit event(s), expected {fresh_ops}",
            step[0].0
        )));
    }
    if revocation_events > fresh_ops {
        return Err(fail(format!("step {index}: {revocation_events} audit events for {fresh_ops} revocations")));
    }

    check(store, f, index).await
}

async fn check<S: SessionStore>(store: &Arc<S>, f: &Fixture, index: usize) -> Result<(), TestCaseError> {
    let now = f.now;
    // (i) Validation agrees with the model, both ways.
    for s in &f.sessions {
        let token = SessionToken::parse(&s.token).unwrap();
        let valid = service::authenticate(&**store, &token, now).await;
        match (s.active_at(now), &valid) {
            (true, Ok(_)) | (false, Err(ServiceError::InvalidToken)) => {}
            (expected, got) => {
                return Err(fail(format!(
                    "step {index}: session {} (covered {}, signed in {}) should be {} but validation gave {:?}",
                    s.id,
                    s.covered,
                    s.signed_in_at,
                    if expected { "valid" } else { "refused" },
                    got.as_ref().map(|p| p.session.session_id)
                )))
            }
        }
    }
    let active: BTreeSet<SessionId> = f.sessions.iter().filter(|s| s.active_at(now)).map(|s| s.id).collect();
    // (iv) The cap, within the documented bound.
    if active.len() > CAP as usize + f.overshoot {
        return Err(fail(format!(
            "step {index}: {} active sessions, above the cap of {CAP} (+{} allowed)",
            active.len(),
            f.overshoot
        )));
    }
    // (iii) The admin's listing equals the active set; the member's has the current session first.
    let query = ListQuery { limit: PageSize::parse("100").unwrap(), ..Default::default() };
    let subject = Subject::Member(f.member.clone());
    let listed = service::list_sessions(&**store, &f.admin_token, &subject, &query, now)
        .await
        .map_err(|e| fail(format!("step {index}: admin listing failed: {e:?}")))?;
    let ids: BTreeSet<SessionId> = listed.sessions.iter().map(|v| v.id).collect();
    if ids != active || listed.next_cursor.is_some() {
        return Err(fail(format!("step {index}: the listing {ids:?} is not the model's active set {active:?}")));
    }
    if let Some(current) = f.sessions.iter().find(|s| s.active_at(now)) {
        let token = SessionToken::parse(&current.token).unwrap();
        let own = service::list_sessions(&**store, &token, &Subject::Own, &query, now)
            .await
            .map_err(|e| fail(format!("step {index}: own listing failed: {e:?}")))?;
        let first = own.sessions.first().map(|v| (v.id, v.current));
        let rest_current = own.sessions.iter().skip(1).any(|v| v.current);
        let own_ids: BTreeSet<SessionId> = own.sessions.iter().map(|v| v.id).collect();
        if first != Some((current.id, true)) || rest_current || own_ids != active {
            return Err(fail(format!("step {index}: own listing {own_ids:?} (first {first:?}) vs {active:?}")));
        }
    }
    Ok(())
}

async fn run_case<S: SessionStore>(store: Arc<S>, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut f = setup(&*store).await;
    for (i, step) in steps.iter().enumerate() {
        run_step(&store, &mut f, step, i).await?;
    }
    Ok(())
}

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default_cases);
    let mut config = Config { cases, failure_persistence: None, ..Config::default() };
    if let Some(seed) = std::env::var("MODEL_SEED").ok().and_then(|v| v.parse().ok()) {
        config.rng_seed = RngSeed::Fixed(seed);
    }
    config
}

fn run_model(default_cases: u32, dynamo: bool) {
    let mut runner = TestRunner::new(config(default_cases));
    let result = runner.run(&steps(), |steps| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            if dynamo {
                let table = TestTable::new().await;
                run_case(Arc::new(table.store), &steps).await
            } else {
                run_case(Arc::new(MemoryStore::new()), &steps).await
            }
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn model_on_memory_store() {
    run_model(48, false);
}

#[test]
fn model_on_dynamodb_local() {
    run_model(16, true);
}
