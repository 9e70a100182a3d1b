/* SPDX-License-Identifier: Apache-2.0 */
/* Records and map layouts of the lock probe, shared by lock.bpf.c and lock.cpp. */
#ifndef PROCIMAGE_LOCK_H
#define PROCIMAGE_LOCK_H

#include <procimage/bpf/common.h>

/* Causes of losses (pi_lost keys, named by the user side) */
#define LK_LOST_LOCKS (PI_LOST_PROBE + 0)   /* lk_locks full: config max_locks */
#define LK_LOST_THREADS (PI_LOST_PROBE + 1) /* lk_threads full: config max_threads */
#define LK_LOST_OWNERS (PI_LOST_PROBE + 2)  /* lk_owner full */
#define LK_LOST_HOLDS (PI_LOST_PROBE + 3)   /* lk_holds full */
#define LK_LOST_WAKERS (PI_LOST_PROBE + 4)  /* lk_wakers full */
#define LK_LOST_FUTEXES (PI_LOST_PROBE + 5) /* lk_futex full: config max_futexes */

#define LK_HIST_SLOTS 36 /* log2 buckets of nanoseconds: [2^i, 2^(i+1)), the last one open */

/* What a probed libc function does. Attached with this value as the uprobe's BPF cookie. */
enum lk_op {
	LK_OP_NONE = 0,
	LK_OP_MUTEX_LOCK = 1,
	LK_OP_MUTEX_TRYLOCK = 2,
	LK_OP_MUTEX_TIMEDLOCK = 3,
	LK_OP_MUTEX_CLOCKLOCK = 4,
	LK_OP_RW_RDLOCK = 5,
	LK_OP_RW_TRYRDLOCK = 6,
	LK_OP_RW_TIMEDRDLOCK = 7,
	LK_OP_RW_CLOCKRDLOCK = 8,
	LK_OP_RW_WRLOCK = 9,
	LK_OP_RW_TRYWRLOCK = 10,
	LK_OP_RW_TIMEDWRLOCK = 11,
	LK_OP_RW_CLOCKWRLOCK = 12,
	LK_OP_SPIN_LOCK = 13,
	LK_OP_SPIN_TRYLOCK = 14,
	/* pthread_cond_*wait release the mutex on entry and take it back before returning */
	LK_OP_COND_WAIT = 15,
	LK_OP_COND_TIMEDWAIT = 16,
	LK_OP_COND_CLOCKWAIT = 17,
	/* releases */
	LK_OP_MUTEX_UNLOCK = 18,
	LK_OP_RW_UNLOCK = 19,
	LK_OP_SPIN_UNLOCK = 20,
	LK_OP_MAX = 21,
};

/* The BPF cookie of an entry-side probe: what the probed place is (kind) and which function. */
enum lk_cookie_kind {
	LK_CK_LOCK = 0,          /* entry of a lock function: the request */
	LK_CK_COND = 1,          /* entry of pthread_cond_*wait: the mutex (2nd argument) is released */
	LK_CK_UNLOCK = 2,        /* entry of an unlock function */
	LK_CK_SPIN_ATTEMPT = 3,  /* inside pthread_spin_lock, after an attempt */
	LK_CK_SPIN_ACQUIRED = 4, /* inside pthread_spin_lock, on its success path */
	/* entry of a blocking lock function (pthread_mutex_lock, pthread_rwlock_rdlock,
	 * pthread_rwlock_wrlock) that has no return probe: the request, and the acquisition at the
	 * same time unless the call then sleeps on the lock's futex word(s) (config lock_return:
	 * false, the default) */
	LK_CK_LOCK_NORET = 5,
};
#define LK_COOKIE(kind, op) (((__u64)(kind) << 8) | (__u64)(op))
#define LK_CK_KIND(c) ((__u32)((c) >> 8) & 0xff)
#define LK_CK_OP(c) ((__u32)(c) & 0xff)

/* How a lock is held. An rwlock held for reading and for writing are two rows of the
 * per-lock figures. */
enum lk_type {
	LK_TYPE_UNKNOWN = 0,
	LK_TYPE_MUTEX = 1,
	LK_TYPE_RWLOCK_READ = 2,
	LK_TYPE_RWLOCK_WRITE = 3,
	LK_TYPE_SPIN = 4,
};

/* Ring-buffer record kinds */
enum lk_kind {
	LK_ACQ = 1,        /* struct lk_acq: a hold ended, or an acquisition failed */
	LK_CONTENTION = 2, /* struct lk_contention: a futex wait ended */
	LK_NEWPROC = 3,    /* struct lk_newproc: a target process forked or exec'd */
};

/* Header = the thread that held (released) the lock or failed to take it. */
struct lk_acq {
	struct pi_event_header h;
	__u64 lock_addr;
	__u64 request_ns; /* boot ns the lock call began */
	__u64 acquired_ns; /* boot ns it returned (0 for a failure) */
	__u64 wait_ns;    /* request -> acquired, or request -> failed */
	__u64 hold_ns;    /* acquired -> released (h.ts_boot_ns); 0 for a failure */
	__u64 futex_wait_ns; /* time blocked in futex waits during the lock call */
	__u32 op;         /* enum lk_op that acquired (or failed) */
	__u32 type;       /* enum lk_type */
	__s32 ret;        /* 0, or the error number the function returned (positive) */
	__u32 depth;      /* locks this thread held when it got this one, this one included */
	__u32 contended;  /* 1: the thread blocked in a futex wait while acquiring */
	__u32 pad;
};

/* Header = the waiter. */
struct lk_contention {
	struct pi_event_header h;
	__u64 futex_addr;
	__u64 lock_addr;       /* the tracked lock the futex word belongs to, 0 if none */
	__u64 wait_ns;         /* futex syscall entry -> exit */
	__u64 holder_held_ns;  /* how long the holder had held the lock when the wait began */
	__u32 holder_tid;      /* 0: no tracked holder */
	__u32 holder_readers;  /* rwlock held for reading: readers at the wait's start */
	__u32 lock_type;       /* enum lk_type of the holder's hold */
	__u32 waker_tid;       /* the last thread that woke this futex word during the wait, 0 if none seen */
	__s32 ret;             /* the futex syscall's return: 0 or -errno */
	__u32 futex_op;        /* futex command (FUTEX_WAIT, FUTEX_WAIT_BITSET, FUTEX_LOCK_PI, ...) */
	char holder_comm[PI_COMM_LEN];
};

enum lk_newproc_why {
	LK_NEW_FORK = 1,
	LK_NEW_EXEC = 2,
	LK_NEW_CGROUP = 3, /* moved into a cgroup target */
};

/* Header = the new process (exec) or its parent (fork). */
struct lk_newproc {
	struct pi_event_header h;
	__u32 pid; /* the process to attach uprobes to */
	__u32 why; /* enum lk_newproc_why */
};

/* ---------------------------------------------------------------- aggregation maps */

/* lk_locks (per-CPU hash): per lock and hold type */
struct lk_lock_key {
	__u64 addr;
	__u32 tgid;
	__u32 type; /* enum lk_type */
};

struct lk_lock_stats {
	__u64 acquisitions;
	__u64 contended;
	__u64 failed;
	__u64 wait_total_ns;
	__u64 wait_max_ns;
	__u64 hold_total_ns;
	__u64 hold_max_ns;
	__u64 releases;
	__u64 pid_start_ns; /* the process's start (group leader's, ns since boot), set at creation */
	__u64 wait_hist[LK_HIST_SLOTS];
	__u64 hold_hist[LK_HIST_SLOTS];
};

/* lk_threads (per-CPU hash): per thread, keyed by tid */
struct lk_thread_stats {
	__u64 acquisitions;
	__u64 contended;
	__u64 failed;
	__u64 wait_total_ns;
	__u64 wait_max_ns;
	__u64 hold_total_ns;
	__u64 hold_max_ns;
	__u64 releases;
	__u32 tgid;
	__u32 pad;
	__u64 pid_start_ns; /* the process's start, ns since boot, set at creation */
	char comm[PI_COMM_LEN];
	__u64 wait_hist[LK_HIST_SLOTS];
	__u64 hold_hist[LK_HIST_SLOTS];
};

/* lk_futex (per-CPU hash): per futex word and thread */
struct lk_futex_key {
	__u64 addr;
	__u32 tgid;
	__u32 tid;
};

struct lk_futex_stats {
	__u64 waits;      /* wait calls (FUTEX_WAIT*, FUTEX_LOCK_PI*) */
	__u64 wait_total_ns;
	__u64 wait_max_ns;
	__u64 timeouts;   /* waits that returned -ETIMEDOUT */
	__u64 wakes;      /* wake calls (FUTEX_WAKE*, FUTEX_UNLOCK_PI, REQUEUE, WAKE_OP) */
	__u64 woken;      /* threads those calls woke (their return value) */
	__u64 pid_start_ns; /* the process's start, ns since boot, set at creation */
};

/* lk_system (per-CPU array, key 0 = target, 1 = whole system) */
struct lk_sys_stats {
	__u64 waits;
	__u64 wait_total_ns;
	__u64 wait_max_ns;
	__u64 wakes;
	__u64 woken;
	__u64 wait_hist[LK_HIST_SLOTS];
};

/* lk_holds (hash): locks held now, by (thread, lock) */
struct lk_hold_key {
	__u64 addr;
	__u32 tid;
	__u32 pad;
};

struct lk_hold {
	__u64 request_ns;
	__u64 acquired_ns;
	__u64 wait_ns;
	__u64 futex_wait_ns;
	__u32 op;
	__u32 type;
	__u32 depth;     /* recursive re-acquisitions by the same thread */
	__u32 nest;      /* locks the thread held when it took this one, this one included */
	__u32 contended;
	__u32 tgid;
	/* taken by a blocking call without a return probe, whose acquisition time may still move
	 * (to the end of a futex wait on the lock's word) and is not accounted yet */
	__u32 pending;
	__u32 owner_set; /* this hold is counted in lk_owner (rwlocks) */
};

#endif /* PROCIMAGE_LOCK_H */
