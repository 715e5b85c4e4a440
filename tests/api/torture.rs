//! The torture harness: a real server, a separate PostgreSQL target, an audit file, and a
//! mixed workload running while faults are injected round after round. It runs twice: on
//! PostgreSQL storage (a private cluster, so it can be stopped) and on SQLite storage (which
//! dies with the server, and whose start-up recovery is immediate instead of waiting for a
//! dead process's claims to run out).
//!
//! Workload (concurrent, for the whole run): issuance from two dynamic roles (a short TTL
//! that expires and is renewed, and a long one), renewals, revocations, rotations of a
//! static role (a 5 s `rotation_period` plus `rotate-role` twice a second) and reads of its
//! `static-creds`.
//!
//! Faults, one per round: SIGKILL of the server and an immediate restart (most rounds); the
//! target cluster stopped (`pg_ctl -m immediate`, a crash) and started again; with
//! PostgreSQL storage, the storage cluster stopped and started again under a server that
//! keeps running and must serve again without a restart. After each round `static-creds`
//! must answer with a password that logs in.
//!
//! At the end (workers stopped, a bounded wait until no lease is pending, being revoked or
//! overdue, then a clean stop) it checks the invariants of the architecture:
//! 1. No orphaned database user: every target role with this run's username prefix has a
//!    lease in storage.
//! 2. No lease lost: every credential a worker received either still has its lease (same
//!    user, and the user exists) or has ended (revoked by a worker, or past its expiry) and
//!    its user is gone; a lease whose expiry is still ahead and that nobody revoked must
//!    exist; every active lease's user exists.
//! 3. Every static password `static-creds` returned after a round logs in, and so does the
//!    one stored (read through the barrier) at the end.
//! 4. No secret in clear: no password handed out (dynamic or static), nor the target's admin
//!    password or the root token, appears in storage (a `pg_dump`, which writes `bytea` as
//!    hex, so the hex form is searched too; or the SQLite file and its WAL), the server's
//!    stdout/stderr, or the audit file.
//!
//! Each run prints one `torture:` line with the counts and the number of violations, and
//! fails listing every violation.
//!
//! Modes, chosen by `DBWARDEN_TORTURE`:
//! - `short` (the default, what CI runs): 20 kills, 2 target outages, 2 storage outages.
//! - `long`: 200 kills, 10 target outages, 10 storage outages:
//!   `DBWARDEN_TORTURE=long cargo test --test api torture:: -- --nocapture`.
//!
//! What each mode checks and measured results: `docs/torture.md`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use dbwarden::core::Core;
use dbwarden::crypto::Seal;
use dbwarden::engine::{mounts, rotation};
use dbwarden::storage::{LeaseRow, LeaseState, Store};
use dbwarden_testkit::{TempPostgres, unique_name};
use serde_json::{Value, json};

use crate::faults::{pg_users_with_prefix, setup_role};
use crate::rotation::pg_account;
use crate::support::{Client, Server, operator_init, write_config};

/// Short claims and retries, so work a killed server held is taken over within seconds.
/// Claims stay well above the time a creation or rotation takes here (milliseconds).
const TUNING: &str = "[leases]\nclaim_timeout = \"10s\"\nrevocation_retry_base = \"200ms\"\n\
    revocation_retry_cap = \"2s\"\n\n[rotation]\nclaim_timeout = \"10s\"\nretry_base = \"200ms\"\n\
    retry_cap = \"2s\"\n";

/// How long an outage lasts, with the workload running against it.
const OUTAGE: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill,
    TargetOutage,
    StorageOutage,
}

struct Mode {
    name: &'static str,
    kills: usize,
    target_outages: usize,
    storage_outages: usize,
}

impl Mode {
    /// The mode `DBWARDEN_TORTURE` asks for; without a storage server, no storage outages.
    fn from_env(storage: &Storage) -> Mode {
        let mut mode = Mode::requested();
        if matches!(storage, Storage::Sqlite(_)) {
            mode.storage_outages = 0;
        }
        mode
    }

    fn requested() -> Mode {
        match std::env::var("DBWARDEN_TORTURE").as_deref() {
            Ok("long") => Mode {
                name: "long",
                kills: 200,
                target_outages: 10,
                storage_outages: 10,
            },
            Ok("short") | Err(_) => Mode {
                name: "short",
                kills: 20,
                target_outages: 2,
                storage_outages: 2,
            },
            Ok(other) => panic!("DBWARDEN_TORTURE={other}: expected short or long"),
        }
    }

    /// Every round's fault: the outages alternate and are spread evenly between the kills.
    fn schedule(&self) -> Vec<Fault> {
        let outages: Vec<Fault> = (0..self.target_outages.max(self.storage_outages))
            .flat_map(|i| {
                [
                    (i < self.target_outages).then_some(Fault::TargetOutage),
                    (i < self.storage_outages).then_some(Fault::StorageOutage),
                ]
            })
            .flatten()
            .collect();
        let mut faults = vec![Fault::Kill; self.kills];
        // From the last to the first, so earlier positions are not shifted.
        for (i, fault) in outages.iter().enumerate().rev() {
            faults.insert((i + 1) * self.kills / (outages.len() + 1), *fault);
        }
        faults
    }
}

/// dbwarden's storage in a run.
enum Storage {
    /// A private cluster, database `dbwarden`: it can be stopped under the running server.
    Postgres(TempPostgres),
    /// A file in the run's directory: it lives in the server's process, so it dies with each
    /// kill and recovery at start-up is immediate (no claim has to run out first).
    Sqlite(PathBuf),
}

impl Storage {
    /// The `[storage]` section of the configuration.
    fn config(&self) -> String {
        match self {
            Storage::Postgres(pg) => format!(
                "backend = \"postgres\"\nurl = \"{}\"",
                pg.url_for("dbwarden")
            ),
            Storage::Sqlite(path) => {
                format!("backend = \"sqlite\"\npath = \"{}\"", path.display())
            }
        }
    }

    async fn open(&self) -> Store {
        match self {
            Storage::Postgres(pg) => Store::open_postgres(&pg.url_for("dbwarden")).await,
            Storage::Sqlite(path) => Store::open_sqlite(path).await,
        }
        .unwrap()
    }

    /// Everything storage holds, as bytes: a `pg_dump`, or the SQLite file and its WAL.
    fn dump(&self) -> Vec<u8> {
        match self {
            Storage::Postgres(pg) => pg.dump("dbwarden"),
            Storage::Sqlite(path) => [path.clone(), path.with_extension("db-wal")]
                .iter()
                .filter_map(|p| std::fs::read(p).ok())
                .flatten()
                .collect(),
        }
    }
}

/// A credential a worker received.
struct Issued {
    lease_id: String,
    username: String,
    /// No earlier than the lease's expiry: when the request that set it (issue or renewal)
    /// was sent, plus the TTL it answered.
    expires_after: SystemTime,
    /// Whether `expires_after` is known: false after a renewal whose answer was lost (it may
    /// have shortened the lease).
    expiry_known: bool,
    /// A revocation was sent (its outcome may be unknown).
    revoke_sent: bool,
    /// The server answered a revocation with success.
    revoked: bool,
}

/// What the workers did and saw.
#[derive(Default)]
struct Ledger {
    issued: Vec<Issued>,
    /// Every password handed out, dynamic and static.
    secrets: HashSet<String>,
    renewals: usize,
    revocations: usize,
    rotations: usize,
    static_reads: usize,
    failed_requests: usize,
}

/// What every worker shares.
struct Workload {
    client: Client,
    ledger: Mutex<Ledger>,
    stop: AtomicBool,
}

impl Workload {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap()
    }

    /// One request, bounded in time; `None` when the server is down, was killed while
    /// answering, or hangs (storage away). Failures are counted.
    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Option<(u16, Value)> {
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            self.client.attempt(method, path, body),
        )
        .await
        .ok()
        .and_then(Result::ok);
        if !matches!(answer, Some((200 | 204, _))) {
            self.ledger().failed_requests += 1;
        }
        answer
    }

    /// Sleeps `pace`, or longer after a failure so a dead server is not spun against.
    async fn pause(&self, pace: u64, ok: bool) {
        let ms = if ok { pace } else { pace.max(200) };
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// A random credential that passes `filter` (a few tries), by index.
    fn pick(&self, filter: impl Fn(&Issued) -> bool) -> Option<usize> {
        let ledger = self.ledger();
        (0..10)
            .filter_map(|_| {
                (!ledger.issued.is_empty())
                    .then(|| rand::random_range(0..ledger.issued.len()))
                    .filter(|&i| filter(&ledger.issued[i]))
            })
            .next()
    }
}

async fn issue(w: Arc<Workload>, role: String) {
    let path = format!("database/creds/{role}");
    while w.running() {
        let sent = SystemTime::now();
        let answer = w.send("GET", &path, None).await;
        let ok = matches!(answer, Some((200, _)));
        if let Some((200, body)) = answer {
            let mut ledger = w.ledger();
            ledger
                .secrets
                .insert(body["data"]["password"].as_str().unwrap().to_owned());
            ledger.issued.push(Issued {
                lease_id: body["lease_id"].as_str().unwrap().to_owned(),
                username: body["data"]["username"].as_str().unwrap().to_owned(),
                expires_after: sent + Duration::from_secs(body["lease_duration"].as_u64().unwrap()),
                expiry_known: true,
                revoke_sent: false,
                revoked: false,
            });
        }
        w.pause(40, ok).await;
    }
}

async fn renew(w: Arc<Workload>) {
    while w.running() {
        let now = SystemTime::now();
        let Some(i) = w.pick(|c| !c.revoke_sent && c.expires_after > now) else {
            w.pause(100, true).await;
            continue;
        };
        let lease_id = w.ledger().issued[i].lease_id.clone();
        let answer = w
            .send(
                "PUT",
                "sys/leases/renew",
                Some(json!({"lease_id": lease_id, "increment": 30})),
            )
            .await;
        {
            let mut ledger = w.ledger();
            match &answer {
                Some((200, body)) => {
                    ledger.renewals += 1;
                    let c = &mut ledger.issued[i];
                    c.expires_after =
                        now + Duration::from_secs(body["lease_duration"].as_u64().unwrap());
                    c.expiry_known = true;
                }
                // Refused (expired, or being revoked): the server changed nothing.
                Some(_) => {}
                None => ledger.issued[i].expiry_known = false,
            }
        }
        w.pause(100, answer.is_some()).await;
    }
}

async fn revoke(w: Arc<Workload>) {
    while w.running() {
        let Some(i) = w.pick(|c| !c.revoke_sent) else {
            w.pause(200, true).await;
            continue;
        };
        let lease_id = {
            let mut ledger = w.ledger();
            ledger.issued[i].revoke_sent = true;
            ledger.issued[i].lease_id.clone()
        };
        let answer = w
            .send(
                "PUT",
                "sys/leases/revoke",
                Some(json!({"lease_id": lease_id})),
            )
            .await;
        let ok = matches!(answer, Some((204, _)));
        if ok {
            let mut ledger = w.ledger();
            ledger.revocations += 1;
            ledger.issued[i].revoked = true;
        }
        w.pause(200, ok).await;
    }
}

async fn rotate(w: Arc<Workload>, role: String) {
    let path = format!("database/rotate-role/{role}");
    while w.running() {
        let ok = matches!(w.send("POST", &path, None).await, Some((200 | 204, _)));
        if ok {
            w.ledger().rotations += 1;
        }
        w.pause(500, ok).await;
    }
}

async fn read_static(w: Arc<Workload>, role: String) {
    let path = format!("database/static-creds/{role}");
    while w.running() {
        let answer = w.send("GET", &path, None).await;
        let ok = matches!(answer, Some((200, _)));
        if let Some((200, body)) = answer {
            let mut ledger = w.ledger();
            ledger.static_reads += 1;
            ledger
                .secrets
                .insert(body["data"]["password"].as_str().unwrap().to_owned());
        }
        w.pause(300, ok).await;
    }
}

/// Reads `static-creds` until it answers (bounded: an interrupted rotation is finished
/// first, after the dead server's claim runs out) and logs in with its password.
///
/// A rotation may finish between a read and the login, so a refused login is a violation
/// only when a read started after it returns the same password.
async fn check_static(
    w: &Workload,
    target: &TempPostgres,
    role: &str,
    user: &str,
) -> Result<(), String> {
    let path = format!("database/static-creds/{role}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut refused: Option<String> = None;
    let mut last = String::new();
    while Instant::now() < deadline {
        match w.send("GET", &path, None).await {
            Some((200, body)) => {
                let password = body["data"]["password"].as_str().unwrap().to_owned();
                w.ledger().secrets.insert(password.clone());
                match target.connect_as("postgres", user, &password).await {
                    Ok(_) => return Ok(()),
                    Err(e) if refused.as_deref() == Some(password.as_str()) => {
                        return Err(format!(
                            "the password static-creds returns does not log in: {e}; {body}"
                        ));
                    }
                    Err(e) => {
                        last = e.to_string();
                        refused = Some(password);
                    }
                }
            }
            other => last = format!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!(
        "static-creds gave no password that logs in within 60 s: {last}"
    ))
}

/// Waits (bounded) until the server answers a request that reads storage.
async fn wait_serving(w: &Workload, role: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some((200, _)) = w.send("GET", &format!("database/roles/{role}"), None).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Waits (bounded) until no lease is pending or being revoked and none is overdue by more
/// than a few seconds; returns what is still unsettled, if anything.
async fn settle(store: &Store, bound: Duration) -> Option<String> {
    let deadline = Instant::now() + bound;
    loop {
        let states: HashMap<String, i64> = store
            .count_leases_by_state()
            .await
            .unwrap()
            .into_iter()
            .collect();
        let now = chrono::Utc::now().timestamp_millis();
        let overdue = store
            .next_due()
            .await
            .unwrap()
            .is_some_and(|due| due < now - 5000);
        let busy = states.get("pending").copied().unwrap_or(0)
            + states.get("revoking").copied().unwrap_or(0);
        if busy == 0 && !overdue {
            return None;
        }
        if Instant::now() > deadline {
            return Some(format!(
                "leases did not settle within {}s: {states:?}, overdue work: {overdue}",
                bound.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The secrets (as bytes) found in `haystack`. Every needle is at least 8 bytes long; they
/// are looked up by their first 8 bytes at every offset, which keeps a scan of tens of
/// megabytes against thousands of needles quick.
fn secrets_in(haystack: &[u8], needles: &[Vec<u8>]) -> Vec<String> {
    let mut by_prefix: HashMap<&[u8], Vec<&[u8]>> = HashMap::new();
    for n in needles {
        by_prefix.entry(&n[..8]).or_default().push(n);
    }
    let mut found = HashSet::new();
    for (i, window) in haystack.windows(8).enumerate() {
        if let Some(candidates) = by_prefix.get(window) {
            for n in candidates {
                if haystack[i..].starts_with(n) {
                    found.insert(String::from_utf8_lossy(n).into_owned());
                }
            }
        }
    }
    found.into_iter().collect()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torture_on_postgres_storage() {
    let storage = TempPostgres::private();
    storage.create_database("dbwarden").await;
    torture(Storage::Postgres(storage)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torture_on_sqlite_storage() {
    let dir = tempfile::tempdir().unwrap();
    torture(Storage::Sqlite(dir.path().join("dbwarden.db"))).await;
}

/// One run of the harness: the workload, the rounds of faults, then the invariants.
async fn torture(storage: Storage) {
    let started = Instant::now();
    let mode = Mode::from_env(&storage);
    let target = TempPostgres::private();
    let dir = tempfile::tempdir().unwrap();
    let (config, listen) = write_config(dir.path(), "torture.toml", &storage.config(), TUNING);
    let root = operator_init(&config);
    let mut server = Server::with_config(&config, &root, &listen);
    let client = server.client();
    let audit_path = dir.path().join("audit.log");
    client
        .ok(
            "PUT",
            "sys/audit/file",
            Some(json!({"type": "file", "options": {"file_path": audit_path.to_str().unwrap()}})),
        )
        .await;
    // Usernames are v-root-<role, 8 chars>-...: both roles share this run's 7-char tag.
    let tag: String = unique_name("t").chars().take(7).collect();
    let (short_role, long_role) = (format!("{tag}s"), format!("{tag}l"));
    let user_prefix = format!("v-root-{tag}");
    setup_role(
        &client,
        &target,
        target.port(),
        &short_role,
        json!({"default_ttl": 10, "max_ttl": 40}),
    )
    .await;
    setup_role(&client, &target, target.port(), &long_role, json!({})).await;
    let (static_user, _) = pg_account(&target).await;
    let static_role = "app";
    client
        .ok(
            "POST",
            &format!("database/static-roles/{static_role}"),
            Some(json!({"db_name": "pg", "username": static_user, "rotation_period": 5})),
        )
        .await;

    let w = Arc::new(Workload {
        client,
        ledger: Mutex::default(),
        stop: AtomicBool::new(false),
    });
    let workers = vec![
        tokio::spawn(issue(w.clone(), short_role.clone())),
        tokio::spawn(issue(w.clone(), short_role.clone())),
        tokio::spawn(issue(w.clone(), long_role.clone())),
        tokio::spawn(renew(w.clone())),
        tokio::spawn(revoke(w.clone())),
        tokio::spawn(rotate(w.clone(), static_role.to_owned())),
        tokio::spawn(read_static(w.clone(), static_role.to_owned())),
    ];

    let mut violations: Vec<String> = Vec::new();
    let (mut kills, mut target_outages, mut storage_outages, mut static_logins) = (0, 0, 0, 0);
    for (round, fault) in mode.schedule().into_iter().enumerate() {
        // Let the workload run a varying while, so faults land at varying points.
        tokio::time::sleep(Duration::from_millis(300 + (round as u64 * 137) % 900)).await;
        match fault {
            Fault::Kill => {
                server.kill9();
                kills += 1;
                server = Server::with_config(&config, &root, &listen);
            }
            Fault::TargetOutage => {
                target.stop();
                tokio::time::sleep(OUTAGE).await;
                target.start();
                target_outages += 1;
            }
            Fault::StorageOutage => {
                let Storage::Postgres(pg) = &storage else {
                    unreachable!("no storage outages without a storage server")
                };
                pg.stop();
                tokio::time::sleep(OUTAGE).await;
                pg.start();
                storage_outages += 1;
                if !wait_serving(&w, &short_role).await {
                    violations.push(format!(
                        "round {round}: the server did not serve again within 60 s of storage coming back"
                    ));
                }
            }
        }
        match check_static(&w, &target, static_role, &static_user).await {
            Ok(()) => static_logins += 1,
            Err(e) => violations.push(format!("round {round} ({fault:?}): {e}")),
        }
    }
    w.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }

    // Due revocations settle (a dead server's claims run out after 10 s), interrupted
    // rotations are finished, then the server stops cleanly so nothing moves while checking.
    let store = storage.open().await;
    if let Some(unsettled) = settle(&store, Duration::from_secs(120)).await {
        violations.push(unsettled);
    }
    match check_static(&w, &target, static_role, &static_user).await {
        Ok(()) => static_logins += 1,
        Err(e) => violations.push(format!("at the end: {e}")),
    }
    server.stop();
    let stopped = SystemTime::now();

    // 1 and 2: users and leases.
    let users = pg_users_with_prefix(&target, &user_prefix).await;
    let mut leases: HashMap<String, LeaseRow> = HashMap::new();
    for id in store.list_lease_ids("database/creds/").await.unwrap() {
        if let Some(row) = store.get_lease(&id).await.unwrap() {
            leases.insert(id, row);
        }
    }
    let leased_users: HashSet<&str> = leases.values().map(|r| r.username.as_str()).collect();
    for user in &users {
        if !leased_users.contains(user.as_str()) {
            violations.push(format!("orphaned database user {user}: no lease covers it"));
        }
    }
    for row in leases.values() {
        if row.state == LeaseState::Active && !users.contains(&row.username) {
            violations.push(format!(
                "active lease {} has no database user {}",
                row.id, row.username
            ));
        }
    }
    // The workers are done: take what they recorded.
    let ledger = std::mem::take(&mut *w.ledger());
    for c in &ledger.issued {
        match leases.get(&c.lease_id) {
            Some(row) if row.username != c.username => violations.push(format!(
                "lease {} names user {}, but {} was handed out",
                c.lease_id, row.username, c.username
            )),
            Some(_) if c.revoked => violations.push(format!(
                "lease {} is still stored after its revocation succeeded",
                c.lease_id
            )),
            Some(_) => {}
            None if !c.revoke_sent && c.expiry_known && c.expires_after > stopped => violations
                .push(format!(
                    "lease {} ({}) is gone before its expiry, unrevoked",
                    c.lease_id, c.username
                )),
            None => {}
        }
    }

    // 3: the stored static password.
    let core = Core::open(store.clone(), &Seal::KeyFile(dir.path().join("seal.key")))
        .await
        .unwrap();
    let mount = mounts::list(&core)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.path == "database")
        .unwrap();
    let stored = rotation::read_static_role(&core, &mount, static_role)
        .await
        .unwrap()
        .unwrap();
    match target
        .connect_as("postgres", &static_user, &stored.password)
        .await
    {
        Ok(_) => static_logins += 1,
        Err(e) => violations.push(format!("the stored static password does not log in: {e}")),
    }

    // 4: no secret in clear.
    let mut needles: Vec<Vec<u8>> = ledger
        .secrets
        .iter()
        .map(String::as_str)
        .chain([root.as_str(), target.superuser_password()])
        .map(|s| s.as_bytes().to_vec())
        .collect();
    let plain = needles.len();
    needles.extend(
        needles[..plain]
            .iter()
            .map(|n| hex::encode(n).into_bytes())
            .collect::<Vec<_>>(),
    );
    let mut bytes_scanned = 0;
    for (what, haystack, needles) in [
        ("storage", storage.dump(), &needles[..]),
        (
            "server log",
            read(&config.with_extension("log")),
            &needles[..plain],
        ),
        ("audit file", read(&audit_path), &needles[..plain]),
    ] {
        bytes_scanned += haystack.len();
        for secret in secrets_in(&haystack, needles) {
            violations.push(format!("a secret is in clear in the {what}: {secret}"));
        }
    }

    println!(
        "torture: mode={} storage={} kills={kills} target_outages={target_outages} storage_outages={storage_outages} \
         credentials={} renewals={} revocations={} rotations={} static_reads={} failed_requests={} \
         leases_checked={} users_checked={} static_logins={static_logins} secrets_scanned={plain} \
         bytes_scanned={bytes_scanned} violations={} elapsed={}s",
        mode.name,
        match storage {
            Storage::Postgres(_) => "postgres",
            Storage::Sqlite(_) => "sqlite",
        },
        ledger.issued.len(),
        ledger.renewals,
        ledger.revocations,
        ledger.rotations,
        ledger.static_reads,
        ledger.failed_requests,
        leases.len(),
        users.len(),
        violations.len(),
        started.elapsed().as_secs()
    );
    assert!(!ledger.issued.is_empty(), "the workload issued nothing");
    assert!(
        violations.is_empty(),
        "{} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
}
