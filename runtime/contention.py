"""Thread count under contention: fewer TVM pool threads while other processes keep the cores busy.

TVM's thread pool splits each parallel loop statically, one share per thread, and the calling
thread waits for every share. When another process holds a core, the worker on it is descheduled
and every kernel waits a time slice for it (SqueezeNet on 2 threads with 2 busy processes: 2.8x its
1-thread time). Before a run, at most every INTERVAL seconds, `Policy.before_run` reads the
kernel's count of runnable tasks (/proc/loadavg, field 4: an instant count, machine-wide), takes
away this process's own runnable threads, and sizes the pool to the cores left free:
max(1, min(wanted, cores - others)). `wanted` is the count the pool had when the policy last found it
changed by someone else (the user's TVM_NUM_THREADS or `runtime.config_threadpool`), so the
policy never raises the pool above what was asked (a resize to the very count the policy had set
goes unnoticed). Without /proc/loadavg (not Linux) it does nothing.
The policy also unpins the pool's workers (`configure`): TVM's default pins worker i to core i, and
a pinned worker whose core another process holds cannot move to a free core while every parallel
region waits for it. Set EDGEC_ADAPT_THREADS=0 to turn both off.

Why the pool shrinks: an idle TVM worker spins on sched_yield (TVM_THREAD_POOL_SPIN_COUNT times,
300000 by default) before it sleeps, and on a busy core each yield hands a time slice to the other
process, so a parallel region waits slices for its worker. With TVM_THREAD_POOL_SPIN_COUNT=0 (set
before the first parallel run: TVM reads it once per process) idle workers sleep at once and wake
when work comes: the pool then keeps its threads under contention (`sleeping_workers`). Measured on
2 AVX2 cores with 2 CPU-burning processes, 2 threads, medians of 3 rounds: ResNet-50 105 ms
(1 thread, the shrunk pool: 124; 2 threads spinning, even 1000 yields: 910), MobileNet v1 18.4
(20.4; 322), SqueezeNet 12.0 (26.0; 340); but on an idle machine sleeping workers cost 5-10% at 2 threads (a wake-up per
parallel region), so spinning stays TVM's default: set the variable where cores are shared.
"""
import os
import threading
import time

INTERVAL = 0.1  # seconds between two looks at the machine's load
SHARE_ALL_CORES = -3  # TVM's AffinityMode kSpecifyThreadShareAllCore: each worker may run on any listed core


def configure(n):
    """N threads in the calling thread's TVM pool, the workers free to run on any core this process
    may use (runtime.config_threadpool with mode 1, TVM's default, pins each worker to a core)."""
    import tvm
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    tvm.get_global_func("runtime.config_threadpool")(SHARE_ALL_CORES, int(n), [str(c) for c in cores])


def runnable_tasks():
    """(runnable tasks machine-wide, runnable threads of this process), or None where unknown."""
    try:
        with open("/proc/loadavg") as f:
            total = int(f.read().split()[3].split("/")[0])
        own = 0
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    own += f.read().rsplit(")", 1)[1].split()[0] == "R"
            except OSError:  # the thread ended meanwhile
                pass
    except (OSError, ValueError, IndexError):
        return None
    return total, own


def sleeping_workers():
    """Whether TVM's idle pool workers sleep at once (TVM_THREAD_POOL_SPIN_COUNT=0), not spin."""
    return os.environ.get("TVM_THREAD_POOL_SPIN_COUNT", "").strip() == "0"


_local = threading.local()


def for_this_thread():
    """The calling thread's Policy, shared by every model it runs: TVM's pool is per calling thread,
    and a policy per model took the pool another model's policy had shrunk under contention for
    the count asked for, so a second model loaded in a busy moment stayed on one thread."""
    pol = getattr(_local, "policy", None)
    if pol is None:
        pol = _local.policy = Policy()
    return pol


class Policy:
    """One per calling thread (TVM's pool is per calling thread): sizes that thread's pool."""

    def __init__(self, cores=None):
        import tvm
        self._num_threads = tvm.get_global_func("runtime.NumThreads")
        self.cores = cores or os.cpu_count() or 1
        self.enabled = os.environ.get("EDGEC_ADAPT_THREADS", "1") != "0"
        self.keep = sleeping_workers()  # a pool whose workers sleep keeps its threads under contention
        self.wanted = self.set_to = None
        self.checked = -INTERVAL

    def before_run(self):
        now = time.monotonic()
        if not self.enabled or now - self.checked < INTERVAL:
            return
        self.checked = now
        n = self._num_threads()
        if n != self.set_to:  # first look, or someone else resized the pool: that is the wish
            self.wanted = n
            if n > 1:
                configure(n)  # unpinned
        load = runnable_tasks() if self.wanted > 1 and not self.keep else None
        if load is not None:
            others = load[0] - max(load[1], 1)
            target = max(1, min(self.wanted, self.cores - others))
            if target != n:
                configure(target)
                n = self._num_threads()  # the pool may hold fewer workers than asked
        self.set_to = n
