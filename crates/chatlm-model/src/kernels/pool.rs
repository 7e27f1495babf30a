//! A persistent pool of kernel threads that wakes in well under a microsecond.
//!
//! A decode step runs ~120 small products of 30–300 µs each; waking sleeping threads
//! through the OS for each (rayon, a condvar) costs several microseconds per product. Here
//! the workers spin on an epoch counter for a while after each job and only then sleep, so
//! back-to-back products hand over work through one cache line. The calling thread always
//! takes part 0 of every job.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle worker spins before it sleeps: longer than the gaps between the
/// products of one decode step, short enough not to steal a core from other work for long.
const SPIN: Duration = Duration::from_micros(300);

/// The job of one epoch: a borrowed closure, lifetime erased (see [`Pool::run`]).
type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    epoch: AtomicUsize,
    /// Workers that have not finished the current job.
    pending: AtomicUsize,
    /// Workers asleep on `wake`.
    sleepers: AtomicUsize,
    job: Mutex<Option<SendJob>>,
    wake: Condvar,
}

#[derive(Clone, Copy)]
struct SendJob(Job);
// SAFETY: the pointee is `Sync` and `Pool::run` keeps it alive until every worker is done.
unsafe impl Send for SendJob {}

/// Threads that run one closure per part, the caller taking part 0.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    threads: usize,
    /// Serialises jobs from different calling threads.
    busy: Mutex<()>,
}

impl Pool {
    fn new(threads: usize) -> Self {
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            job: Mutex::new(None),
            wake: Condvar::new(),
        });
        let mut started = 1;
        for part in 1..threads {
            let shared = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("chatlm-kernel-{part}"))
                .spawn(move || worker(&shared, part));
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

    /// Number of parts a job is split into.
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Calls `f(part)` for every part in `0..threads()`, in parallel; returns when all are done.
    pub(crate) fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.threads == 1 {
            f(0);
            return;
        }
        let _guard = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY (lifetime erasure): this function does not return before `pending` is back
        // to 0, i.e. before every worker has finished calling the closure.
        let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(f) };
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(SendJob(job));
        s.pending.store(self.threads - 1, Ordering::SeqCst);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _lock = s.job.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        f(0);
        let mut spins = 0u32;
        while s.pending.load(Ordering::Acquire) != 0 {
            spins += 1;
            if spins < 1 << 16 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

fn worker(s: &Shared, part: usize) {
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
            if spins % 64 != 0 || start.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            let mut lock = s.job.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            while s.epoch.load(Ordering::SeqCst) == seen {
                lock = s.wake.wait(lock).unwrap_or_else(|e| e.into_inner());
            }
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        let job = *s.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(SendJob(job)) = job {
            // SAFETY: `Pool::run` keeps the closure alive until `pending` reaches 0 below.
            let f = unsafe { &*job };
            // A panicking kernel must still release the caller, which waits on `pending`.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(part)));
        }
        s.pending.fetch_sub(1, Ordering::Release);
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
