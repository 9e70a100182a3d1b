// SPDX-License-Identifier: GPL-2.0
/*
 * lock: user-space lock request, wait and hold times, and who holds a lock a thread waits for.
 *
 *  uprobe    pthread_mutex_lock, pthread_rwlock_{rd,wr}lock entry (lk_entry)  request, and the
 *            acquisition unless the call then sleeps on the lock's futex word (no return probe)
 *  uprobe    pthread_{mutex,rwlock,spin}_*lock entry, other variants (lk_entry)  request time
 *  uretprobe the variants' return (and, with lock_return, the above) (lk_return) acquired or failed
 *  uprobe    pthread_cond_{,timed,clock}wait entry    (lk_entry)        the mutex is released
 *  uretprobe pthread_cond_*wait return                (lk_return)       the mutex is held again
 *  uprobe    pthread_{mutex,rwlock,spin}_unlock        (lk_entry)        hold ends
 *  tracepoint syscalls/sys_{enter,exit}_futex          (lk_futex_*)      waits, wakes, contention;
 *            the end of a blocking call's last wait on its lock's word is its acquisition
 *  tp_btf    sched_process_exec / sched_process_fork   (lk_exec, lk_fork) new processes to probe,
 *            announced once they have lived lk_attach_after_ns (bpf_timer; lk_proc_exit drops
 *            those that end before)
 *
 * Uprobes are attached by the user side to the target processes' libc only, never
 * system-wide; the futex tracepoints are the only hooks every process passes through, and they
 * return at once for threads outside the target unless the system-wide reference is on.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <procimage/bpf/procimage.bpf.h>
#include "lock.h"

char LICENSE[] SEC("license") = "GPL";

/* Set before load by the user side. */
const volatile bool lk_acq_events = false;   /* stream every hold / failed acquisition */
const volatile bool lk_system_on = true;     /* whole-system futex reference figures */
const volatile __u64 lk_contention_min_ns = 1000000;

/* Set at every activation by the user side (the mode depends on the target). */
__u64 lk_epoch_ns = 0; /* boot ns of the activation: per-thread state older than this is ignored */
__u32 lk_full = 0;     /* 1: hold tracking through uprobes; 0: contention-only mode */

#define EOWNERDEAD_ 130
#define ETIMEDOUT_ 110
#define EDEADLK_ 35

/* glibc's lock layouts (x86-64 and other LP64 ports) */
#define MUTEX_OWNER_OFF 8      /* pthread_mutex_t.__data.__owner: the holder's tid */
#define MUTEX_KIND_MASK 3      /* __kind (+16) & 3: 0 normal, 1 recursive, 2 error-checking, 3 adaptive */
#define MUTEX_RECURSIVE 1
#define MUTEX_ERRORCHECK 2
#define RWLOCK_CUR_WRITER_OFF 24 /* pthread_rwlock_t.__data.__cur_writer: the writer's tid */

#define CLOCK_MONOTONIC_ 1

#define FUTEX_WAIT_ 0
#define FUTEX_WAKE_ 1
#define FUTEX_REQUEUE_ 3
#define FUTEX_CMP_REQUEUE_ 4
#define FUTEX_WAKE_OP_ 5
#define FUTEX_LOCK_PI_ 6
#define FUTEX_UNLOCK_PI_ 7
#define FUTEX_WAIT_BITSET_ 9
#define FUTEX_WAKE_BITSET_ 10
#define FUTEX_WAIT_REQUEUE_PI_ 11
#define FUTEX_LOCK_PI2_ 13
#define FUTEX_CMD_MASK_ (~(128 | 256)) /* without FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} lk_events SEC(".maps");

/* Per-thread state: the lock call and the futex call under way. */
struct lk_task_state {
	/* lock call under way (uprobe entry -> return) */
	__u64 req_ns;
	__u64 req_addr;
	__u64 req_futex_ns;
	__u32 req_op;
	__u32 req_contended;
	/* futex call under way */
	__u64 fx_ns;
	__u64 fx_addr;
	__u32 fx_cmd;
	__u32 fx_wanted;
	/* the holder of the lock the futex word belongs to, at the wait's start */
	__u64 fx_lock_addr;
	__u64 fx_holder_since;
	__u32 fx_holder_tid;
	__u32 fx_holder_readers;
	__u32 fx_holder_type;
	/* locks this thread holds now */
	__u32 held;
	/* the blocking lock call without a return probe this thread made last (LK_CK_LOCK_NORET):
	 * its hold is pending until the thread's next lock-function call or the lock's release */
	__u64 pend_addr;
	__u32 pend_type;
	__u32 pend_pad;
	char fx_holder_comm[PI_COMM_LEN];
	/* pi_wanted() for this thread, as of activation generation wanted_gen */
	__u64 wanted_gen;
	__u32 wanted;
	__u32 pad;
};

/* lk_task is task storage (5.11 on); false: a hash keyed by thread id (see task_state). */
const volatile bool lk_task_storage = true;

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct lk_task_state);
} lk_task SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct lk_hold_key);
	__type(value, struct lk_hold);
} lk_holds SEC(".maps");

struct lk_owner_key {
	__u64 addr;
	__u32 tgid;
	__u32 pad;
};

struct lk_owner {
	__u64 since_ns;
	__u32 tid;     /* 0: held for reading by readers not known individually */
	__u32 readers; /* rwlock held for reading */
	__u32 type;
	__u32 pad;
	char comm[PI_COMM_LEN];
};

/* Who holds each lock now: a futex wait on the lock's word names it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct lk_owner_key);
	__type(value, struct lk_owner);
} lk_owner SEC(".maps");

struct lk_waker {
	__u64 ts_ns;
	__u32 tid;
	__u32 pad;
};

/* The last thread that woke each futex word of the target. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct lk_owner_key);
	__type(value, struct lk_waker);
} lk_wakers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096); /* config max_locks */
	__type(key, struct lk_lock_key);
	__type(value, struct lk_lock_stats);
} lk_locks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096); /* config max_threads */
	__type(key, __u32);
	__type(value, struct lk_thread_stats);
} lk_threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 8192); /* config max_futexes */
	__type(key, struct lk_futex_key);
	__type(value, struct lk_futex_stats);
} lk_futex SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2); /* 0: target, 1: whole system */
	__type(key, __u32);
	__type(value, struct lk_sys_stats);
} lk_system SEC(".maps");

/* Zeroed values to create entries from (too large for the BPF stack). */
struct lk_zero {
	struct lk_lock_stats lock;
	struct lk_thread_stats thread;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lk_zero);
} lk_zeroes SEC(".maps");

/* ------------------------------------------------------------------ helpers */

static __always_inline __u32 op_type(__u32 op)
{
	if (op >= LK_OP_MUTEX_LOCK && op <= LK_OP_MUTEX_CLOCKLOCK)
		return LK_TYPE_MUTEX;
	if (op >= LK_OP_RW_RDLOCK && op <= LK_OP_RW_CLOCKRDLOCK)
		return LK_TYPE_RWLOCK_READ;
	if (op >= LK_OP_RW_WRLOCK && op <= LK_OP_RW_CLOCKWRLOCK)
		return LK_TYPE_RWLOCK_WRITE;
	if (op == LK_OP_SPIN_LOCK || op == LK_OP_SPIN_TRYLOCK)
		return LK_TYPE_SPIN;
	if (op >= LK_OP_COND_WAIT && op <= LK_OP_COND_CLOCKWAIT)
		return LK_TYPE_MUTEX;
	return LK_TYPE_UNKNOWN;
}

static __always_inline bool is_cond(__u32 op)
{
	return op >= LK_OP_COND_WAIT && op <= LK_OP_COND_CLOCKWAIT;
}

/* The current thread's state, created (zeroed) if create. In lk_task, task storage from 5.11;
 * before it the user side makes lk_task a hash keyed by thread id (lk_task_storage false: the
 * verifier drops the task-storage branch as dead code) and lk_thread_exit deletes the entry. */
static __always_inline struct lk_task_state *task_state(bool create)
{
	if (lk_task_storage) {
		struct task_struct *t = bpf_get_current_task_btf();
		return bpf_task_storage_get(&lk_task, t, 0, create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
	}
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct lk_task_state *st = bpf_map_lookup_elem(&lk_task, &tid);
	if (st || !create)
		return st;
	struct lk_task_state zero = {};
	bpf_map_update_elem(&lk_task, &tid, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&lk_task, &tid);
}

/* The current process's start (its group leader's), ns since boot: with the pid, it names one
 * process across pid reuse. */
static __always_inline __u64 current_pid_start_ns(void)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	return BPF_CORE_READ(t, group_leader, start_boottime);
}

static __always_inline struct lk_lock_stats *lock_stats(__u32 tgid, __u32 type, __u64 addr)
{
	struct lk_lock_key key = {.addr = addr, .tgid = tgid, .type = type};
	struct lk_lock_stats *s = bpf_map_lookup_elem(&lk_locks, &key);
	if (s)
		return s;
	__u32 zero = 0;
	struct lk_zero *z = bpf_map_lookup_elem(&lk_zeroes, &zero);
	if (!z)
		return NULL;
	if (bpf_map_update_elem(&lk_locks, &key, &z->lock, BPF_NOEXIST) != 0 &&
	    !bpf_map_lookup_elem(&lk_locks, &key)) {
		pi_count_lost_as(LK_LOST_LOCKS);
		return NULL;
	}
	s = bpf_map_lookup_elem(&lk_locks, &key);
	if (s)
		s->pid_start_ns = current_pid_start_ns();
	return s;
}

static __always_inline struct lk_thread_stats *thread_stats(__u32 tgid, __u32 tid)
{
	struct lk_thread_stats *s = bpf_map_lookup_elem(&lk_threads, &tid);
	if (s)
		return s;
	__u32 zero = 0;
	struct lk_zero *z = bpf_map_lookup_elem(&lk_zeroes, &zero);
	if (!z)
		return NULL;
	if (bpf_map_update_elem(&lk_threads, &tid, &z->thread, BPF_NOEXIST) != 0 &&
	    !bpf_map_lookup_elem(&lk_threads, &tid)) {
		pi_count_lost_as(LK_LOST_THREADS);
		return NULL;
	}
	s = bpf_map_lookup_elem(&lk_threads, &tid);
	if (s) {
		s->tgid = tgid;
		s->pid_start_ns = current_pid_start_ns();
		bpf_get_current_comm(s->comm, sizeof(s->comm));
	}
	return s;
}

/* An acquisition ended: acquired (ok) or failed after wait_ns. */
static __always_inline void account_acquire(__u32 tgid, __u32 tid, __u32 type, __u64 addr, __u64 wait_ns,
					    bool ok, bool contended, bool count_wait)
{
	struct lk_lock_stats *ls = lock_stats(tgid, type, addr);
	if (ls) {
		if (ok)
			ls->acquisitions++;
		else
			ls->failed++;
		if (contended)
			ls->contended++;
		if (count_wait) {
			ls->wait_total_ns += wait_ns;
			if (wait_ns > ls->wait_max_ns)
				ls->wait_max_ns = wait_ns;
			ls->wait_hist[pi_log2_slot(wait_ns, LK_HIST_SLOTS)]++;
		}
	}
	struct lk_thread_stats *ts = thread_stats(tgid, tid);
	if (ts) {
		if (ok)
			ts->acquisitions++;
		else
			ts->failed++;
		if (contended)
			ts->contended++;
		if (count_wait) {
			ts->wait_total_ns += wait_ns;
			if (wait_ns > ts->wait_max_ns)
				ts->wait_max_ns = wait_ns;
			ts->wait_hist[pi_log2_slot(wait_ns, LK_HIST_SLOTS)]++;
		}
	}
}

static __always_inline void account_release(__u32 tgid, __u32 tid, __u32 type, __u64 addr, __u64 hold_ns)
{
	struct lk_lock_stats *ls = lock_stats(tgid, type, addr);
	if (ls) {
		ls->releases++;
		ls->hold_total_ns += hold_ns;
		if (hold_ns > ls->hold_max_ns)
			ls->hold_max_ns = hold_ns;
		ls->hold_hist[pi_log2_slot(hold_ns, LK_HIST_SLOTS)]++;
	}
	struct lk_thread_stats *ts = thread_stats(tgid, tid);
	if (ts) {
		ts->releases++;
		ts->hold_total_ns += hold_ns;
		if (hold_ns > ts->hold_max_ns)
			ts->hold_max_ns = hold_ns;
		ts->hold_hist[pi_log2_slot(hold_ns, LK_HIST_SLOTS)]++;
	}
}

static __always_inline void emit_acq(__u64 addr, __u64 req, __u64 acq, __u64 wait, __u64 hold, __u64 fwait,
				     __u32 op, __u32 type, __s32 ret, __u32 nest, __u32 contended)
{
	/* --failed: only failed attempts (a trylock's EBUSY, a timed lock's ETIMEDOUT, ...);
	 * --min-duration: only waits that long. The aggregates counted the acquisition already. */
	if ((pi_filter_failed && ret == 0) || wait < pi_filter_min_ns)
		return;
	struct lk_acq *e = pi_reserve(&lk_events, sizeof(*e));
	if (!e)
		return;
	pi_fill_header_current(&e->h, LK_ACQ, sizeof(*e));
	e->lock_addr = addr;
	e->request_ns = req;
	e->acquired_ns = acq;
	e->wait_ns = wait;
	e->hold_ns = hold;
	e->futex_wait_ns = fwait;
	e->op = op;
	e->type = type;
	e->ret = ret;
	e->depth = nest;
	e->contended = contended;
	e->pad = 0;
	pi_submit(&lk_events, e);
}

/* Who holds an rwlock: a mutex names its owner itself (its __owner field, read when a thread
 * waits), a spinlock never puts a thread to sleep; only rwlocks need this map. Returns whether
 * the thread is now counted as a holder. force: the thread has the lock (a return probe saw it,
 * or it woke from a wait on the lock's word), so an incompatible record is out of date and is
 * replaced; otherwise (a blocking call's entry, before it has the lock) an incompatible record
 * means the thread is about to wait and it is not counted yet. */
static __always_inline bool owner_acquire(__u32 tgid, __u32 tid, __u64 addr, __u32 type, __u64 now, bool force)
{
	if (type != LK_TYPE_RWLOCK_READ && type != LK_TYPE_RWLOCK_WRITE)
		return false;
	struct lk_owner_key key = {.addr = addr, .tgid = tgid};
	struct lk_owner *cur = bpf_map_lookup_elem(&lk_owner, &key);
	if (cur) {
		if (type == LK_TYPE_RWLOCK_READ && cur->type == LK_TYPE_RWLOCK_READ) {
			__sync_fetch_and_add(&cur->readers, 1);
			return true;
		}
		if (!force)
			return false;
	}
	struct lk_owner o = {.since_ns = now, .tid = tid, .type = type,
			     .readers = type == LK_TYPE_RWLOCK_READ ? 1 : 0};
	bpf_get_current_comm(o.comm, sizeof(o.comm));
	if (bpf_map_update_elem(&lk_owner, &key, &o, BPF_ANY) != 0) {
		pi_count_lost_as(LK_LOST_OWNERS);
		return false;
	}
	return true;
}

static __always_inline void owner_release(__u32 tgid, __u32 tid, __u64 addr, __u32 type)
{
	if (type != LK_TYPE_RWLOCK_READ && type != LK_TYPE_RWLOCK_WRITE)
		return;
	struct lk_owner_key key = {.addr = addr, .tgid = tgid};
	struct lk_owner *o = bpf_map_lookup_elem(&lk_owner, &key);
	if (!o)
		return;
	if (type == LK_TYPE_RWLOCK_READ && o->type == LK_TYPE_RWLOCK_READ) {
		/* The add's result is not used: a fetching atomic needs 5.12; this one is in every
		 * kernel. Two readers leaving at once may both see 0 and both delete: harmless. */
		__sync_fetch_and_add(&o->readers, -1);
		if (*(volatile __typeof__(o->readers) *)&o->readers > 0) {
			/* other readers remain; the one named may be gone */
			if (o->tid == tid)
				o->tid = 0;
			return;
		}
		bpf_map_delete_elem(&lk_owner, &key);
		return;
	}
	if (o->tid == tid)
		bpf_map_delete_elem(&lk_owner, &key);
}

/* A pending hold's acquisition time is final: account the acquisition. */
static __always_inline void settle(__u32 tgid, __u32 tid, __u64 addr, struct lk_hold *h)
{
	h->pending = 0;
	account_acquire(tgid, tid, h->type, addr, h->wait_ns, true, h->contended, true);
}

/* The thread entered a lock function: its last blocking call without a return probe has
 * returned, so that acquisition is final. */
static __always_inline void settle_pending(struct lk_task_state *st, __u32 tgid, __u32 tid)
{
	__u64 addr = st->pend_addr;
	if (!addr)
		return;
	st->pend_addr = 0;
	struct lk_hold_key key = {.addr = addr, .tid = tid};
	struct lk_hold *h = bpf_map_lookup_elem(&lk_holds, &key);
	if (h && h->pending)
		settle(tgid, tid, addr, h);
}

/* Forget a hold without a release (its lock call failed, or the thread no longer has the lock). */
static __always_inline void drop_hold(struct lk_task_state *st, __u32 tgid, __u32 tid, __u64 addr, struct lk_hold *h)
{
	if (h->owner_set)
		owner_release(tgid, tid, addr, h->type);
	struct lk_hold_key key = {.addr = addr, .tid = tid};
	bpf_map_delete_elem(&lk_holds, &key);
	if (st->held > 0)
		st->held--;
}

/* End the hold of (tid, addr), if one is tracked. st may be NULL. */
static __always_inline void release(struct lk_task_state *st, __u32 tgid, __u32 tid, __u64 addr)
{
	if (st && st->pend_addr) {
		if (st->pend_addr == addr)
			st->pend_addr = 0; /* the hold found below is settled there */
		else
			settle_pending(st, tgid, tid);
	}
	struct lk_hold_key key = {.addr = addr, .tid = tid};
	struct lk_hold *h = bpf_map_lookup_elem(&lk_holds, &key);
	if (!h)
		return; /* taken before activation, or not a lock we saw taken */
	if (h->pending)
		settle(tgid, tid, addr, h);
	if (h->depth > 1) {
		h->depth--; /* recursive mutex, or a read lock taken again */
		return;
	}
	__u64 now = bpf_ktime_get_boot_ns();
	__u64 hold = now - h->acquired_ns;
	__u32 type = h->type;
	account_release(tgid, tid, type, addr, hold);
	if (lk_acq_events)
		emit_acq(addr, h->request_ns, h->acquired_ns, h->wait_ns, hold, h->futex_wait_ns, h->op, type, 0,
			 h->nest, h->contended);
	if (h->owner_set)
		owner_release(tgid, tid, addr, type);
	bpf_map_delete_elem(&lk_holds, &key);
	if (st && st->held > 0)
		st->held--;
}

/* ------------------------------------------------------------------ uprobes */

/* pi_wanted() for the current thread, remembered per thread for the current activation: lock
 * entries are the hottest hooks, and the target of a thread does not change within one. */
static __always_inline bool wanted_cached(__u32 tgid, __u32 tid)
{
	__u32 slot = pi_slot;
	struct pi_control *c = bpf_map_lookup_elem(&pi_control, &slot);
	if (!c || c->mode == PI_MODE_OFF)
		return false;
	struct lk_task_state *st = task_state(true);
	if (!st)
		return false;
	if (st->wanted_gen == c->generation) {
		/* a cgroup target's threads can join or leave it within an activation, and a
		 * thread's name (the comm filter) can change */
		if (pi_target_changes(c))
			st->wanted = pi_wanted(tgid, tid);
		return st->wanted;
	}
	/* a new activation: holds of the previous one were forgotten with it */
	st->held = 0;
	st->pend_addr = 0;
	st->wanted = pi_wanted(tgid, tid);
	st->wanted_gen = c->generation;
	return st->wanted;
}

static __always_inline int lock_request(__u64 addr, __u32 op)
{
	struct lk_task_state *st = task_state(true);
	if (!st)
		return 0;
	settle_pending(st, (__u32)(bpf_get_current_pid_tgid() >> 32), (__u32)bpf_get_current_pid_tgid());
	st->req_ns = bpf_ktime_get_boot_ns();
	st->req_addr = addr;
	st->req_op = op;
	st->req_futex_ns = 0;
	st->req_contended = 0;
	return 0;
}

/* The lock call under way in this thread returned ret. */
/* Store a new hold of (thread, lock), counted in st->held by the caller. A full lk_holds map
 * undoes it: counted lost, and the owner record taken for it released. */
static __always_inline bool put_hold(struct lk_task_state *st, __u32 tgid, __u32 tid, __u64 addr, __u32 type,
				     struct lk_hold_key *key, struct lk_hold *nh)
{
	if (bpf_map_update_elem(&lk_holds, key, nh, BPF_ANY) == 0)
		return true;
	pi_count_lost_as(LK_LOST_HOLDS);
	st->held--;
	if (nh->owner_set)
		owner_release(tgid, tid, addr, type);
	return false;
}

static __always_inline int lock_done(struct lk_task_state *st, int ret)
{
	__u64 req = st->req_ns;
	st->req_ns = 0;
	if (req < lk_epoch_ns)
		return 0; /* begun under an earlier activation */
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	__u64 now = bpf_ktime_get_boot_ns();
	__u64 addr = st->req_addr;
	__u32 op = st->req_op;
	__u32 type = op_type(op);
	bool cond = is_cond(op);
	/* pthread_cond_*wait: the time before return is spent waiting for the condition, not
	 * for the mutex: the new hold starts at the return, with no lock wait */
	__u64 wait = cond ? 0 : now - req;
	__u32 contended = cond ? 0 : st->req_contended;
	__u64 fwait = cond ? 0 : st->req_futex_ns;
	bool ok = ret == 0 || ret == EOWNERDEAD_ || cond;
	account_acquire(tgid, tid, type, addr, wait, ok, contended, !cond);
	if (!ok) {
		if (lk_acq_events)
			emit_acq(addr, req, 0, wait, 0, fwait, op, type, ret, st->held, contended);
		return 0;
	}
	struct lk_hold_key key = {.addr = addr, .tid = tid};
	struct lk_hold *h = bpf_map_lookup_elem(&lk_holds, &key);
	if (h) {
		h->depth++;
		return 0;
	}
	st->held++;
	struct lk_hold nh = {
		.request_ns = cond ? now : req, .acquired_ns = now, .wait_ns = wait, .futex_wait_ns = fwait,
		.op = op, .type = type, .depth = 1, .nest = st->held, .contended = contended, .tgid = tgid,
	};
	nh.owner_set = owner_acquire(tgid, tid, addr, type, now, true);
	put_hold(st, tgid, tid, addr, type, &key, &nh);
	return 0;
}

/* What a blocking call by a thread that has a hold of the same lock does: */
enum relock_result {
	RELOCK_AGAIN,    /* takes it again (recursive mutex, another read lock): depth + 1 */
	RELOCK_EDEADLK,  /* fails at once with EDEADLK (error-checking mutex, rwlock it writes) */
	RELOCK_HANGS,    /* never returns (normal mutex, write lock over its own read lock) */
	RELOCK_STALE,    /* the thread does not have the lock: the hold is left from a failed call */
};

static __always_inline enum relock_result relock(struct lk_hold *h, __u64 addr, __u32 tid, __u32 type)
{
	if (type == LK_TYPE_MUTEX) {
		__u32 w[3] = {}; /* __owner, __nusers, __kind */
		if (h->type != LK_TYPE_MUTEX ||
		    bpf_probe_read_user(w, sizeof(w), (void *)(addr + MUTEX_OWNER_OFF)) != 0 || w[0] != tid)
			return RELOCK_STALE;
		switch (w[2] & MUTEX_KIND_MASK) {
		case MUTEX_RECURSIVE: return RELOCK_AGAIN;
		case MUTEX_ERRORCHECK: return RELOCK_EDEADLK;
		default: return RELOCK_HANGS;
		}
	}
	if (h->type == LK_TYPE_RWLOCK_WRITE) {
		__u32 writer = 0;
		if (bpf_probe_read_user(&writer, sizeof(writer), (void *)(addr + RWLOCK_CUR_WRITER_OFF)) != 0 ||
		    writer != tid)
			return RELOCK_STALE;
		return RELOCK_EDEADLK; /* glibc refuses rd- and wrlock by the writer */
	}
	if (h->type != LK_TYPE_RWLOCK_READ)
		return RELOCK_STALE;
	return type == LK_TYPE_RWLOCK_READ ? RELOCK_AGAIN : RELOCK_HANGS;
}

/*
 * Entry of pthread_mutex_lock / pthread_rwlock_rdlock / pthread_rwlock_wrlock without a return
 * probe (one trap per call instead of two). These calls return only once they have the lock
 * (the errors they can return are handled below or documented), so the hold starts now, as
 * acquired at the request with no wait. If the call then sleeps on the lock's futex word, the
 * end of its last such wait becomes the acquisition (lk_futex_exit). The acquisition is
 * accounted once it is final: at the thread's next lock-function call or at the release.
 */
static __always_inline int lock_enter_noret(struct lk_task_state *st, __u32 tgid, __u32 tid, __u64 addr, __u32 op)
{
	settle_pending(st, tgid, tid);
	st->req_ns = 0; /* no return-probed call is under way any more */
	__u64 now = bpf_ktime_get_boot_ns();
	__u32 type = op_type(op);
	struct lk_hold_key key = {.addr = addr, .tid = tid};
	struct lk_hold *h = bpf_map_lookup_elem(&lk_holds, &key);
	if (h) {
		switch (relock(h, addr, tid, type)) {
		case RELOCK_AGAIN:
			h->depth++;
			account_acquire(tgid, tid, type, addr, 0, true, false, true);
			return 0;
		case RELOCK_EDEADLK:
			account_acquire(tgid, tid, type, addr, 0, false, false, true);
			if (lk_acq_events)
				emit_acq(addr, now, 0, 0, 0, 0, op, type, EDEADLK_, st->held, 0);
			return 0;
		case RELOCK_HANGS:
			return 0;
		case RELOCK_STALE:
			drop_hold(st, tgid, tid, addr, h);
			break;
		}
	}
	st->held++;
	struct lk_hold nh = {
		.request_ns = now, .acquired_ns = now, .op = op, .type = type, .depth = 1,
		.nest = st->held, .tgid = tgid, .pending = 1,
	};
	nh.owner_set = owner_acquire(tgid, tid, addr, type, now, false);
	if (!put_hold(st, tgid, tid, addr, type, &key, &nh))
		return 0;
	st->pend_addr = addr;
	st->pend_type = type;
	return 0;
}

/* Is uaddr a futex word of the lock at addr? A mutex's word is the mutex; an rwlock (glibc >=
 * 2.25) sleeps on __readers (+0), __wrphase_futex (+8) or __writers_futex (+12). */
static __always_inline bool lock_word(__u64 addr, __u32 type, __u64 uaddr)
{
	if (type == LK_TYPE_MUTEX)
		return uaddr == addr;
	__u64 d = uaddr - addr;
	return d == 0 || d == 8 || d == 12;
}

/* The thread's pending blocking call sleeps on its lock's word: it does not have the lock, so
 * it must not be named as the rwlock's holder meanwhile. */
static __always_inline void pending_sleeps(struct lk_task_state *st, __u32 tgid, __u32 tid)
{
	if (st->pend_type == LK_TYPE_MUTEX)
		return; /* mutexes are not in lk_owner */
	struct lk_hold_key key = {.addr = st->pend_addr, .tid = tid};
	struct lk_hold *h = bpf_map_lookup_elem(&lk_holds, &key);
	if (!h || !h->pending || !h->owner_set)
		return;
	owner_release(tgid, tid, st->pend_addr, h->type);
	h->owner_set = 0;
}

/* ... and woke after dur ns: it has the lock now, unless it sleeps again. */
static __always_inline void pending_woke(struct lk_task_state *st, __u32 tgid, __u32 tid, __u64 now, __u64 dur)
{
	struct lk_hold_key key = {.addr = st->pend_addr, .tid = tid};
	struct lk_hold *h = bpf_map_lookup_elem(&lk_holds, &key);
	if (!h || !h->pending)
		return;
	h->acquired_ns = now;
	h->wait_ns = now - h->request_ns;
	h->futex_wait_ns += dur;
	h->contended = 1;
	if (!h->owner_set)
		h->owner_set = owner_acquire(tgid, tid, st->pend_addr, h->type, now, true);
}

SEC("uretprobe")
int BPF_KRETPROBE(lk_return, int ret)
{
	struct lk_task_state *st = task_state(false);
	if (!st || !st->req_ns)
		return 0;
	return lock_done(st, ret);
}

/*
 * Every entry-side probe runs lk_entry; its BPF cookie says what the probed place is:
 * LK_CK_KIND(cookie) the role, LK_CK_OP(cookie) the function (enum lk_op).
 *
 * pthread_spin_lock cannot carry an entry uprobe on x86-64 glibc: its first instruction is
 * `lock decl (%rdi)` and uprobes refuse lock-prefixed instructions. Its body is
 *   +0 lock decl (%rdi); +3 jne spin; +5 xor %eax,%eax; +7 ret; spin: ... jg +0
 * so the user side probes +3 (after each attempt: the first one is the request) and +5 (the
 * lock is taken) when it finds exactly these bytes.
 */
SEC("uprobe")
int BPF_KPROBE(lk_entry, void *a0, void *a1)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 kind = LK_CK_KIND(cookie), op = LK_CK_OP(cookie);
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	if (kind == LK_CK_SPIN_ACQUIRED) {
		/* only threads with a request under way: no target check needed */
		struct lk_task_state *st = task_state(false);
		if (!st || !st->req_ns || st->req_op != LK_OP_SPIN_LOCK)
			return 0;
		return lock_done(st, 0);
	}
	if (kind == LK_CK_UNLOCK) {
		/* only a tracked hold matters, and those are the target's */
		release(task_state(false), tgid, tid, (__u64)a0);
		return 0;
	}
	if (!wanted_cached(tgid, tid))
		return 0;
	switch (kind) {
	case LK_CK_LOCK_NORET: {
		struct lk_task_state *st = task_state(false);
		return st ? lock_enter_noret(st, tgid, tid, (__u64)a0, op) : 0;
	}
	case LK_CK_LOCK:
		return lock_request((__u64)a0, op);
	case LK_CK_COND:
		/* the mutex is released while the thread waits on the condition */
		release(task_state(false), tgid, tid, (__u64)a1);
		return lock_request((__u64)a1, op);
	case LK_CK_SPIN_ATTEMPT: {
		struct lk_task_state *st = task_state(false);
		if (st && st->req_ns && st->req_op == LK_OP_SPIN_LOCK && st->req_addr == (__u64)a0)
			return 0; /* a retry after spinning */
		return lock_request((__u64)a0, LK_OP_SPIN_LOCK);
	}
	}
	return 0;
}

/* ------------------------------------------------------------------ futex */

static __always_inline bool futex_is_wait(__u32 cmd)
{
	return cmd == FUTEX_WAIT_ || cmd == FUTEX_WAIT_BITSET_ || cmd == FUTEX_LOCK_PI_ ||
	       cmd == FUTEX_LOCK_PI2_ || cmd == FUTEX_WAIT_REQUEUE_PI_;
}

static __always_inline bool futex_is_wake(__u32 cmd)
{
	return cmd == FUTEX_WAKE_ || cmd == FUTEX_WAKE_BITSET_ || cmd == FUTEX_UNLOCK_PI_ ||
	       cmd == FUTEX_WAKE_OP_ || cmd == FUTEX_REQUEUE_ || cmd == FUTEX_CMP_REQUEUE_;
}

/* The tracked lock a futex word belongs to, and its holder. A mutex's word is the mutex itself
 * and glibc keeps the owner's thread id in it (__owner, +8): the holder is confirmed by our own
 * hold record. An rwlock (glibc >= 2.25) waits on __readers (+0), __wrphase_futex (+8) or
 * __writers_futex (+12); its holders are in lk_owner. */
static __always_inline bool find_holder(struct lk_task_state *st, __u32 tgid, __u64 uaddr)
{
	struct lk_owner_key key = {.addr = uaddr, .tgid = tgid};
	__u64 offs[3] = {0, 8, 12};
	for (int i = 0; i < 3; i++) {
		key.addr = uaddr - offs[i];
		struct lk_owner *o = bpf_map_lookup_elem(&lk_owner, &key);
		if (o) {
			st->fx_lock_addr = key.addr;
			st->fx_holder_tid = o->tid;
			st->fx_holder_readers = o->readers;
			st->fx_holder_type = o->type;
			st->fx_holder_since = o->since_ns;
			__builtin_memcpy(st->fx_holder_comm, o->comm, sizeof(st->fx_holder_comm));
			return true;
		}
	}
	__u32 owner = 0;
	if (bpf_probe_read_user(&owner, sizeof(owner), (void *)(uaddr + 8)) != 0 || !owner)
		return false;
	struct lk_hold_key hk = {.addr = uaddr, .tid = owner};
	struct lk_hold *h = bpf_map_lookup_elem(&lk_holds, &hk);
	if (!h || h->type != LK_TYPE_MUTEX || h->tgid != tgid)
		return false;
	st->fx_lock_addr = uaddr;
	st->fx_holder_tid = owner;
	st->fx_holder_readers = 0;
	st->fx_holder_type = LK_TYPE_MUTEX;
	st->fx_holder_since = h->acquired_ns;
	st->fx_holder_comm[0] = 0; /* named by the user side */
	return true;
}

SEC("tracepoint/syscalls/sys_enter_futex")
int lk_futex_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u32 cmd = (__u32)ctx->args[1] & FUTEX_CMD_MASK_;
	bool wait = futex_is_wait(cmd);
	if (!wait && !futex_is_wake(cmd))
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	bool wanted = pi_wanted(tgid, tid);
	if (!wanted && (!lk_system_on || !pi_active()))
		return 0;
	struct lk_task_state *st = task_state(true);
	if (!st)
		return 0;
	__u64 now = bpf_ktime_get_boot_ns();
	__u64 uaddr = ctx->args[0];
	st->fx_ns = now;
	st->fx_addr = uaddr;
	st->fx_cmd = cmd;
	st->fx_wanted = wanted;
	st->fx_holder_tid = 0;
	st->fx_holder_readers = 0;
	st->fx_holder_type = 0;
	st->fx_lock_addr = 0;
	st->fx_holder_since = 0;
	if (!wanted)
		return 0;
	if (wait) {
		if (!lk_full)
			return 0;
		if (st->pend_addr && lock_word(st->pend_addr, st->pend_type, uaddr))
			pending_sleeps(st, tgid, tid);
		find_holder(st, tgid, uaddr);
	} else {
		struct lk_owner_key key = {.addr = uaddr, .tgid = tgid};
		struct lk_waker w = {.ts_ns = now, .tid = tid};
		if (bpf_map_update_elem(&lk_wakers, &key, &w, BPF_ANY) != 0)
			pi_count_lost_as(LK_LOST_WAKERS);
	}
	return 0;
}

static __always_inline void sys_account(__u32 idx, bool wait, __u64 dur, long ret)
{
	struct lk_sys_stats *s = bpf_map_lookup_elem(&lk_system, &idx);
	if (!s)
		return;
	if (wait) {
		s->waits++;
		s->wait_total_ns += dur;
		if (dur > s->wait_max_ns)
			s->wait_max_ns = dur;
		s->wait_hist[pi_log2_slot(dur, LK_HIST_SLOTS)]++;
	} else {
		s->wakes++;
		if (ret > 0)
			s->woken += ret;
	}
}

SEC("tracepoint/syscalls/sys_exit_futex")
int lk_futex_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct lk_task_state *st = task_state(false);
	if (!st || !st->fx_ns)
		return 0;
	__u64 start = st->fx_ns;
	st->fx_ns = 0;
	if (start < lk_epoch_ns)
		return 0;
	__u64 now = bpf_ktime_get_boot_ns();
	__u64 dur = now - start;
	long ret = ctx->ret;
	bool wait = futex_is_wait(st->fx_cmd);
	if (lk_system_on)
		sys_account(1, wait, dur, ret);
	if (!st->fx_wanted)
		return 0;
	sys_account(0, wait, dur, ret);
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	struct lk_futex_key key = {.addr = st->fx_addr, .tgid = tgid, .tid = tid};
	struct lk_futex_stats *fs = bpf_map_lookup_elem(&lk_futex, &key);
	if (!fs) {
		struct lk_futex_stats z = {};
		if (bpf_map_update_elem(&lk_futex, &key, &z, BPF_NOEXIST) != 0 && !bpf_map_lookup_elem(&lk_futex, &key))
			pi_count_lost_as(LK_LOST_FUTEXES);
		fs = bpf_map_lookup_elem(&lk_futex, &key);
		if (fs && !fs->pid_start_ns)
			fs->pid_start_ns = current_pid_start_ns();
	}
	if (fs) {
		if (wait) {
			fs->waits++;
			fs->wait_total_ns += dur;
			if (dur > fs->wait_max_ns)
				fs->wait_max_ns = dur;
			if (ret == -ETIMEDOUT_)
				fs->timeouts++;
		} else {
			fs->wakes++;
			if (ret > 0)
				fs->woken += ret;
		}
	}
	if (!wait)
		return 0;
	/* a wait inside a lock call makes that acquisition contended */
	if (st->req_ns && !is_cond(st->req_op)) {
		st->req_futex_ns += dur;
		st->req_contended = 1;
	} else if (st->pend_addr && lock_word(st->pend_addr, st->pend_type, st->fx_addr)) {
		pending_woke(st, tgid, tid, now, dur);
	}
	if (dur < lk_contention_min_ns || dur < pi_filter_min_ns)
		return 0;
	/* --failed: only a wait that timed out (a timed lock giving up) */
	if (pi_filter_failed && ret != -ETIMEDOUT_)
		return 0;
	if (lk_full && !st->fx_lock_addr)
		return 0; /* not a tracked lock (a condition variable, a semaphore, ...) */
	struct lk_contention *e = pi_reserve(&lk_events, sizeof(*e));
	if (!e)
		return 0;
	pi_fill_header_current(&e->h, LK_CONTENTION, sizeof(*e));
	e->futex_addr = st->fx_addr;
	e->lock_addr = st->fx_lock_addr;
	e->wait_ns = dur;
	e->holder_held_ns = st->fx_holder_since && st->fx_holder_since < start ? start - st->fx_holder_since : 0;
	e->holder_tid = st->fx_holder_tid;
	e->holder_readers = st->fx_holder_readers;
	e->lock_type = st->fx_holder_type;
	e->ret = (__s32)ret;
	e->futex_op = st->fx_cmd;
	__builtin_memcpy(e->holder_comm, st->fx_holder_comm, sizeof(e->holder_comm));
	e->waker_tid = 0;
	struct lk_owner_key wk = {.addr = st->fx_addr, .tgid = tgid};
	struct lk_waker *w = bpf_map_lookup_elem(&lk_wakers, &wk);
	if (w && w->ts_ns >= start)
		e->waker_tid = w->tid;
	pi_submit(&lk_events, e);
	return 0;
}

/* ------------------------------------------------------------------ new target processes */

/* A new target process gets its uprobes only once it has lived lk_attach_after_ns (0: at
 * once). Registering uprobes costs the kernel far more than a short process lives (a
 * /bin/true of a shell loop), so a process that forks or execs waits here with a timer; one
 * that ends first is dropped without the user side hearing of it, and one still alive when
 * the timer fires is announced to the user side then. */
const volatile __u64 lk_attach_after_ns = 0;

struct lk_young {
	struct bpf_timer timer;
	__u64 pid_start_ns;
	__u32 pid;
	__u32 why; /* enum lk_newproc_why: the latest of its fork and exec */
	char comm[PI_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct lk_young);
} lk_young SEC(".maps");

static __always_inline void emit_newproc(struct task_struct *t, __u32 pid, __u32 why)
{
	struct lk_newproc *e = pi_reserve(&lk_events, sizeof(*e));
	if (!e)
		return;
	pi_fill_header(&e->h, LK_NEWPROC, sizeof(*e), t);
	e->pid = pid;
	e->why = why;
	/* wake the host now: the sooner it attaches, the less of the new process is missed */
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
}

/* The process has lived lk_attach_after_ns since its last fork or exec: announce it. */
static int young_due(void *map, __u32 *key, struct lk_young *y)
{
	struct lk_newproc *e = pi_reserve(&lk_events, sizeof(*e));
	if (e) {
		e->h.kind = LK_NEWPROC;
		e->h.size = sizeof(*e);
		e->h.cpu = bpf_get_smp_processor_id();
		e->h.ts_boot_ns = bpf_ktime_get_boot_ns();
		e->h.pid = y->pid;
		e->h.tid = y->pid;
		e->h.pid_start_ns = y->pid_start_ns;
		__builtin_memcpy(e->h.comm, y->comm, sizeof(e->h.comm));
		e->h.cgroup_id = 0; /* the host names it from the process's earlier records */
		e->pid = y->pid;
		e->why = y->why;
		bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	}
	bpf_map_delete_elem(map, key);
	return 0;
}

static __always_inline void new_process(struct task_struct *t, __u32 pid, __u32 why)
{
	if (!lk_attach_after_ns) {
		emit_newproc(t, pid, why);
		return;
	}
	struct lk_young *y = bpf_map_lookup_elem(&lk_young, &pid);
	if (!y) {
		struct lk_young z = {};
		if (bpf_map_update_elem(&lk_young, &pid, &z, BPF_NOEXIST) != 0 ||
		    !(y = bpf_map_lookup_elem(&lk_young, &pid))) {
			emit_newproc(t, pid, why); /* no room to wait: attach now */
			return;
		}
		bpf_timer_init(&y->timer, &lk_young, CLOCK_MONOTONIC_);
		bpf_timer_set_callback(&y->timer, young_due);
	}
	y->pid = pid;
	y->why = why;
	y->pid_start_ns = BPF_CORE_READ(t, group_leader, start_boottime);
	BPF_CORE_READ_STR_INTO(&y->comm, t, comm);
	/* (re)started: an exec shortly after the fork counts from the exec */
	if (bpf_timer_start(&y->timer, lk_attach_after_ns, 0) != 0) {
		bpf_map_delete_elem(&lk_young, &pid);
		emit_newproc(t, pid, why);
	}
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(lk_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);
	if (!pi_wanted(tgid, BPF_CORE_READ(p, pid)))
		return 0;
	new_process(p, tgid, LK_NEW_EXEC);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(lk_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	if (ctgid == ptgid)
		return 0;
	/* A cgroup target holds the child if its cgroup is in it (it may have been created in
	 * another cgroup than its parent's, with CLONE_INTO_CGROUP); any other target follows
	 * the parent. */
	__u32 slot = pi_slot;
	struct pi_control *c = bpf_map_lookup_elem(&pi_control, &slot);
	bool wanted = pi_cgroup_mode(c) ? pi_wanted_in(ctgid, BPF_CORE_READ(child, pid), child)
					: pi_wanted(ptgid, BPF_CORE_READ(parent, pid));
	if (!wanted)
		return 0;
	new_process(child, ctgid, LK_NEW_FORK);
	return 0;
}

/* A process that ends before its timer fired never gets uprobes: its wait is dropped (which
 * cancels the timer). Attached with lk_exec when lk_attach_after_ns is set. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(lk_proc_exit, struct task_struct *p)
{
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0; /* other threads of the process still run */
	__u32 tgid = BPF_CORE_READ(p, tgid);
	bpf_map_delete_elem(&lk_young, &tgid);
	return 0;
}

/* A process (or one of its threads) moved into another cgroup: when that puts it in a cgroup
 * target, the host attaches to it as to a new process. Runs after the move. */
SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(lk_cgroup_attach, struct cgroup *dst, const char *path, struct task_struct *task, bool threadgroup)
{
	__u32 slot = pi_slot;
	struct pi_control *c = bpf_map_lookup_elem(&pi_control, &slot);
	if (!pi_cgroup_mode(c))
		return 0;
	__u32 tgid = BPF_CORE_READ(task, tgid);
	if (!pi_wanted_in(tgid, BPF_CORE_READ(task, pid), task))
		return 0;
	new_process(task, tgid, LK_NEW_CGROUP); /* new to the target: the same rule as a fork */
	return 0;
}

/* Loaded only where lk_task is a hash: a thread's state leaves with the thread. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(lk_thread_exit, struct task_struct *p)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	bpf_map_delete_elem(&lk_task, &tid);
	return 0;
}
