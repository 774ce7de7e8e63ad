//! When passes run: daily at `notify.daily_at` in `notify.time_zone`, plus a catch-up
//! pass when the last pass is older than the most recent scheduled instant (the
//! gateway was down at 01:00), plus a pass when the claims another pass left (a
//! process that died mid-send) run out of their lease. Instants are computed from a given "now" so that tests
//! control time without waiting.

use std::sync::Arc;
use std::time::Duration;

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use tokio::sync::watch;

use super::{Cause, Notifier};

/// Longest sleep between looks at the clock, so that clock changes and passes run by
/// other replicas are noticed.
const RECHECK: Duration = Duration::from_secs(600);
/// After a pass that could not complete (database down), try again this soon.
const RETRY: Duration = Duration::from_secs(60);
/// How long a pass under way may finish after shutdown starts.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The daily instant in a zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub at: Time,
    pub zone: TimeZone,
}

impl Schedule {
    /// The latest scheduled instant at or before `now` (Unix seconds).
    pub fn last(&self, now: i64) -> i64 {
        let today = self.on_day_of(now, 0);
        if today <= now {
            today
        } else {
            self.on_day_of(now, -1)
        }
    }

    /// The first scheduled instant after `now`.
    pub fn next(&self, now: i64) -> i64 {
        let today = self.on_day_of(now, 0);
        if today > now {
            today
        } else {
            self.on_day_of(now, 1)
        }
    }

    /// The scheduled instant on the local day of `now`, shifted by `days`. A time that
    /// does not exist that day (DST gap) moves forward, as clocks do.
    fn on_day_of(&self, now: i64, days: i64) -> i64 {
        let now = Timestamp::from_second(now).unwrap_or(Timestamp::UNIX_EPOCH);
        let date = now.to_zoned(self.zone.clone()).date();
        let date = date
            .checked_add(jiff::Span::new().days(days))
            .unwrap_or(date);
        date.to_datetime(self.at)
            .to_zoned(self.zone.clone())
            .map(|z| z.timestamp().as_second())
            .unwrap_or_else(|_| now.as_second())
    }
}

/// Whether a pass is due at `now`, given when the last one started.
pub fn catch_up_due(schedule: &Schedule, last_started: Option<i64>, now: i64) -> bool {
    last_started.is_none_or(|last| last < schedule.last(now))
}

/// The side task of `patgate serve`: runs passes on schedule until `stop` changes.
pub async fn run(notifier: Arc<Notifier>, mut stop: watch::Receiver<bool>) {
    // When claims another pass held (it may have died) run out of their lease.
    let mut take_over_at = left_unrecorded(&notifier).await;
    loop {
        // Read each time: a reload may have moved, started or stopped the daily pass.
        let Some(schedule) = notifier.schedule() else {
            tokio::select! {
                _ = notifier.settings_changed() => continue,
                _ = stop.changed() => return,
            }
        };
        let now = crate::core::time::now();
        let take_over = take_over_at.is_some_and(|at| at <= now);
        let wait = match notifier.store.last_pass().await {
            Ok(last)
                if take_over
                    || catch_up_due(&schedule, last.as_ref().map(|p| p.started_at), now) =>
            {
                take_over_at = None;
                let cause = if now - schedule.last(now) < 60 {
                    Cause::Schedule
                } else {
                    Cause::CatchUp
                };
                let pass = notifier.run_pass(now, cause);
                tokio::pin!(pass);
                let outcome = tokio::select! {
                    outcome = &mut pass => Some(outcome),
                    _ = stop.changed() => {
                        let _ = tokio::time::timeout(STOP_GRACE, pass).await;
                        return;
                    }
                };
                match outcome {
                    Some(Ok(report)) => {
                        take_over_at = report.retry_at;
                        Duration::ZERO
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "notification pass stopped on a database error; retrying in a minute");
                        RETRY
                    }
                    None => RETRY,
                }
            }
            Ok(_) => {
                let until = schedule.next(now).min(take_over_at.unwrap_or(i64::MAX)) - now;
                Duration::from_secs(until.max(1) as u64).min(RECHECK)
            }
            Err(e) => {
                tracing::warn!(error = %e, "notifier: cannot read the last pass; retrying in a minute");
                RETRY
            }
        };
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = notifier.settings_changed() => {}
            _ = stop.changed() => return,
        }
    }
}

/// When the claims still held that the last recorded pass may have left alone (taken
/// within a lease before it started, or after: by a pass that died, or is under way
/// elsewhere) run out of their lease.
async fn left_unrecorded(notifier: &Notifier) -> Option<i64> {
    let lease = notifier.settings().claim_lease.as_secs() as i64;
    let last = notifier.store.last_pass().await.ok()?;
    let since = last.map_or(0, |p| p.started_at - lease);
    let newest = notifier.store.newest_held_claim(since).await.ok()??;
    Some(newest + lease + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_second()
    }

    #[test]
    fn daily_instants_follow_the_zone() {
        let paris = Schedule {
            at: jiff::civil::time(1, 0, 0, 0),
            zone: TimeZone::get("Europe/Paris").unwrap(),
        };
        // 01:00 in Paris in winter is 00:00 UTC.
        let now = at("2026-12-07T10:00:00Z");
        assert_eq!(paris.last(now), at("2026-12-07T00:00:00Z"));
        assert_eq!(paris.next(now), at("2026-12-08T00:00:00Z"));
        // Just before 01:00 local, the last one was yesterday's.
        let early = at("2026-12-06T23:59:59Z");
        assert_eq!(paris.last(early), at("2026-12-06T00:00:00Z"));
        assert_eq!(paris.next(early), at("2026-12-07T00:00:00Z"));
        // Exactly at the instant: it is the last one, and the next is tomorrow.
        assert_eq!(
            paris.last(at("2026-12-07T00:00:00Z")),
            at("2026-12-07T00:00:00Z")
        );
        // Summer time: 01:00 in Paris is 23:00 UTC the day before.
        assert_eq!(
            paris.next(at("2026-07-01T12:00:00Z")),
            at("2026-07-01T23:00:00Z")
        );
    }

    #[test]
    fn a_gateway_down_at_the_scheduled_time_catches_up() {
        let utc = Schedule {
            at: jiff::civil::time(1, 0, 0, 0),
            zone: TimeZone::UTC,
        };
        let now = at("2026-12-07T09:00:00Z");
        assert!(catch_up_due(&utc, None, now));
        assert!(catch_up_due(&utc, Some(at("2026-12-06T01:00:00Z")), now));
        assert!(!catch_up_due(&utc, Some(at("2026-12-07T01:00:05Z")), now));
        assert!(!catch_up_due(&utc, Some(at("2026-12-07T08:00:00Z")), now));
    }
}
