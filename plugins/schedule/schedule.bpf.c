// SPDX-License-Identifier: GPL-2.0
/*
 * schedule: run-queue delay (time runnable but waiting for a CPU) of the target's threads and
 * of the whole system, aggregated in the kernel.
 *
 *  sched_wakeup, sched_wakeup_new (tp_btf)  a sleeping or new task becomes runnable: stamp
 *  sched_switch (tp_btf)                    the previous task, if still runnable, waits again
 *                                           from now (stamp); the next task's wait ends: delay
 *  sched_process_free (tp_btf)              a freed thread's figures leave sc_threads as a record
 *
 * The stamp lives in task-local storage (sc_tasks), not in a map keyed by thread id: it goes
 * away with the task (no stale entry for a reused id), needs no delete, and costs less than a
 * hash lookup on the two hottest paths of the scheduler. A thread that migrates while it waits
 * keeps its stamp, so its delay is the whole wait, as in the kernel's run_delay.
 *
 * A stamp is used at most once and only if it is valid: taken in this activation (generation)
 * and the task has not run since it was taken (se.sum_exec_runtime unchanged). So a timestamp
 * from before the activation, or one left behind by a switch-in the tracepoint did not report,
 * never becomes a delay.
 *
 * Kernels before 5.11 have no task storage: there the user side turns sc_tasks into a hash
 * keyed by thread id (sc_task_storage false) before load, the verifier drops the task-storage
 * calls as dead code, and sc_free deletes a freed thread's entry.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <procimage/bpf/procimage.bpf.h>
#include "schedule.h"

char LICENSE[] SEC("license") = "GPL";

/* Collect the whole-system reference figures (every task is stamped, not only targets). */
const volatile bool sc_system_on = true;

/* sc_tasks is task storage (5.11 on); false: a hash keyed by thread id. */
const volatile bool sc_task_storage = true;

/* Current reporting interval, advanced by the user side at each tick (see struct sc_window). */
__u64 sc_epoch = 0;
/* When the activation began (CLOCK_MONOTONIC ns), set by the user side at attach. */
__u64 sc_start_ns = 0;

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sc_task);
} sc_tasks SEC(".maps");

/* Allocated as threads first wait, freed when they are: memory follows the target's size. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384); /* set from the configuration */
	__type(key, __u32);
	__type(value, struct sc_thread);
} sc_threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sc_cpu);
} sc_system SEC(".maps");

/* Never written: the zero value new sc_threads entries are created from. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sc_thread);
} sc_zero SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024); /* set from the configuration */
} sc_events SEC(".maps");

#define TASK_RUNNING_STATE 0

/* p's stamp, created (zeroed) if create; NULL when absent or when the map is full. */
static __always_inline struct sc_task *task_stamp(struct task_struct *p, bool create)
{
	if (sc_task_storage)
		return bpf_task_storage_get(&sc_tasks, p, 0, create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
	__u32 tid = p->pid;
	struct sc_task *t = bpf_map_lookup_elem(&sc_tasks, &tid);
	if (t || !create)
		return t;
	struct sc_task zero = {};
	bpf_map_update_elem(&sc_tasks, &tid, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&sc_tasks, &tid);
}

static __always_inline struct pi_control *active_control(void)
{
	__u32 slot = pi_slot;
	struct pi_control *c = bpf_map_lookup_elem(&pi_control, &slot);
	if (!c || c->mode == PI_MODE_OFF)
		return NULL;
	return c;
}

/* pi_wanted() for a task, cached in its storage for the activation (the target of a live task
 * changes only with a new activation, which bumps the generation). */
static __always_inline bool task_wanted(struct task_struct *p, struct sc_task *t, const struct pi_control *c)
{
	if (!t)
		return pi_wanted_in(p->tgid, p->pid, p);
	__u64 gen = c->generation;
	/* (a cgroup target's threads join and leave it within an activation, and a thread's name
	 * changes for the comm filter: asked every time) */
	if (t->wanted_gen != gen || pi_target_changes(c)) {
		t->wanted = pi_wanted_in(p->tgid, p->pid, p);
		t->wanted_gen = gen;
	}
	return t->wanted;
}

static __always_inline void add_delay(struct sc_stats *s, struct sc_window *win, __u64 epoch, __u64 d)
{
	s->count++;
	s->sum_ns += d;
	if (d > s->max_ns)
		s->max_ns = d;
	if (s->count == 1 || d < s->min_ns)
		s->min_ns = d;
	s->hist[pi_log2_slot(d, SC_HIST_SLOTS)]++;
	struct sc_window *w = &win[epoch & 1];
	if (w->epoch != epoch) {
		w->epoch = epoch;
		w->max_ns = d;
		w->min_ns = d;
	} else {
		if (d > w->max_ns)
			w->max_ns = d;
		if (d < w->min_ns)
			w->min_ns = d;
	}
}

enum wait_kind {
	WAIT_STAMPED = 0,  /* timed from our own stamp */
	WAIT_FALLBACK = 1, /* timed from the kernel's enqueue time */
	WAIT_UNTIMED = 2,  /* counted without a duration */
};

static __always_inline void add_wait(struct sc_stats *s, struct sc_window *win, __u64 epoch, int kind, __u64 d)
{
	if (kind == WAIT_UNTIMED) {
		s->untimed++;
		return;
	}
	add_delay(s, win, epoch, d);
	if (kind == WAIT_FALLBACK)
		s->fallback++;
}

static __always_inline void set_stamp(struct sc_task *t, struct task_struct *p, __u64 now, __u64 gen)
{
	t->ts_ns = now;
	t->generation = gen;
	t->runtime_ns = p->se.sum_exec_runtime;
}

/* A thread's figures leave the map: hand them to user space. */
static __always_inline void emit_end(struct sc_thread *t)
{
	struct sc_thread_end *e = pi_reserve(&sc_events, sizeof(*e));
	if (!e)
		return;
	e->h.kind = SC_THREAD_END;
	e->h.size = sizeof(*e);
	e->h.cpu = bpf_get_smp_processor_id();
	e->h.ts_boot_ns = bpf_ktime_get_boot_ns();
	e->h.pid = t->pid;
	e->h.tid = t->tid;
	e->h.pid_start_ns = t->pid_start_ns;
	__builtin_memcpy(e->h.comm, t->comm, sizeof(e->h.comm));
	e->h.cgroup_id = 0; /* the host names it from the thread's earlier records */
	bpf_probe_read_kernel(&e->t, sizeof(e->t), t);
	pi_submit(&sc_events, e);
}

static __always_inline void thread_wait(struct task_struct *p, __u32 tid, int kind, __u64 d, __u64 epoch)
{
	__u64 start = p->start_time;
	struct sc_thread *t = bpf_map_lookup_elem(&sc_threads, &tid);
	if (t && t->start_ns != start) {
		/* The entry is a dead thread's whose tid was given to this one before it was freed. */
		emit_end(t);
		bpf_map_delete_elem(&sc_threads, &tid);
		t = NULL;
	}
	if (!t) {
		__u32 zero = 0;
		struct sc_thread *z = bpf_map_lookup_elem(&sc_zero, &zero);
		if (!z || bpf_map_update_elem(&sc_threads, &tid, z, BPF_NOEXIST) != 0) {
			pi_count_lost_as(SC_LOST_THREADS);
			return;
		}
		t = bpf_map_lookup_elem(&sc_threads, &tid);
		if (!t)
			return;
		t->start_ns = start;
		t->pid = p->tgid;
		/* the idle task (-p 0 -c N) belongs to no process: no process start */
		t->pid_start_ns = t->pid ? BPF_CORE_READ(p, group_leader, start_boottime) : 0;
		t->tid = tid;
	}
	add_wait(&t->total, t->win, epoch, kind, d);
	t->prio = p->prio;
	t->static_prio = p->static_prio;
	t->policy = p->policy;
	__builtin_memcpy(t->comm, p->comm, sizeof(t->comm));
}

static __always_inline void system_wait(int kind, __u64 d, __u64 epoch, bool recovered)
{
	__u32 zero = 0;
	struct sc_cpu *c = bpf_map_lookup_elem(&sc_system, &zero);
	if (!c)
		return;
	add_wait(&c->total, c->win, epoch, kind, d);
	if (recovered)
		c->recovered++;
}

/* A task switched in without a usable stamp: did the kernel's own accounting
 * (CONFIG_SCHED_INFO) see it waiting, and for how long? Its enqueue time is in the run queue's
 * clock, which sched_switch finds updated (reached through the task's cfs_rq, which exists for
 * every class with CONFIG_FAIR_GROUP_SCHED). The wait is cut at the activation's start. */
static __always_inline int kernel_wait(struct task_struct *p, __u64 *now, __u64 *d)
{
	if (!bpf_core_field_exists(p->sched_info.last_queued))
		return -1;
	__u64 queued = BPF_CORE_READ(p, sched_info.last_queued);
	if (!queued)
		return -1;
	if (!bpf_core_field_exists(((struct cfs_rq *)0)->rq))
		return WAIT_UNTIMED;
	__u64 clock = BPF_CORE_READ(p, se.cfs_rq, rq, clock);
	if (clock < queued)
		return WAIT_UNTIMED;
	*d = clock - queued;
	if (!*now)
		*now = bpf_ktime_get_ns();
	__u64 since = *now > sc_start_ns ? *now - sc_start_ns : 0;
	if (*d > since)
		*d = since;
	return WAIT_FALLBACK;
}

/* A sleeping or new task became runnable. */
static __always_inline int on_wakeup(struct task_struct *p)
{
	struct pi_control *c = active_control();
	if (!c)
		return 0;
	/* Woken while still on a CPU (the waker came before it could sleep): it does not wait. */
	if (p->on_cpu || p->pid == 0)
		return 0;
	__u64 gen = c->generation;
	if (!sc_system_on) {
		struct sc_task *t = task_stamp(p, false);
		if (!task_wanted(p, t, c))
			return 0;
	}
	struct sc_task *t = task_stamp(p, true);
	if (!t) {
		pi_count_lost_as(SC_LOST_TASKS);
		return 0;
	}
	set_stamp(t, p, bpf_ktime_get_ns(), gen);
	return 0;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(sc_wakeup, struct task_struct *p)
{
	return on_wakeup(p);
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(sc_wakeup_new, struct task_struct *p)
{
	return on_wakeup(p);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sc_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct pi_control *c = active_control();
	if (!c)
		return 0;
	__u64 gen = c->generation;
	__u64 now = 0; /* read when first needed: a switch to idle after a sleep needs no clock */
	__u64 epoch = sc_epoch;

	__u32 ptid = prev->pid;
	if (ptid ? (sc_system_on || pi_wanted_in(prev->tgid, ptid, prev)) : pi_wanted(0, 0)) {
		/* Switched out but still runnable (preempted, yielded, or woken while it was
		 * getting off the CPU): it waits again from now. The state is read now, as the
		 * kernel's own accounting does, not taken from prev_state (read before a wakeup
		 * could change it). The idle task is always runnable; it is stamped only when it
		 * is the target: its "delay" is then the time other tasks kept its CPU busy. */
		bool runnable = pi_task_state(prev) == TASK_RUNNING_STATE;
		struct sc_task *t = task_stamp(prev, runnable);
		if (t && t->ts_ns) {
			/* A stamp still there: the tracepoint did not report this task's last
			 * switch-in (seen on some kernels, rarely). It has been on the CPU since,
			 * for the CPU time it used, so its wait ended that long before now. (Not for
			 * the idle task, whose CPU time is not kept: its stamp is just dropped.) */
			now = bpf_ktime_get_ns();
			__u64 ran = prev->se.sum_exec_runtime - t->runtime_ns;
			bool ok = ptid && t->generation == gen && t->ts_ns <= now && ran > 0 &&
				  ran <= now - t->ts_ns;
			__u64 d = now - t->ts_ns - ran;
			t->ts_ns = 0;
			if (ok) {
				if (sc_system_on)
					system_wait(WAIT_STAMPED, d, epoch, true);
				if (task_wanted(prev, t, c))
					thread_wait(prev, ptid, WAIT_STAMPED, d, epoch);
			}
		}
		if (runnable) {
			if (!now)
				now = bpf_ktime_get_ns();
			if (t)
				set_stamp(t, prev, now, gen);
			else
				pi_count_lost_as(SC_LOST_TASKS);
		}
	}

	__u32 ntid = next->pid;
	/* Every CPU's idle task has tid 0: only the targeted CPU's is of interest. */
	if (ntid == 0 && !pi_wanted(0, 0))
		return 0;
	bool timed = false;
	__u64 d = 0;
	struct sc_task *t = task_stamp(next, false);
	if (t && t->ts_ns) {
		/* Valid only if taken in this activation and the task has not run since. */
		if (!now)
			now = bpf_ktime_get_ns();
		timed = t->generation == gen && t->runtime_ns == next->se.sum_exec_runtime &&
			t->ts_ns <= now;
		d = now - t->ts_ns;
		t->ts_ns = 0;
	}
	int kind = WAIT_STAMPED;
	if (!timed) {
		/* No usable stamp: the wait began before the activation, or the tracepoint did
		 * not report its start (seen on some kernels, rarely). */
		kind = kernel_wait(next, &now, &d);
		if (kind < 0)
			return 0;
	}
	if (ntid && sc_system_on)
		system_wait(kind, d, epoch, false);
	if (task_wanted(next, t, c))
		thread_wait(next, ntid, kind, d, epoch);
	return 0;
}

SEC("tp_btf/sched_process_free")
int BPF_PROG(sc_free, struct task_struct *p)
{
	__u32 tid = p->pid;
	if (!sc_task_storage)
		bpf_map_delete_elem(&sc_tasks, &tid);
	if (!active_control())
		return 0;
	struct sc_thread *t = bpf_map_lookup_elem(&sc_threads, &tid);
	if (!t || t->start_ns != p->start_time)
		return 0;
	emit_end(t);
	bpf_map_delete_elem(&sc_threads, &tid);
	return 0;
}
