//! A persistent pool of kernel threads, robust to a busy machine.
//!
//! A decode step runs ~120 small products of 30–300 µs each; waking sleeping threads
//! through the OS for each (rayon, a condvar) costs several microseconds per product. Here
//! the workers spin on an epoch counter for a while after each job (yielding between checks)
//! and only then sleep, so back-to-back products hand over work through one cache line.
//!
//! The caller takes part in every job, and a job is a loop over chunks claimed from a shared
//! counter. When the caller runs out of chunks it withdraws the offer from workers that have
//! not started yet: on a machine where other processes hold the cores, a descheduled worker
//! never makes the caller wait, it just does nothing this time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle worker spins before it sleeps: longer than the gaps between the
/// products of one decode step, short enough not to hold a core for long.
const SPIN: Duration = Duration::from_micros(500);

/// A worker's state for the current epoch.
const IDLE: usize = 0;
const OFFERED: usize = 1;
const RUNNING: usize = 2;

/// The job of one epoch: a borrowed closure, lifetime erased (see [`Pool::run`]).
type Job = *const (dyn Fn() + Sync);

struct Shared {
    epoch: AtomicUsize,
    /// Per worker: [`IDLE`], [`OFFERED`] or [`RUNNING`].
    state: Vec<AtomicUsize>,
    /// Workers asleep on `wake`.
    sleepers: AtomicUsize,
    job: Mutex<Option<SendJob>>,
    wake: Condvar,
}

#[derive(Clone, Copy)]
struct SendJob(Job);
// SAFETY: the pointee is `Sync` and `Pool::run` keeps it alive while any worker is RUNNING it.
unsafe impl Send for SendJob {}

/// Threads that help the caller run a closure.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    threads: usize,
    /// Serialises jobs from different calling threads.
    busy: Mutex<()>,
}

impl Pool {
    fn new(threads: usize) -> Self {
        let workers = threads.saturating_sub(1);
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            state: (0..workers).map(|_| AtomicUsize::new(IDLE)).collect(),
            sleepers: AtomicUsize::new(0),
            job: Mutex::new(None),
            wake: Condvar::new(),
        });
        let mut started = 1;
        for index in 0..workers {
            let shared = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("chatlm-kernel-{}", index + 1))
                .spawn(move || worker(&shared, index));
            if spawned.is_err() {
                break;
            }
            started += 1;
        }
        Self {
            shared,
            threads: started,
            busy: Mutex::new(()),
        }
    }

    /// Threads that may run a job at once (the caller included).
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on the calling thread and on every worker that picks it up in time. `f` must
    /// claim its work itself (e.g. chunks from an atomic counter) and return when none is left.
    pub(crate) fn run(&self, f: &(dyn Fn() + Sync)) {
        if self.threads == 1 {
            f();
            return;
        }
        let _guard = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY (lifetime erasure): before returning, this function withdraws the offer
        // from every worker that has not started and waits for those RUNNING to finish.
        let job: Job = unsafe { std::mem::transmute::<&(dyn Fn() + Sync), Job>(f) };
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(SendJob(job));
        for state in &s.state[..self.threads - 1] {
            state.store(OFFERED, Ordering::SeqCst);
        }
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _lock = s.job.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        f();
        for state in &s.state[..self.threads - 1] {
            if state.compare_exchange(OFFERED, IDLE, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                continue;
            }
            let mut spins = 0u32;
            while state.load(Ordering::Acquire) != IDLE {
                spins += 1;
                if spins % 256 == 0 {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
    }
}

fn worker(s: &Shared, index: usize) {
    let mut seen = 0usize;
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let epoch = s.epoch.load(Ordering::Acquire);
            if epoch != seen {
                seen = epoch;
                break;
            }
            spins = spins.wrapping_add(1);
            if spins % 128 != 0 {
                std::hint::spin_loop();
                continue;
            }
            if start.elapsed() < SPIN {
                // Let other runnable threads have this core while waiting.
                std::thread::yield_now();
                continue;
            }
            let mut lock = s.job.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            while s.epoch.load(Ordering::SeqCst) == seen {
                lock = s.wake.wait(lock).unwrap_or_else(|e| e.into_inner());
            }
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        let state = &s.state[index];
        if state.compare_exchange(OFFERED, RUNNING, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            continue; // withdrawn: the caller finished without this worker
        }
        let job = *s.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(SendJob(job)) = job {
            // SAFETY: `Pool::run` keeps the closure alive until this worker is IDLE again.
            let f = unsafe { &*job };
            // A panicking kernel must still release the caller, which waits for IDLE.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        }
        state.store(IDLE, Ordering::Release);
    }
}

/// Threads requested for kernels: `CHATLM_THREADS`, else `RAYON_NUM_THREADS`, else the
/// CPUs available.
fn requested_threads() -> usize {
    ["CHATLM_THREADS", "RAYON_NUM_THREADS"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse::<usize>().ok().filter(|&n| n > 0))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The process-wide pool, started on first use with [`requested_threads`].
pub(crate) fn global() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool::new(requested_threads()))
}
