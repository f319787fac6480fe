//! Background jobs on tokio-cron-scheduler: destroying empty rooms once their
//! delay has passed, deleting history older than the retention window, and
//! trimming the rate limiters' memory.
//!
//! Jobs use cron expressions (six fields, UTC), not `Job::new_repeated`,
//! whose repeated jobs can stop firing under load. The scheduler's own
//! shutdown does not wait for a running job, so every job body runs inside a
//! [`TaskTracker`] that [`Scheduler::stop`] waits on. A sweep that fails is
//! logged and counted, and the next tick simply tries again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tokio_util::task::TaskTracker;

use crate::limits::RateLimits;
use crate::metrics::Metrics;
use crate::store::Store;

/// Every second: a room is destroyed at most about a second after its deadline.
const SWEEP_SCHEDULE: &str = "* * * * * *";
/// Every minute: forget rate-limiter state of users and addresses gone quiet.
const HOUSEKEEPING_SCHEDULE: &str = "0 * * * * *";
/// Rooms destroyed per statement; a sweep repeats until no due room is left.
const SWEEP_BATCH: i64 = 500;
/// Messages deleted per retention statement.
const RETENTION_BATCH: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SchedulerError {
    #[error("invalid retention schedule {schedule:?}: {source}")]
    Schedule {
        schedule: String,
        #[source]
        source: JobSchedulerError,
    },
    #[error("job scheduler: {0}")]
    Scheduler(#[from] JobSchedulerError),
}

/// How long history is kept, and when the retention job runs.
#[derive(Debug, Clone)]
pub(crate) struct Retention {
    pub(crate) window: Duration,
    pub(crate) schedule: String,
}

pub(crate) struct Scheduler {
    jobs: JobScheduler,
    /// Job bodies in flight, so shutdown can wait for them.
    running: TaskTracker,
}

impl Scheduler {
    pub(crate) async fn start(
        store: Store,
        metrics: Arc<Metrics>,
        rates: Arc<RateLimits>,
        retention: Option<Retention>,
    ) -> Result<Self, SchedulerError> {
        let jobs = JobScheduler::new().await?;
        let running = TaskTracker::new();

        jobs.add(Job::new(HOUSEKEEPING_SCHEDULE, move |_, _| {
            rates.forget_idle()
        })?)
        .await?;

        // One sweep at a time per process; a tick that finds the previous
        // sweep still running skips instead of piling up.
        let sweeping = Arc::new(Mutex::new(()));
        let sweep = {
            let (store, metrics, running) = (store.clone(), metrics.clone(), running.clone());
            Job::new_async(SWEEP_SCHEDULE, move |_, _| {
                let (store, metrics, sweeping) = (store.clone(), metrics.clone(), sweeping.clone());
                let job = running.track_future(async move {
                    if let Ok(_only_one) = sweeping.try_lock() {
                        sweep(&store, &metrics).await;
                    }
                });
                Box::pin(job)
            })?
        };
        jobs.add(sweep).await?;

        if let Some(Retention { window, schedule }) = retention {
            let (store, metrics, tracker) = (store.clone(), metrics.clone(), running.clone());
            let job = Job::new_async(schedule.as_str(), move |_, _| {
                let (store, metrics) = (store.clone(), metrics.clone());
                Box::pin(tracker.track_future(async move {
                    expire_history(&store, &metrics, window).await;
                }))
            })
            .map_err(|source| SchedulerError::Schedule {
                schedule: schedule.clone(),
                source,
            })?;
            jobs.add(job).await?;
        }
        jobs.start().await?;
        Ok(Self { jobs, running })
    }

    /// Stops firing jobs and waits for the running ones to finish.
    pub(crate) async fn stop(mut self) {
        if let Err(e) = self.jobs.shutdown().await {
            tracing::warn!(error = %e, "job scheduler did not shut down cleanly");
        }
        self.running.close();
        self.running.wait().await;
    }
}

/// Destroys every room whose destruction time has passed.
pub(crate) async fn sweep(store: &Store, metrics: &Metrics) {
    let started = Instant::now();
    let mut destroyed = 0usize;
    let outcome = loop {
        match store.destroy_due_rooms(SWEEP_BATCH).await {
            Ok(rooms) => {
                let now = Utc::now();
                for (room_id, empty_since) in &rooms {
                    let empty_for = (now - *empty_since).to_std().unwrap_or_default();
                    tracing::info!(
                        room = %room_id,
                        empty_for = %humantime::format_duration(Duration::from_millis(empty_for.as_millis() as u64)),
                        "room destroyed"
                    );
                }
                destroyed += rooms.len();
                metrics.rooms_destroyed.inc_by(rooms.len() as u64);
                if (rooms.len() as i64) < SWEEP_BATCH {
                    break Ok(());
                }
            }
            Err(e) => break Err(e),
        }
    };
    let elapsed = started.elapsed();
    metrics.sweeps.inc();
    metrics.sweep_seconds.observe(elapsed.as_secs_f64());
    match outcome {
        Ok(()) if destroyed > 0 => tracing::info!(destroyed, ?elapsed, "sweep destroyed rooms"),
        Ok(()) => tracing::trace!(?elapsed, "sweep found nothing due"),
        Err(e) => {
            metrics.sweep_failures.inc();
            tracing::warn!(error = %e, destroyed, "sweep failed; retrying at the next tick");
        }
    }
}

/// Deletes messages older than the retention window.
pub(crate) async fn expire_history(store: &Store, metrics: &Metrics, window: Duration) {
    let Ok(window_chrono) = chrono::Duration::from_std(window) else {
        tracing::warn!(
            ?window,
            "history retention window too large; nothing deleted"
        );
        return;
    };
    let cutoff = Utc::now() - window_chrono;
    let started = Instant::now();
    match store.expire_messages(cutoff, RETENTION_BATCH).await {
        Ok(None) => {
            metrics.retention_skipped.inc();
            tracing::info!("history retention skipped: another node is running it");
        }
        Ok(Some(deleted)) => {
            metrics.retention_runs.inc();
            metrics.messages_expired.inc_by(deleted);
            tracing::info!(deleted, %cutoff, elapsed = ?started.elapsed(), "history retention ran");
        }
        Err(e) => {
            metrics.retention_failures.inc();
            tracing::warn!(error = %e, "history retention failed; it runs again at its next time");
        }
    }
}
