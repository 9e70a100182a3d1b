// SPDX-License-Identifier: GPL-2.0
/*
 * schedule: run-queue delay (time runnable but waiting for a CPU) of the target's threads and
 * of the whole system, aggregated in the kernel.
 *
 *  sched_wakeup, sched_wakeup_new (tp_btf)  a sleeping or new thread becomes runnable: stamp
 *  sched_switch (tp_btf)                    the previous task, if still runnable, waits again
 *                                           from now (stamp); the next task's wait ends: delay
 *  sched_process_free (tp_btf)              a freed thread's figures leave the map as a record
 *
 * The stamps live in one hash keyed by thread id, for every CPU: a thread that migrates while
 * it waits keeps its stamp, so its delay is the whole wait, as in the kernel's run_delay.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <procimage/bpf/procimage.bpf.h>
#include "schedule.h"

char LICENSE[] SEC("license") = "GPL";

/* Collect the whole-system reference figures (every thread is stamped, not only targets). */
const volatile bool sc_system_on = true;

/* Current reporting interval, advanced by the user side at each tick (see struct sc_window). */
__u64 sc_epoch = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384); /* set from the configuration */
	__type(key, __u32);
	__type(value, struct sc_stamp);
} sc_stamps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
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

static __always_inline struct pi_control *active_control(void)
{
	__u32 slot = pi_slot;
	struct pi_control *c = bpf_map_lookup_elem(&pi_control, &slot);
	if (!c || c->mode == PI_MODE_OFF)
		return NULL;
	return c;
}

static __always_inline __u32 log2_slot(__u64 v)
{
	__u32 r = 0, s;
	s = (v > 0xffffffffULL) << 5;
	v >>= s;
	r |= s;
	s = (v > 0xffff) << 4;
	v >>= s;
	r |= s;
	s = (v > 0xff) << 3;
	v >>= s;
	r |= s;
	s = (v > 0xf) << 2;
	v >>= s;
	r |= s;
	s = (v > 0x3) << 1;
	v >>= s;
	r |= s;
	r |= (v >> 1);
	return r < SC_HIST_SLOTS ? r : SC_HIST_SLOTS - 1;
}

static __always_inline void add_delay(struct sc_stats *s, struct sc_window *win, __u64 epoch, __u64 d)
{
	s->count++;
	s->sum_ns += d;
	if (d > s->max_ns)
		s->max_ns = d;
	if (s->count == 1 || d < s->min_ns)
		s->min_ns = d;
	__u32 slot = log2_slot(d);
	if (slot < SC_HIST_SLOTS)
		s->hist[slot]++;
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

static __always_inline void stamp(struct task_struct *p, __u32 tid, __u64 now, __u64 generation)
{
	struct sc_stamp st = {.ts_ns = now, .generation = generation, .runtime_ns = p->se.sum_exec_runtime};
	if (bpf_map_update_elem(&sc_stamps, &tid, &st, BPF_ANY) != 0)
		pi_count_lost();
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
	bpf_probe_read_kernel(&e->t, sizeof(e->t), t);
	pi_submit(&sc_events, e);
}

/* Count one wait: timed (d ns) or untimed (it ended, but its start was not seen). */
static __always_inline void add_wait(struct sc_stats *s, struct sc_window *win, __u64 epoch, bool timed, __u64 d)
{
	if (timed)
		add_delay(s, win, epoch, d);
	else
		s->untimed++;
}

static __always_inline void thread_wait(struct task_struct *p, __u32 tid, bool timed, __u64 d, __u64 epoch)
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
			pi_count_lost();
			return;
		}
		t = bpf_map_lookup_elem(&sc_threads, &tid);
		if (!t)
			return;
		t->start_ns = start;
		t->pid_start_ns = BPF_CORE_READ(p, group_leader, start_boottime);
		t->pid = p->tgid;
		t->tid = tid;
	}
	add_wait(&t->total, t->win, epoch, timed, d);
	t->prio = p->prio;
	t->static_prio = p->static_prio;
	t->policy = p->policy;
	t->cpu = bpf_get_smp_processor_id();
	__builtin_memcpy(t->comm, p->comm, sizeof(t->comm));
}

static __always_inline void system_wait(bool timed, __u64 d, __u64 epoch, bool recovered)
{
	__u32 zero = 0;
	struct sc_cpu *c = bpf_map_lookup_elem(&sc_system, &zero);
	if (!c)
		return;
	add_wait(&c->total, c->win, epoch, timed, d);
	if (recovered)
		c->recovered++;
}

/* Did the kernel's own accounting (CONFIG_SCHED_INFO) see this thread waiting? */
static __always_inline bool kernel_queued(struct task_struct *p)
{
	if (bpf_core_field_exists(p->sched_info.last_queued))
		return BPF_CORE_READ(p, sched_info.last_queued) != 0;
	return false;
}

/* A sleeping or new thread became runnable. */
static __always_inline int on_wakeup(struct task_struct *p)
{
	struct pi_control *c = active_control();
	if (!c)
		return 0;
	/* Woken while still on a CPU (the waker came before it could sleep): it never waits, and
	 * the kernel does not count a wait either. */
	if (p->on_cpu)
		return 0;
	__u32 tid = p->pid;
	if (tid == 0)
		return 0;
	if (!sc_system_on && !pi_wanted(p->tgid, tid))
		return 0;
	stamp(p, tid, bpf_ktime_get_ns(), c->generation);
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
int BPF_PROG(sc_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	struct pi_control *c = active_control();
	if (!c)
		return 0;
	__u64 gen = c->generation;
	__u64 now = bpf_ktime_get_ns();

	__u64 epoch = sc_epoch;
	__u32 ptid = prev->pid;
	if (ptid ? (sc_system_on || pi_wanted(prev->tgid, ptid)) : pi_wanted(0, 0)) {
		/* A stamp still there means the tracepoint did not report this thread's last
		 * switch-in (it happens, rarely): the thread has been on the CPU since, for the CPU
		 * time it used, so its wait ended that long before now. (Not for the idle task,
		 * whose CPU time is not kept: its stamp is just dropped.) */
		struct sc_stamp *st = bpf_map_lookup_elem(&sc_stamps, &ptid);
		if (st) {
			__u64 ran = prev->se.sum_exec_runtime - st->runtime_ns;
			bool ok = ptid && st->generation == gen && st->ts_ns <= now && ran > 0 &&
				  ran <= now - st->ts_ns;
			__u64 d = now - st->ts_ns - ran;
			bpf_map_delete_elem(&sc_stamps, &ptid);
			if (ok) {
				if (sc_system_on)
					system_wait(true, d, epoch, true);
				if (pi_wanted(prev->tgid, ptid))
					thread_wait(prev, ptid, true, d, epoch);
			}
		}
		/* Switched out but still runnable (preempted, yielded, or woken while it was
		 * getting off the CPU): it waits again from now. The state is read now, as the
		 * kernel's own accounting does, not taken from prev_state (read before a wakeup
		 * could change it). The idle task is always runnable; it is stamped only when it
		 * is the target (its "delay" is then the time other tasks kept its CPU busy). */
		if (prev->__state == TASK_RUNNING_STATE)
			stamp(prev, ptid, now, gen);
	}

	__u32 ntid = next->pid;
	/* Every CPU's idle task has tid 0: only the targeted CPU's may use that stamp. */
	if (ntid == 0 && !pi_wanted(0, 0))
		return 0;
	bool timed = false;
	__u64 d = 0;
	struct sc_stamp *st = bpf_map_lookup_elem(&sc_stamps, &ntid);
	if (st) {
		/* Valid only if taken in this activation and the thread has not run since (a
		 * switch-in the tracepoint did not report would leave it behind). */
		timed = st->generation == gen && st->runtime_ns == next->se.sum_exec_runtime &&
			st->ts_ns <= now;
		d = now - st->ts_ns;
		bpf_map_delete_elem(&sc_stamps, &ntid);
	}
	if (!timed && !kernel_queued(next))
		return 0;
	if (ntid && sc_system_on)
		system_wait(timed, d, epoch, false);
	if (pi_wanted(next->tgid, ntid))
		thread_wait(next, ntid, timed, d, epoch);
	return 0;
}

SEC("tp_btf/sched_process_free")
int BPF_PROG(sc_free, struct task_struct *p)
{
	if (!active_control())
		return 0;
	__u32 tid = p->pid;
	struct sc_thread *t = bpf_map_lookup_elem(&sc_threads, &tid);
	if (!t || t->start_ns != p->start_time)
		return 0;
	emit_end(t);
	bpf_map_delete_elem(&sc_threads, &tid);
	return 0;
}
