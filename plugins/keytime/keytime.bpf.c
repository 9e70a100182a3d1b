// SPDX-License-Identifier: GPL-2.0
/*
 * keytime: the key time points of a process's life, from tracepoints only.
 *
 *  task_newtask (tp_btf)          fork / vfork / thread creation, with the real clone flags
 *  sys_enter/exit_execve(at) (tp)  exec attempts with filename, argv and result (failures too)
 *  sched_process_exec (tp_btf)    a successful exec; execs that never passed a syscall
 *  sched_process_exit (tp_btf)    every thread's exit, with exit code / signal
 *  sched_switch (tp_btf)          optional on-CPU / off-CPU intervals and why it went off
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <procimage/bpf/procimage.bpf.h>
#include "keytime.h"

char LICENSE[] SEC("license") = "GPL";

const volatile long kt_nr_sched_yield = -1; /* the build architecture's number, set before load */
const volatile __u32 kt_argv_max = 16;
const volatile bool kt_stacks_on = false;

#define CLONE_VFORK_FLAG 0x00004000ULL
#define CLONE_THREAD_FLAG 0x00010000ULL

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} kt_events SEC(".maps");

/* exec attempts between syscall entry and exit, by thread id */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct kt_exec);
} kt_exec_inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kt_exec);
} kt_exec_scratch SEC(".maps");

struct vfork_parent {
	__u64 start_ns;
	__u64 pid_start_ns;
	__u32 pid;
	__u32 tid;
	char comm[PI_COMM_LEN];
};

/* How each task seen born was created (enum kt_clone_kind), by thread id: read and freed at its
 * exit, whatever the exit's target, so an entry lives exactly as long as its task. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u32);
} kt_births SEC(".maps");

/* vfork children whose parent is still suspended, by child thread id */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct vfork_parent);
} kt_vforks SEC(".maps");

struct cpu_state {
	__u64 since_ns;
	__u32 on; /* 1: on CPU since since_ns; 0: off CPU */
	__u32 reason;
	__u32 state;
	__u32 unused;
	__u32 cpu;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct cpu_state);
} kt_cpustate SEC(".maps");

/* Each target thread's stack at its last switch-out (stacks on). A stack is copied into the
 * record itself: no stack-trace map whose buckets fill up or collide. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1); /* resized by the user side when stacks are on */
	__type(key, __u32);
	__type(value, struct kt_stackbuf);
} kt_stackbufs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kt_stackbuf);
} kt_stackbuf_zero SEC(".maps");

/* Processes whose first stack record went out with an immediate wakeup (stacks on), by tgid:
 * the user side reads a process's mappings when it decodes that record, so it must come while
 * the process lives (an exec makes a new image, and a new first record). */
struct kt_stack_seen {
	__u64 pid_start_ns;
	__u64 exec_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct kt_stack_seen);
} kt_stack_seen SEC(".maps");

/* ------------------------------------------------------------------ creation */

SEC("tp_btf/task_newtask")
int BPF_PROG(kt_newtask, struct task_struct *child, u64 clone_flags)
{
	if (!pi_wanted_current())
		return 0;
	if (pi_filter_failed) {
		/* --failed: a creation is no failure and is not streamed; what the exit and the
		 * vfork release need is kept all the same */
		__u32 tid = BPF_CORE_READ(child, pid);
		__u32 kind = clone_flags & CLONE_THREAD_FLAG  ? KT_CLONE_THREAD
			     : clone_flags & CLONE_VFORK_FLAG ? KT_CLONE_VFORK
							       : KT_CLONE_FORK;
		if (bpf_map_update_elem(&kt_births, &tid, &kind, BPF_ANY) != 0)
			pi_count_lost_as(KT_LOST_BIRTHS);
		return 0;
	}
	struct kt_newtask *e = pi_reserve(&kt_events, sizeof(*e));
	if (!e)
		return 0;
	pi_fill_header_current(&e->h, KT_NEWTASK, sizeof(*e));
	e->clone_flags = clone_flags;
	e->child_pid = BPF_CORE_READ(child, tgid);
	e->child_tid = BPF_CORE_READ(child, pid);
	BPF_CORE_READ_STR_INTO(&e->child_comm, child, comm);
	e->pad = 0;
	if (clone_flags & CLONE_THREAD_FLAG) {
		e->clone_kind = KT_CLONE_THREAD;
	} else if (clone_flags & CLONE_VFORK_FLAG) {
		e->clone_kind = KT_CLONE_VFORK;
		struct vfork_parent vp = {.start_ns = e->h.ts_boot_ns, .pid_start_ns = e->h.pid_start_ns,
					  .pid = e->h.pid, .tid = e->h.tid};
		__builtin_memcpy(vp.comm, e->h.comm, sizeof(vp.comm));
		/* the key from the stack: kernels before 6.2 take no ring buffer memory as a map key */
		__u32 child_tid = e->child_tid;
		if (bpf_map_update_elem(&kt_vforks, &child_tid, &vp, BPF_ANY) != 0)
			pi_count_lost_as(KT_LOST_VFORKS);
	} else {
		e->clone_kind = KT_CLONE_FORK;
	}
	__u32 tid = e->child_tid, kind = e->clone_kind;
	if (bpf_map_update_elem(&kt_births, &tid, &kind, BPF_ANY) != 0)
		pi_count_lost_as(KT_LOST_BIRTHS);
	pi_submit(&kt_events, e);
	return 0;
}

/* The vfork parent resumes when its child execs or exits: the record is the parent's. */
static __always_inline void vfork_release(struct task_struct *child, __u32 tid, __u32 by_exec)
{
	struct vfork_parent *vp = bpf_map_lookup_elem(&kt_vforks, &tid);
	if (!vp)
		return;
	/* (none with --failed: the parent did not fail) */
	struct kt_vfork_done *e = pi_active() && !pi_filter_failed ? pi_reserve(&kt_events, sizeof(*e)) : NULL;
	if (e) {
		e->h.kind = KT_VFORK_DONE;
		e->h.size = sizeof(*e);
		e->h.cpu = bpf_get_smp_processor_id();
		e->h.ts_boot_ns = bpf_ktime_get_boot_ns();
		e->h.pid = vp->pid;
		e->h.tid = vp->tid;
		e->h.pid_start_ns = vp->pid_start_ns;
		__builtin_memcpy(e->h.comm, vp->comm, sizeof(e->h.comm));
		e->h.cgroup_id = 0; /* the host names the parent's cgroup from its earlier records */
		e->child_pid = BPF_CORE_READ(child, tgid);
		e->child_tid = tid;
		e->dur_ns = e->h.ts_boot_ns - vp->start_ns;
		e->by_exec = by_exec;
		e->pad = 0;
		pi_submit(&kt_events, e);
	}
	bpf_map_delete_elem(&kt_vforks, &tid);
}

/* ------------------------------------------------------------------ exec */

static __always_inline void read_argv(struct kt_exec *e, const char *const *argv)
{
	__u32 max = kt_argv_max;
	const char *p = NULL;
	for (int i = 0; i < KT_MAX_ARGS; i++) {
		if (bpf_probe_read_user(&p, sizeof(p), &argv[i]) != 0 || !p)
			return;
		if (i >= max || e->args_size > KT_ARGS_SIZE - KT_ARG_LEN) {
			e->flags |= KT_EXEC_ARGS_TRUNCATED;
			return;
		}
		long n = bpf_probe_read_user_str(&e->args[e->args_size], KT_ARG_LEN, p);
		if (n <= 0)
			return;
		if (n == KT_ARG_LEN) {
			/* exactly KT_ARG_LEN-1 characters is complete; more was cut */
			char next = 0;
			if (bpf_probe_read_user(&next, 1, p + KT_ARG_LEN - 1) != 0 || next)
				e->flags |= KT_EXEC_ARGS_TRUNCATED;
		}
		e->args_size += n;
		e->argc++;
	}
	if (bpf_probe_read_user(&p, sizeof(p), &argv[KT_MAX_ARGS]) == 0 && p)
		e->flags |= KT_EXEC_ARGS_TRUNCATED;
}

static __always_inline int exec_enter(const char *filename, const char *const *argv)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	if (!pi_wanted(id >> 32, tid))
		return 0;
	__u32 zero = 0;
	struct kt_exec *e = bpf_map_lookup_elem(&kt_exec_scratch, &zero);
	if (!e)
		return 0;
	pi_fill_header_current(&e->h, KT_EXEC, sizeof(*e));
	__builtin_memcpy(e->old_comm, e->h.comm, sizeof(e->old_comm));
	e->ret = 0;
	e->old_tid = tid;
	e->argc = 0;
	e->flags = 0;
	e->args_size = 0;
	e->pad = 0;
	e->filename_uptr = (__u64)filename;
	e->argv_uptr = (__u64)argv;
	e->filename[0] = 0;
	if (bpf_probe_read_user_str(e->filename, sizeof(e->filename), filename) < 0)
		e->flags |= KT_EXEC_UNREADABLE; /* not resident: read again at exit */
	read_argv(e, argv);
	if (bpf_map_update_elem(&kt_exec_inflight, &tid, e, BPF_ANY) != 0)
		pi_count_lost_as(KT_LOST_EXECS);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int kt_enter_execve(struct trace_event_raw_sys_enter *ctx)
{
	return exec_enter((const char *)ctx->args[0], (const char *const *)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_execveat")
int kt_enter_execveat(struct trace_event_raw_sys_enter *ctx)
{
	return exec_enter((const char *)ctx->args[1], (const char *const *)ctx->args[2]);
}

static __always_inline int exec_exit(long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct kt_exec *e = bpf_map_lookup_elem(&kt_exec_inflight, &tid);
	if (!e)
		return 0;
	if (!pi_active() || (pi_filter_failed && ret >= 0)) {
		/* deactivated while the exec ran: it ends outside the window; or it succeeded and
		 * only failures are streamed (--failed) */
		bpf_map_delete_elem(&kt_exec_inflight, &tid);
		return 0;
	}
	struct task_struct *t = pi_current_task();
	char old_comm[PI_COMM_LEN];
	__builtin_memcpy(old_comm, e->old_comm, sizeof(old_comm));
	pi_fill_header(&e->h, KT_EXEC, sizeof(*e), t);
	__builtin_memcpy(e->old_comm, old_comm, sizeof(old_comm));
	e->ret = (__s32)ret;
	/* A name that was not resident at entry (a string in a page a freshly forked child has not
	 * touched yet) has been faulted in by the kernel's own copy of it since. A successful exec
	 * took the kernel's copy already (sched_process_exec); a failed one reads it again here. */
	if (ret < 0 && (e->flags & KT_EXEC_UNREADABLE) &&
	    bpf_probe_read_user_str(e->filename, sizeof(e->filename), (const char *)e->filename_uptr) >= 0) {
		e->flags &= ~KT_EXEC_UNREADABLE;
		if (!e->argc)
			read_argv(e, (const char *const *)e->argv_uptr);
	}
	__u64 size = sizeof(*e) - KT_ARGS_SIZE + e->args_size;
	if (size > sizeof(*e))
		size = sizeof(*e);
	e->h.size = size;
	pi_output(&kt_events, e, size);
	bpf_map_delete_elem(&kt_exec_inflight, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_execve")
int kt_exit_execve(struct trace_event_raw_sys_exit *ctx)
{
	return exec_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_execveat")
int kt_exit_execveat(struct trace_event_raw_sys_exit *ctx)
{
	return exec_exit(ctx->ret);
}

/* argv as the new image got it: NUL-separated at mm->arg_start (the user side splits it and
 * applies argv_max). */
static __always_inline void read_mm_args(struct kt_exec *e, struct task_struct *p)
{
	unsigned long start = BPF_CORE_READ(p, mm, arg_start);
	unsigned long end = BPF_CORE_READ(p, mm, arg_end);
	__u64 len = end > start ? end - start : 0;
	if (len > KT_ARGS_SIZE) {
		len = KT_ARGS_SIZE;
		e->flags |= KT_EXEC_ARGS_TRUNCATED;
	}
	if (len && bpf_probe_read_user(e->args, len, (const void *)start) != 0)
		len = 0;
	e->args_size = len;
	e->argc = 0; /* counted by the user side */
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(kt_process_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tid = BPF_CORE_READ(p, pid);
	__u32 old = (__u32)old_pid;
	vfork_release(p, old, 1);
	struct kt_exec *e = bpf_map_lookup_elem(&kt_exec_inflight, &old);
	if (e) {
		/* The exec succeeded: take the filename the kernel resolved and the argv the new
		 * image received (always resident), not what the caller's pages held at entry. */
		bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(bprm, filename));
		e->flags &= ~(__u32)(KT_EXEC_UNREADABLE | KT_EXEC_ARGS_TRUNCATED);
		read_mm_args(e, p);
		/* A non-leader thread exec'd and took over the leader's id: the syscall returns
		 * under the new id. */
		if (old != tid) {
			if (bpf_map_update_elem(&kt_exec_inflight, &tid, e, BPF_ANY) != 0)
				pi_count_lost_as(KT_LOST_EXECS);
			bpf_map_delete_elem(&kt_exec_inflight, &old);
		}
		return 0;
	}
	/* No syscall entry seen (kernel-started exec, or target activated mid-exec): it
	 * succeeded, and is no failure for --failed. */
	if (pi_filter_failed || !pi_wanted(BPF_CORE_READ(p, tgid), tid))
		return 0;
	struct kt_exec *r = pi_reserve(&kt_events, sizeof(*r));
	if (!r)
		return 0;
	pi_fill_header(&r->h, KT_EXEC, sizeof(*r), p);
	r->ret = 0;
	r->old_tid = old;
	r->flags = KT_EXEC_FROM_MM;
	r->argc = 0;
	r->pad = 0;
	r->old_comm[0] = 0;
	bpf_probe_read_kernel_str(r->filename, sizeof(r->filename), BPF_CORE_READ(bprm, filename));
	read_mm_args(r, p);
	pi_submit(&kt_events, r);
	return 0;
}

/* ------------------------------------------------------------------ exit */

static __always_inline void on_process_exit(struct task_struct *p, bool group_dead)
{
	__u32 tid = BPF_CORE_READ(p, pid);
	vfork_release(p, tid, 0);
	bpf_map_delete_elem(&kt_exec_inflight, &tid);
	__u32 *born = bpf_map_lookup_elem(&kt_births, &tid);
	__u32 created_by = born ? *born : 0;
	if (born)
		bpf_map_delete_elem(&kt_births, &tid);
	if (!pi_wanted(BPF_CORE_READ(p, tgid), tid))
		return;
	/* --failed: only exits with a non-zero code or by a signal (exit_code is non-zero) */
	if (pi_filter_failed && BPF_CORE_READ(p, exit_code) == 0)
		return;
	struct kt_exit *e = pi_reserve(&kt_events, sizeof(*e));
	if (!e)
		return;
	pi_fill_header(&e->h, KT_EXIT, sizeof(*e), p);
	e->exit_code = BPF_CORE_READ(p, exit_code);
	e->group_dead = group_dead ? 1 : 0;
	e->thread_start_ns = BPF_CORE_READ(p, start_boottime);
	e->process_start_ns = e->h.pid_start_ns;
	e->ppid = BPF_CORE_READ(p, real_parent, tgid);
	e->created_by = created_by;
	pi_submit(&kt_events, e);
}

/* Newer kernels (after 6.12) pass group_dead to the tracepoint. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(kt_process_exit, struct task_struct *p, bool group_dead)
{
	on_process_exit(p, group_dead);
	return 0;
}

/* Older kernels fire it after do_exit() has taken the thread off signal->live: the thread
 * that leaves it at zero is the group's last. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(kt_process_exit_nogd, struct task_struct *p)
{
	on_process_exit(p, BPF_CORE_READ(p, signal, live.counter) == 0);
	return 0;
}

/* ------------------------------------------------------------------ on/off CPU */

#define TS_INTERRUPTIBLE 0x0001
#define TS_UNINTERRUPTIBLE 0x0002
#define TS_STOPPED 0x0004
#define TS_TRACED 0x0008
#define TS_EXIT_DEAD 0x0010
#define TS_EXIT_ZOMBIE 0x0020
#define TS_PARKED 0x0040
#define TS_DEAD 0x0080
#define TS_WAKEKILL 0x0100
#define TS_NOLOAD 0x0400

/* Is t inside sched_yield? The number of the syscall it is in sits in the registers saved when
 * it entered the kernel (bpf_task_pt_regs: 5.15+; without it no switch is taken for a yield). */
static __always_inline bool in_sched_yield(struct task_struct *t)
{
	if (kt_nr_sched_yield < 0 || !bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs))
		return false;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(t);
	return regs && pi_syscall_nr(regs) == kt_nr_sched_yield;
}

/* A runnable task that was switched out without the preempt flag was preempted all the same
 * (on its way back to user space, where need_resched is acted upon) unless it asked for it in
 * sched_yield: the kernel counts both as involuntary switches (nivcsw). */
static __always_inline __u32 offcpu_reason(bool preempt, __u32 state, struct task_struct *t)
{
	if (preempt)
		return KT_OFF_PREEMPTED;
	if (state == 0)
		return in_sched_yield(t) ? KT_OFF_YIELD : KT_OFF_PREEMPTED;
	if (state & (TS_DEAD | TS_EXIT_DEAD | TS_EXIT_ZOMBIE))
		return KT_OFF_DEAD;
	if (state & TS_STOPPED)
		return KT_OFF_STOPPED;
	if (state & TS_TRACED)
		return KT_OFF_TRACED;
	if (state & TS_PARKED)
		return KT_OFF_PARKED;
	if ((state & TS_UNINTERRUPTIBLE) && (state & TS_NOLOAD))
		return KT_OFF_IDLE_WAIT;
	if ((state & TS_UNINTERRUPTIBLE) && (state & TS_WAKEKILL))
		return KT_OFF_KILLABLE;
	if (state & TS_UNINTERRUPTIBLE)
		return KT_OFF_DISK;
	if (state & TS_INTERRUPTIBLE)
		return KT_OFF_SLEEPING;
	return KT_OFF_OTHER;
}

static __always_inline void fill_cpu(struct kt_cpu *e, struct task_struct *t, __u16 kind, __u16 size,
				     struct cpu_state *st)
{
	pi_fill_header(&e->h, kind, size, t);
	e->start_ns = st->since_ns;
	e->reason = st->reason;
	e->state = st->state;
	e->stack_nr = 0;
	e->prev_cpu = st->cpu;
}

static __always_inline void emit_cpu(struct task_struct *t, __u16 kind, struct cpu_state *st, __u32 tid)
{
	if (kind == KT_OFFCPU && kt_stacks_on) {
		struct kt_cpu_stack *e = pi_reserve(&kt_events, sizeof(*e));
		if (!e)
			return;
		fill_cpu(&e->c, t, kind, sizeof(*e), st);
		struct kt_stackbuf *sb = bpf_map_lookup_elem(&kt_stackbufs, &tid);
		e->ustack_nr = 0;
		e->pad = 0;
		if (sb) {
			__builtin_memcpy(e->ips, sb->ips, sizeof(e->ips));
			__builtin_memcpy(e->uips, sb->uips, sizeof(e->uips));
			e->c.stack_nr = sb->nr < KT_MAX_STACK ? sb->nr : KT_MAX_STACK;
			e->ustack_nr = sb->unr < KT_MAX_STACK ? sb->unr : KT_MAX_STACK;
		}
		__u32 tgid = e->c.h.pid;
		struct kt_stack_seen now = {.pid_start_ns = e->c.h.pid_start_ns,
					    .exec_id = BPF_CORE_READ(t, self_exec_id)};
		struct kt_stack_seen *seen = bpf_map_lookup_elem(&kt_stack_seen, &tgid);
		if (e->ustack_nr && (!seen || seen->pid_start_ns != now.pid_start_ns || seen->exec_id != now.exec_id)) {
			bpf_map_update_elem(&kt_stack_seen, &tgid, &now, BPF_ANY);
			bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
			return;
		}
		pi_submit(&kt_events, e);
		return;
	}
	struct kt_cpu *e = pi_reserve(&kt_events, sizeof(*e));
	if (!e)
		return;
	fill_cpu(e, t, kind, sizeof(*e), st);
	pi_submit(&kt_events, e);
}

/* The kernel and user stacks of the task going off CPU (we run in its context; a kernel
 * thread has no user stack). */
static __always_inline void take_stack(void *ctx, __u32 tid)
{
	struct kt_stackbuf *sb = bpf_map_lookup_elem(&kt_stackbufs, &tid);
	if (!sb) {
		__u32 zero = 0;
		struct kt_stackbuf *z = bpf_map_lookup_elem(&kt_stackbuf_zero, &zero);
		if (!z || bpf_map_update_elem(&kt_stackbufs, &tid, z, BPF_NOEXIST) != 0) {
			pi_count_lost_as(KT_LOST_STACKS); /* this off-CPU interval has no stack */
			return;
		}
		sb = bpf_map_lookup_elem(&kt_stackbufs, &tid);
		if (!sb)
			return;
	}
	long n = bpf_get_stack(ctx, sb->ips, sizeof(sb->ips), 0);
	sb->nr = n > 0 ? (__u32)(n / sizeof(__u64)) : 0;
	n = bpf_get_stack(ctx, sb->uips, sizeof(sb->uips), BPF_F_USER_STACK);
	sb->unr = n > 0 ? (__u32)(n / sizeof(__u64)) : 0;
}

static __always_inline void on_switch(void *ctx, bool preempt, struct task_struct *prev,
				      struct task_struct *next, unsigned int prev_state)
{
	__u64 now = bpf_ktime_get_boot_ns();
	__u32 cpu = bpf_get_smp_processor_id();
	__u32 ptid = BPF_CORE_READ(prev, pid);
	if (pi_wanted_in(BPF_CORE_READ(prev, tgid), ptid, prev)) {
		struct cpu_state *st = bpf_map_lookup_elem(&kt_cpustate, &ptid);
		if (st && st->on)
			emit_cpu(prev, KT_ONCPU, st, ptid);
		__u32 reason = offcpu_reason(preempt, prev_state, prev);
		if (reason == KT_OFF_DEAD) {
			bpf_map_delete_elem(&kt_cpustate, &ptid);
			if (kt_stacks_on)
				bpf_map_delete_elem(&kt_stackbufs, &ptid);
		} else {
			struct cpu_state ns = {
				.since_ns = now, .on = 0, .reason = reason, .state = prev_state, .cpu = cpu,
			};
			if (kt_stacks_on)
				take_stack(ctx, ptid);
			if (bpf_map_update_elem(&kt_cpustate, &ptid, &ns, BPF_ANY) != 0)
				pi_count_lost_as(KT_LOST_CPU);
		}
	}
	__u32 ntid = BPF_CORE_READ(next, pid);
	if (pi_wanted_in(BPF_CORE_READ(next, tgid), ntid, next)) {
		struct cpu_state *st = bpf_map_lookup_elem(&kt_cpustate, &ntid);
		/* --min-duration: a shorter off-CPU interval is not streamed */
		if (st && !st->on && (!pi_filter_min_ns || now - st->since_ns >= pi_filter_min_ns))
			emit_cpu(next, KT_OFFCPU, st, ntid);
		struct cpu_state ns = {.since_ns = now, .on = 1, .cpu = cpu};
		if (bpf_map_update_elem(&kt_cpustate, &ntid, &ns, BPF_ANY) != 0)
			pi_count_lost_as(KT_LOST_CPU);
	}
}

/* From 5.18 the tracepoint passes prev's state. */
SEC("tp_btf/sched_switch")
int BPF_PROG(kt_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	on_switch(ctx, preempt, prev, next, prev_state);
	return 0;
}

/* Before it, the state is read from prev itself. */
SEC("tp_btf/sched_switch")
int BPF_PROG(kt_switch_nostate, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	on_switch(ctx, preempt, prev, next, pi_task_state(prev));
	return 0;
}
