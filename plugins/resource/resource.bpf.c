// SPDX-License-Identifier: GPL-2.0
/*
 * resource: CPU, memory and I/O accounting of the target, sampled, never hooked per event.
 *
 *  iter/task                   run by the user side once per interval: one rs_task record per
 *                              target task, written to the iterator's seq_file (no map, no limit)
 *  tp_btf/sched_process_exit   target tasks only: their final counters, so the interval in which
 *                              a thread or a process ends is reported too
 *
 * Nothing runs on scheduler, syscall or fault paths: the kernel keeps every counter itself
 * (task_struct, signal_struct, mm_struct); the probe only reads them.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <procimage/bpf/procimage.bpf.h>
#include "resource.h"

char LICENSE[] SEC("license") = "GPL";

#define RS_TASK_DEAD 0x80 /* TASK_DEAD in task_struct.__state */

#define PF_KTHREAD_FLAG 0x00200000

/* Possible CPUs (set before load). */
const volatile __u32 rs_ncpu = 1;

/* Written by the user side at attach: a thread target also samples the other threads of the
 * target threads' processes (rs_groups), to give the process figure beside the thread's. */
bool rs_groups_on = false;

/* Set by the user side for the closing sample of an activation, taken after the host has
 * switched the slot off (the target is no longer in the shared maps): every task is written,
 * and the user side keeps those it was following. */
bool rs_snapshot = false;

/* Per-CPU offsets of the percpu area (what per_cpu_ptr adds), learnt once from a percpu map:
 * needed to sum the per-CPU parts of the mm's RSS counters exactly as /proc does. */
__u64 rs_pcpu_off[RS_MAX_CPUS];
__u32 rs_pcpu_state; /* 0: not tried, 1: ready, 2: unavailable (approximate RSS) */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} rs_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PI_MAX_TARGETS);
	__type(key, __u32);  /* tgid */
	__type(value, __u8);
} rs_groups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rs_task);
} rs_scratch SEC(".maps");

/* Only its address on each CPU is used (to learn the per-CPU offsets). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} rs_pcpu_probe SEC(".maps");

/* ------------------------------------------------------------------ per-CPU offsets */

struct off_ctx {
	__u64 base; /* the percpu pointer of rs_pcpu_probe's only element */
	__u32 found;
};

static long learn_off_cb(__u32 cpu, void *data)
{
	struct off_ctx *c = data;
	__u32 zero = 0;
	void *v = bpf_map_lookup_percpu_elem(&rs_pcpu_probe, &zero, cpu);
	if (!v)
		return 0;
	/* The element's address on this CPU as a number (copied out of the stack slot). */
	__u64 addr = 0;
	bpf_probe_read_kernel(&addr, sizeof(addr), &v);
	if (cpu < RS_MAX_CPUS) {
		rs_pcpu_off[cpu] = addr - c->base;
		c->found++;
	}
	return 0;
}

/* per_cpu_ptr(p, cpu) == p + __per_cpu_offset[cpu]. The kernel does not export that table to
 * BPF, but a percpu array map knows both sides: its element's percpu pointer (bpf_array.pptrs[0])
 * and, through bpf_map_lookup_percpu_elem, the element's address on each CPU. */
static __always_inline void learn_pcpu_offsets(void)
{
	if (rs_pcpu_state)
		return;
	rs_pcpu_state = 2;
	void *map = &rs_pcpu_probe;
	__u64 map_addr = 0;
	if (bpf_probe_read_kernel(&map_addr, sizeof(map_addr), &map) || !map_addr)
		return;
	struct off_ctx c = {};
	__u64 at = map_addr + bpf_core_field_offset(struct bpf_array, pptrs);
	if (bpf_probe_read_kernel(&c.base, sizeof(c.base), (void *)at) || !c.base)
		return;
	__u32 n = rs_ncpu < RS_MAX_CPUS ? rs_ncpu : RS_MAX_CPUS;
	bpf_loop(n, learn_off_cb, &c, 0);
	if (c.found && c.found == n)
		rs_pcpu_state = 1;
}

/* ------------------------------------------------------------------ RSS */

struct rss_ctx {
	__u64 counters[RS_MM_COUNTERS]; /* percpu pointers of the mm's counters */
	__s64 sum[RS_MM_COUNTERS];
};

static long rss_cpu_cb(__u32 cpu, void *data)
{
	struct rss_ctx *c = data;
	if (cpu >= RS_MAX_CPUS)
		return 1;
	__u64 off = rs_pcpu_off[cpu];
	for (int i = 0; i < RS_MM_COUNTERS; i++) {
		__s32 v = 0;
		if (c->counters[i] && !bpf_probe_read_kernel(&v, sizeof(v), (void *)(c->counters[i] + off)))
			c->sum[i] += v;
	}
	return 0;
}

/* Before 6.2 the mm's RSS counters were plain atomics (struct mm_rss_stat), which is also the
 * whole figure /proc/<pid>/status shows there. */
struct mm_rss_stat___pi {
	atomic_long_t count[RS_MM_COUNTERS];
} __attribute__((preserve_access_index));
struct mm_struct___pre62 {
	struct mm_rss_stat___pi rss_stat;
} __attribute__((preserve_access_index));

/* The mm's RSS counters: the global part plus every CPU's pending part (percpu_counter_sum),
 * the figure /proc/<pid>/status shows. */
static __always_inline void read_rss(struct rs_task *r, struct mm_struct *mm)
{
	if (bpf_core_type_exists(struct mm_rss_stat___pi)) {
		struct mm_struct___pre62 *old = (void *)mm;
		for (int i = 0; i < RS_MM_COUNTERS; i++) {
			__s64 v = BPF_CORE_READ(old, rss_stat.count[i].counter);
			r->rss_pages[i] = v < 0 ? 0 : v;
		}
		r->flags |= RS_F_RSS;
		return;
	}
	struct rss_ctx c = {};
	for (int i = 0; i < RS_MM_COUNTERS; i++) {
		c.sum[i] = mm->rss_stat[i].count;
		c.counters[i] = (__u64)mm->rss_stat[i].counters;
	}
	learn_pcpu_offsets();
	if (rs_pcpu_state == 1 && rs_ncpu <= RS_MAX_CPUS)
		bpf_loop(rs_ncpu, rss_cpu_cb, &c, 0);
	else
		r->flags |= RS_F_RSS_APPROX;
	for (int i = 0; i < RS_MM_COUNTERS; i++)
		r->rss_pages[i] = c.sum[i] < 0 ? 0 : c.sum[i];
	r->flags |= RS_F_RSS;
}

/* ------------------------------------------------------------------ records */

/* The task pointers here are the kernel's own (iterator context, tp_btf argument): fields are
 * read with direct, fault-checked loads, much cheaper than a helper call per field. */
static __always_inline void read_ioac(struct rs_counters *c, struct task_io_accounting *io)
{
	c->rchar = io->rchar;
	c->wchar = io->wchar;
	c->syscr = io->syscr;
	c->syscw = io->syscw;
	c->read_bytes = io->read_bytes;
	c->write_bytes = io->write_bytes;
	c->cancelled_write_bytes = io->cancelled_write_bytes;
}

static __always_inline void fill(struct rs_task *r, struct task_struct *t, __u16 kind, __u32 flags,
				 bool want_rss)
{
	__builtin_memset(r, 0, sizeof(*r));
	r->h.kind = kind;
	r->h.size = sizeof(*r);
	r->h.cpu = t->thread_info.cpu;
	r->h.ts_boot_ns = bpf_ktime_get_boot_ns();
	r->h.pid = t->tgid;
	r->h.tid = t->pid;
	r->h.pid_start_ns = t->group_leader->start_boottime;
	bpf_probe_read_kernel_str(&r->h.comm, sizeof(r->h.comm), t->comm);
	r->h.cgroup_id = pi_task_cgroup_id(t);
	r->start_ns = t->start_boottime;
	r->ppid = t->real_parent->tgid;

	if (r->h.pid == r->h.tid)
		flags |= RS_F_LEADER;
	if (t->flags & PF_KTHREAD_FLAG)
		flags |= RS_F_KTHREAD;
	if (t->exit_state)
		flags |= RS_F_ZOMBIE;
	if (t->on_cpu)
		flags |= RS_F_ON_CPU;
	r->flags = flags;

	struct rs_counters *c = &r->self;
	c->runtime_ns = t->se.sum_exec_runtime;
	c->utime_ns = t->utime;
	c->stime_ns = t->stime;
	c->nvcsw = t->nvcsw;
	c->nivcsw = t->nivcsw;
	c->min_flt = t->min_flt;
	c->maj_flt = t->maj_flt;
	read_ioac(c, &t->ioac);

	if (r->flags & RS_F_LEADER) {
		struct signal_struct *sig = t->signal;
		struct rs_counters *d = &r->dead;
		d->runtime_ns = sig->sum_sched_runtime;
		d->utime_ns = sig->utime;
		d->stime_ns = sig->stime;
		d->nvcsw = sig->nvcsw;
		d->nivcsw = sig->nivcsw;
		d->min_flt = sig->min_flt;
		d->maj_flt = sig->maj_flt;
		read_ioac(d, &sig->ioac);
	}

	if (want_rss) {
		struct mm_struct *mm = t->mm;
		if (mm)
			read_rss(r, mm);
	}
}

/* Is this task one we report, or one of a thread target's process companions? */
static __always_inline int classify(__u32 tgid, __u32 tid, struct task_struct *t)
{
	if (pi_wanted_in(tgid, tid, t))
		return RS_F_TARGET;
	if (rs_groups_on && bpf_map_lookup_elem(&rs_groups, &tgid))
		return 0;
	return -1;
}

SEC("iter/task")
int rs_iter(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *t = ctx->task;
	if (!t)
		return 0;
	__u32 tgid = t->tgid, tid = t->pid;
	int cls = 0;
	if (!rs_snapshot) {
		if (!pi_active())
			return 0;
		cls = classify(tgid, tid, t);
		if (cls < 0)
			return 0;
	}
	__u32 zero = 0;
	struct rs_task *r = bpf_map_lookup_elem(&rs_scratch, &zero);
	if (!r)
		return 0;
	/* The mm is shared by the whole group: read it once, from the leader, or from this thread
	 * when the leader has already let go of it. */
	struct mm_struct *leader_mm = t->group_leader->mm;
	bool want_rss = tgid == tid || !leader_mm;
	fill(r, t, RS_SAMPLE, (__u32)cls, want_rss);
	bpf_seq_write(seq, r, sizeof(*r));
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(rs_exit, struct task_struct *t)
{
	if (!pi_active())
		return 0;
	__u32 tgid = t->tgid, tid = t->pid;
	int cls = classify(tgid, tid, t);
	if (cls < 0)
		return 0;
	/* The group is dead when this is the last live thread (signal->live already counts it out;
	 * read it here rather than from the tracepoint's arguments, which vary across kernels). */
	bool group_dead = t->signal->live.counter == 0;
	__u32 zero = 0;
	struct rs_task *r = bpf_map_lookup_elem(&rs_scratch, &zero);
	if (!r)
		return 0;
	/* The mm is still attached here (the tracepoint runs before exit_mm): the process's last
	 * RSS, read by its last thread only. */
	fill(r, t, RS_EXIT, (__u32)cls | (group_dead ? RS_F_GROUP_DEAD : 0), group_dead);
	pi_output(&rs_events, r, sizeof(*r));
	return 0;
}

/* A dead task's last switch-out: only now has the scheduler added its running slice to
 * sum_exec_runtime (at sched_process_exit it still lacks it: 2-4% of a worker thread's CPU). */
SEC("tp_btf/sched_switch")
int BPF_PROG(rs_dead_switch, bool preempt, struct task_struct *prev)
{
	if (!pi_active() || !(pi_task_state(prev) & RS_TASK_DEAD))
		return 0;
	__u32 tgid = prev->tgid, tid = prev->pid;
	if (classify(tgid, tid, prev) < 0)
		return 0;
	__u32 zero = 0;
	struct rs_task *r = bpf_map_lookup_elem(&rs_scratch, &zero);
	if (!r)
		return 0;
	__builtin_memset(r, 0, sizeof(*r));
	r->h.kind = RS_DEAD;
	r->h.size = sizeof(*r);
	r->h.ts_boot_ns = bpf_ktime_get_boot_ns();
	r->h.pid = tgid;
	r->h.tid = tid;
	r->self.runtime_ns = prev->se.sum_exec_runtime;
	pi_output(&rs_events, r, sizeof(*r));
	return 0;
}
