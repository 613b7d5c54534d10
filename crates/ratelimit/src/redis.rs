//! Limits shared by every instance through Redis. Each decision is one `EVALSHA` of a Lua
//! script that checks every rule of the policy and, only if all admit, commits them all and
//! then spends the key's quota, if it has one: atomic, all-or-nothing, one round trip for
//! everything a verification spends. Keys expire on their own when their window ends
//! or their bucket refills. The arithmetic mirrors `keyward_domain::ratelimit::evaluate`.
//!
//! When Redis fails or is slower than the configured timeout, the decision is made by an
//! in-process limiter instead and the failure is logged at most once a minute: limits
//! degrade to per instance, requests never fail.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use keyward_domain::{
    KeyId, Quota,
    quota::{QuotaBalance, ledger_start},
    ratelimit::{
        Decision, Limit, QuotaCharge, QuotaDecision, QuotaLedger, RateLimiter, Rule, RuleOutcome, RuleState,
        admit_in_turn, decide, micros,
    },
};
use redis::{RedisError, Script};
use time::OffsetDateTime;

use crate::memory::{MemoryLedger, MemoryLimiter};

mod connection;

pub use connection::slot;
use connection::{Circuit, Connection};

const ADMIT_SCRIPT: &str = r#"
-- KEYS[i], i <= n: the state of rule i; KEYS[n + 1], if present: the quota's ledger entry.
-- ARGV: now (µs), cost, commit (0/1), n, then per rule: kind, a, b, c; then, with a quota:
-- initial (the stored balance, or the configured one), refill amount (-1: none), current
-- period, quota cost, ceiling (the stored balance of this period, -1: none).
-- Answers four integers per rule, then, if every rule admitted and there is a quota, two:
-- spent (0/1) and the balance left.
local now = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local commit = ARGV[3] == '1'
local n = tonumber(ARGV[4])
local US = 1000000
local out, writes, all = {}, {}, true
local function ceil_s(us) if us <= 0 then return 0 end return math.floor((us + US - 1) / US) end
for i = 1, n do
  local base = 4 + (i - 1) * 4
  local kind, a, b, c = ARGV[base + 1], tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
  local key = KEYS[i]
  local allowed, remaining, reset, retry
  if kind == 'w' then
    local period = b * US
    local start = now - (now % period)
    local v = redis.call('HMGET', key, 's', 'c')
    local count = 0
    if v[1] and tonumber(v[1]) == start then count = tonumber(v[2]) end
    allowed = count + cost <= a
    local used = count
    if allowed then used = count + cost end
    remaining = math.max(a - used, 0)
    reset = ceil_s(start + period - now)
    retry = 0
    if not allowed then retry = math.max(reset, 1) end
    writes[i] = {'w', start, used, start + period - now}
  elseif kind == 'b' then
    local interval = math.max(math.floor(c * US / math.max(b, 1)), 1)
    local tolerance = interval * a
    local tat = tonumber(redis.call('GET', key) or now)
    if tat < now then tat = now end
    local new_tat = tat + interval * cost
    allowed = new_tat - now <= tolerance
    local booked = tat
    if allowed then booked = new_tat end
    remaining = math.min(math.max(math.floor((tolerance - (booked - now)) / interval), 0), a)
    reset = ceil_s(booked - now)
    retry = 0
    if not allowed then retry = math.max(ceil_s(new_tat - tolerance - now), 1) end
    writes[i] = {'b', booked, booked - now}
  else
    local period = b * US
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - period)
    local count = redis.call('ZCARD', key)
    allowed = count + cost <= a
    local held = count
    if allowed then held = count + cost end
    remaining = math.max(a - held, 0)
    local newest = now
    if not allowed then
      local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
      if last[2] then newest = tonumber(last[2]) end
    end
    reset = 0
    if held > 0 then reset = ceil_s(newest + period - now) end
    retry = 0
    if not allowed then
      local needed = count + cost - a
      local freeing = redis.call('ZRANGE', key, needed - 1, needed - 1, 'WITHSCORES')
      local at = now
      if freeing[2] then at = tonumber(freeing[2]) end
      retry = math.max(ceil_s(at + period - now), 1)
    end
    writes[i] = {'s', count, period}
  end
  if not allowed then all = false end
  out[#out + 1] = allowed and 1 or 0
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = retry
end
if commit and all then
  for i = 1, n do
    local w, key = writes[i], KEYS[i]
    if w[1] == 'w' then
      redis.call('HSET', key, 's', w[2], 'c', w[3])
      redis.call('PEXPIRE', key, math.max(math.ceil(w[4] / 1000), 1))
    elseif w[1] == 'b' then
      redis.call('SET', key, w[2], 'PX', math.max(math.ceil(w[3] / 1000), 1))
    else
      for j = 1, cost do redis.call('ZADD', key, now, now .. ':' .. (w[2] + j)) end
      redis.call('PEXPIRE', key, math.max(math.ceil(w[3] / 1000), 1))
    end
  end
end
if commit and all and #KEYS > n then
  local q = 4 + n * 4
  local entry = KEYS[n + 1]
  local initial, amount, period = tonumber(ARGV[q + 1]), tonumber(ARGV[q + 2]), tonumber(ARGV[q + 3])
  local spend, ceiling = tonumber(ARGV[q + 4]), tonumber(ARGV[q + 5])
  local v = redis.call('HMGET', entry, 'r', 'p')
  local remaining = initial
  if v[1] then
    remaining = tonumber(v[1])
    if amount >= 0 and tonumber(v[2]) ~= period then remaining = amount end
  end
  if ceiling >= 0 and remaining > ceiling then remaining = ceiling end
  local spent = 0
  if remaining >= spend then remaining = remaining - spend; spent = 1 end
  redis.call('HSET', entry, 'r', remaining, 'p', period)
  redis.call('EXPIRE', entry, 3456000)
  out[#out + 1] = spent
  out[#out + 1] = remaining
end
return out
"#;

const RETRY_AFTER_FAILURE_MS: i64 = 1_000;

/// The connection, timeout and fallback shared by the limiter and the ledger.
#[derive(Clone)]
pub struct Shared {
    conn: Connection,
    /// The one script every decision runs.
    script: Script,
    timeout: Duration,
    prefix: Arc<str>,
    last_warning: Arc<AtomicI64>,
    circuit: Arc<Circuit>,
    /// Decisions made in process because Redis did not answer.
    fallbacks: Arc<AtomicU64>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password; show the prefix and timeout only.
        f.debug_struct("Shared").field("prefix", &self.prefix).field("timeout", &self.timeout).finish()
    }
}

/// How to reach Redis, beyond its URL.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a decision waits for Redis before deciding in process.
    pub timeout: Duration,
    /// The prefix of every key (tests give each run its own).
    pub prefix: String,
    /// The certificate authorities (PEM) a `rediss://` server's certificate must chain to;
    /// `None`: the system's.
    pub ca_pem: Option<Vec<u8>>,
}

impl Options {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout, prefix: "kw".to_owned(), ca_pem: None }
    }
}

impl Shared {
    /// Connects lazily: Keyward starts even while Redis is down, and reconnects by itself.
    /// `url` names one server or, as `redis+cluster://host:port,…`, a Redis Cluster.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, RedisError> {
        Self::open(url, &Options::new(timeout))
    }

    /// Like `new`, with the prefix of every key (tests give each run its own).
    pub fn with_prefix(url: &str, timeout: Duration, prefix: &str) -> Result<Self, RedisError> {
        Self::open(url, &Options { prefix: prefix.to_owned(), ..Options::new(timeout) })
    }

    /// Like `new`, with every option.
    pub fn open(url: &str, options: &Options) -> Result<Self, RedisError> {
        let conn = Connection::open(url, options.timeout, options.ca_pem.as_deref())?;
        Ok(Self {
            circuit: Arc::new(conn.circuit()),
            conn,
            script: Script::new(ADMIT_SCRIPT),
            timeout: options.timeout,
            prefix: options.prefix.as_str().into(),
            last_warning: Arc::new(AtomicI64::new(i64::MIN)),
            fallbacks: Arc::new(AtomicU64::new(0)),
        })
    }

    /// How many decisions were made in process because Redis did not answer (or failed a
    /// moment before), since this connection was opened.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Logs a Redis failure, at most once a minute.
    fn warn(&self, error: &dyn std::fmt::Display) {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let last = self.last_warning.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 60
            && self.last_warning.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::warn!(%error, "Redis is unavailable: rate limits and quotas fall back to this instance's memory");
        }
    }

    /// Runs `invocation`, whose keys all carry the hash tag `tag`; `None` when Redis (the
    /// tag's node, in a cluster) failed now or a moment ago.
    async fn run<T: redis::FromRedisValue>(&self, tag: &[u8], invocation: redis::ScriptInvocation<'_>) -> Option<T> {
        let now_ms = i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
        if self.circuit.is_open(tag, now_ms) {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let failure = match tokio::time::timeout(self.timeout, self.conn.invoke(&invocation)).await {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        self.warn(&failure);
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        // Try Redis again in a second; meanwhile decide in process at full speed.
        self.circuit.open(tag, now_ms + RETRY_AFTER_FAILURE_MS);
        None
    }
}

/// The hash tag of a decision's keys: its subject in lowercase hex (for a key's limits and
/// quota, its id). Every Redis key of one decision is `…{<tag>}…`, so a Redis Cluster keeps
/// them in one slot ([`slot`]). One allocation.
pub fn hash_tag(subject: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(subject.len() * 2);
    for &b in subject {
        hex.push(char::from(DIGITS[usize::from(b >> 4)]));
        hex.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    hex
}

/// A quota spend as the script takes it (its arguments after the rules').
struct QuotaArgs {
    fingerprint: u64,
    start: i64,
    amount: i64,
    period: i64,
    cost: u64,
    ceiling: i64,
}

/// What Redis answered for one decision: each rule's outcome and, when every rule admitted
/// and a quota was given, the quota's.
struct Answer {
    outcomes: Vec<RuleOutcome>,
    quota: Option<QuotaDecision>,
}

impl Shared {
    /// One round trip: `rules` (`cost` each, committed when `commit` and all admit), then,
    /// if they all admit, `quota`. `None` when Redis did not answer, or answered something
    /// that is not an answer to this question.
    ///
    /// Every key of the decision carries the hash tag `{<subject in hex>}`, so that a Redis
    /// Cluster holds them in one slot (a script may touch no other); the quota's entry is
    /// named after its key's id, which is the subject of that key's rate limits.
    async fn decide(
        &self,
        subject: &[u8],
        rules: &[Rule],
        cost: u64,
        commit: bool,
        quota: Option<&QuotaArgs>,
        now: OffsetDateTime,
    ) -> Option<Answer> {
        let hex = hash_tag(subject);
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(micros(now)).arg(cost).arg(u8::from(commit)).arg(rules.len());
        for rule in rules {
            let (kind, a, b, c) = match rule.limit {
                Limit::Window { limit, period_seconds } => ("w", limit, period_seconds, 0),
                Limit::Bucket { capacity, refill, refill_seconds } => ("b", capacity, refill, refill_seconds),
                Limit::Sliding { limit, period_seconds } => ("s", limit, period_seconds, 0),
            };
            // The limit's parameters are part of the key: changing a limit starts it afresh.
            invocation.key(format!("{}:rl:{{{hex}}}:{}:{kind}{a}.{b}.{c}", self.prefix, rule.name));
            invocation.arg(kind).arg(a).arg(b).arg(c);
        }
        if let Some(q) = quota {
            invocation.key(format!("{}:q:{{{hex}}}:{:x}", self.prefix, q.fingerprint));
            invocation.arg(q.start).arg(q.amount).arg(q.period).arg(q.cost).arg(q.ceiling);
        }
        let flat = self.run::<Vec<i64>>(hex.as_bytes(), invocation).await?;
        let (rule_part, quota_part) = flat.split_at_checked(rules.len() * 4)?;
        let outcomes: Vec<RuleOutcome> = rule_part
            .chunks(4)
            .map(|r| RuleOutcome {
                allowed: r[0] == 1,
                remaining: u64::try_from(r[1]).unwrap_or(0),
                reset_seconds: u64::try_from(r[2]).unwrap_or(0),
                retry_after_seconds: u64::try_from(r[3]).unwrap_or(0),
                next: RuleState::Bucket { tat: 0 },
                idle_after: 0,
            })
            .collect();
        let spent = commit && quota.is_some() && outcomes.iter().all(|o| o.allowed);
        let quota = match (spent, quota_part) {
            (true, [allowed, remaining]) => Some(QuotaDecision { allowed: *allowed == 1, remaining: *remaining }),
            (false, []) => None,
            _ => return None,
        };
        Some(Answer { outcomes, quota })
    }
}

/// The decision of `rules` from their outcomes (no rules: unlimited).
fn decision_of(rules: &[Rule], outcomes: &[RuleOutcome]) -> Decision {
    if rules.is_empty() { Decision::UNLIMITED } else { decide(rules, outcomes) }
}

/// Rate limiter over Redis, with an in-process fallback.
#[derive(Debug)]
pub struct RedisLimiter {
    shared: Shared,
    fallback: MemoryLimiter,
}

impl RedisLimiter {
    /// The connection this limiter decides through (its fallback count, for metrics).
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    pub fn new(shared: Shared) -> Self {
        Self { shared, fallback: MemoryLimiter::default() }
    }

    async fn decide(&self, subject: &[u8], rules: &[Rule], cost: u64, now: OffsetDateTime, commit: bool) -> Decision {
        if rules.is_empty() {
            return Decision::UNLIMITED;
        }
        match self.shared.decide(subject, rules, cost, commit, None, now).await {
            Some(answer) => decide(rules, &answer.outcomes),
            None if commit => self.fallback.check(subject, rules, cost, now).await,
            None => self.fallback.peek(subject, rules, cost, now).await,
        }
    }

    /// A key's rate limit and then its quota, in one round trip: what a verification spends.
    pub async fn admit(
        &self,
        ledger: &RedisLedger,
        subject: &[u8],
        rules: &[Rule],
        charge: Option<QuotaCharge<'_>>,
        now: OffsetDateTime,
    ) -> (Decision, Option<QuotaDecision>) {
        if charge.is_some_and(|c| c.key.as_uuid().as_bytes() != subject) {
            // The quota's entry is named after its key, the rules after `subject`: two
            // places (two slots of a cluster), so two decisions.
            return admit_in_turn(self, ledger, subject, rules, charge, now).await;
        }
        let quota = charge.map(|c| ledger.args(c.key, c.quota, c.stored, c.cost, now));
        match self.shared.decide(subject, rules, 1, true, quota.as_ref(), now).await {
            Some(answer) => {
                let decision = decision_of(rules, &answer.outcomes);
                if let (Some(c), Some(q), Some(spent)) = (charge, &quota, answer.quota) {
                    ledger.fallback.observe(c.key, c.quota, spent.remaining, q.period);
                }
                (decision, answer.quota)
            }
            // Redis is away: both decided in process, in turn, as the fallbacks do alone.
            None => admit_in_turn(&self.fallback, &ledger.fallback, subject, rules, charge, now).await,
        }
    }
}

impl RateLimiter for RedisLimiter {
    async fn check(&self, subject: &[u8], rules: &[Rule], cost: u64, now: OffsetDateTime) -> Decision {
        self.decide(subject, rules, cost, now, true).await
    }

    async fn peek(&self, subject: &[u8], rules: &[Rule], cost: u64, now: OffsetDateTime) -> Decision {
        self.decide(subject, rules, cost, now, false).await
    }

    /// The in-process limiter that also stands in for Redis during an outage: its subjects
    /// are the ones this instance limits on its own, so the two uses do not meet.
    async fn check_in_instance(&self, subject: &[u8], rules: &[Rule], cost: u64, now: OffsetDateTime) -> Decision {
        self.fallback.check(subject, rules, cost, now).await
    }
}

/// Quota ledger over Redis, with an in-process fallback that holds the last balance Redis
/// gave for each key.
#[derive(Debug)]
pub struct RedisLedger {
    shared: Shared,
    fallback: MemoryLedger,
}

impl RedisLedger {
    pub fn new(shared: Shared) -> Self {
        Self { shared, fallback: MemoryLedger::default() }
    }

    /// The script's arguments for spending `cost` from `quota`.
    fn args(
        &self,
        key: KeyId,
        quota: &Quota,
        stored: Option<&QuotaBalance>,
        cost: u64,
        now: OffsetDateTime,
    ) -> QuotaArgs {
        let (start, period, stored_ceiling) = ledger_start(quota, stored, now);
        // What this instance last heard from Redis (or spent in its fallback) is a ceiling
        // too: after Redis lost the entry (a restart without persistence, an expiry), it
        // would otherwise start again from a stored balance that may be seconds old.
        let ceiling = match (stored_ceiling, self.fallback.known(key, quota, now)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        QuotaArgs {
            fingerprint: quota.fingerprint(),
            start,
            amount: quota.refill.map_or(-1, |r| r.amount),
            period,
            cost,
            ceiling: ceiling.unwrap_or(-1),
        }
    }
}

impl QuotaLedger for RedisLedger {
    async fn spend(
        &self,
        key: KeyId,
        quota: &Quota,
        stored: Option<&QuotaBalance>,
        cost: u64,
        now: OffsetDateTime,
    ) -> QuotaDecision {
        let args = self.args(key, quota, stored, cost, now);
        let id = key.as_uuid();
        match self.shared.decide(id.as_bytes(), &[], 0, true, Some(&args), now).await.and_then(|a| a.quota) {
            Some(spent) => {
                self.fallback.observe(key, quota, spent.remaining, args.period);
                spent
            }
            // The fallback continues from the last balance Redis gave (or the stored one):
            // an outage refills nothing.
            None => self.fallback.spend(key, quota, stored, cost, now).await,
        }
    }
}
