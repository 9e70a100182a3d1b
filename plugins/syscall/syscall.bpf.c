// SPDX-License-Identifier: GPL-2.0
/*
 * syscall: every system call's latency and result, aggregated in the kernel.
 *
 *  tp_btf/sys_enter      note the entry time in a per-CPU slot (the thread is on this CPU)
 *  tp_btf/sched_switch   a thread leaving its CPU inside a call: move the entry to its task
 *                        storage (calls that block are the minority)
 *  tp_btf/sys_exit       latency = now - entry; add it to the system-wide per-CPU array and,
 *                        for targeted threads, to the per-target per-CPU hash and to the
 *                        thread's sequence batch (sent as one ring-buffer record when full)
 *  tp_btf/sched_process_exit  send a leaving thread's partial batch
 *  iter/task             on demand from the user side: calls in flight for longer than the
 *                        in-progress threshold; partial batches at the end of collection
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <procimage/bpf/procimage.bpf.h>
#include "syscall_records.h"

char LICENSE[] SEC("license") = "GPL";

/* Fixed at load */
const volatile __u32 sc_system = SC_SYSTEM_LATENCY; /* enum sc_system_mode */
const volatile __u64 sc_inprogress_ns = 0; /* in-flight age reported by the iterator */
/* --syscall: only the numbers set in sc_nr_mask are traced (timed, counted, streamed) */
const volatile bool sc_nr_filter = false;
const volatile __u64 sc_nr_mask[SC_NR_SLOTS / 64] = {};

/* Written by the user side through the mmapped .bss (per activation, or at each tick) */
__u64 sc_epoch;      /* interval number, bumped at each tick */
__u32 sc_run;        /* attach number: entries of an earlier attach are ignored */
__u32 sc_by_thread;  /* per-target keys are tids (1) or tgids (0) */
__u32 sc_rows;       /* per-target rows kept (0: system-wide figures only) */
__u32 sc_sequence;   /* sequence batches on */
__u32 sc_batch_len;  /* calls per sequence record, 1..SC_BATCH_MAX */
__u32 sc_iter_mode;  /* enum sc_iter_mode */
__u64 sc_attach_ns;  /* boot ns when this activation began */
__u64 sc_exits;      /* threads that exited (invalidates the per-CPU target cache) */

#define PF_EXITING_FLAG 0x00000004
#define PF_KTHREAD_FLAG 0x00200000
#define ENOSYS_VAL 38

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} sc_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sc_cpu);
} sc_cpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SC_NR_SLOTS);
	__type(key, __u32);
	__type(value, struct sc_stats);
} sc_sys SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096); /* config max_keys */
	__type(key, struct sc_key);
	__type(value, struct sc_stats);
} sc_target SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096); /* config max_keys */
	__type(key, __u32);
	__type(value, struct sc_owner);
} sc_owners SEC(".maps");

/* A zeroed value, to create sc_target entries (too big for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sc_stats);
} sc_zero SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sc_inflight);
} sc_task SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sc_seqbuf);
} sc_seq SEC(".maps");

/* ------------------------------------------------------------------ helpers */

/* Is system call nr traced (the --syscall filter)? A number beyond the mask is not. */
static __always_inline bool nr_traced(__u64 nr)
{
	if (!sc_nr_filter)
		return true;
	if (nr >= SC_NR_SLOTS)
		return false;
	return (sc_nr_mask[(nr >> 6) & (SC_NR_SLOTS / 64 - 1)] >> (nr & 63)) & 1;
}

/* Is a finished call streamed in the thread's sequence? --failed: only an error; --min-duration:
 * only a call that lasted that long. (The per-syscall figures count every call.) */
static __always_inline bool call_streamed(__u64 lat, __u32 err)
{
	if (pi_filter_failed && !err)
		return false;
	return lat >= pi_filter_min_ns;
}

static __always_inline struct pi_control *sc_control(void)
{
	__u32 slot = pi_slot;
	struct pi_control *c = bpf_map_lookup_elem(&pi_control, &slot);
	return c && c->mode != PI_MODE_OFF ? c : NULL;
}

/* What the current thread is (a target? procimage itself?), remembered per CPU for the last
 * thread asked about: a thread making many calls in a row pays the pid helper and the
 * target-map lookups once. The answers are keyed by the thread (its saved-registers address),
 * the activation generation (the host bumps it whenever the target changes), the attach
 * number, and the number of thread exits so far (a stack or a tid can only be reused after
 * its thread exited). */
static __always_inline void sc_classify(struct pi_control *c, struct sc_cpu *cpu, __u64 regs)
{
	__u64 exits = sc_exits;
	/* (a cgroup target's threads can join or leave it at any time, and a thread's name
	 * changes: with either, asked again each call) */
	if (cpu->cache_regs == regs && cpu->cache_gen == c->generation && cpu->cache_exits == exits &&
	    cpu->cache_run == sc_run && !pi_target_changes(c))
		return;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	cpu->cache_wanted = pi_wanted(tgid, (__u32)pid_tgid);
	cpu->cache_self = tgid == c->self_tgid && !c->include_self;
	cpu->cache_regs = regs;
	cpu->cache_gen = c->generation;
	cpu->cache_exits = exits;
	cpu->cache_run = sc_run;
}

/* One call into one per-CPU statistics copy: no atomics needed. */
static __always_inline void stats_add(struct sc_stats *s, __u64 lat, __u32 err, __u64 epoch)
{
	if (s->count == 0 || lat < s->min_ns)
		s->min_ns = lat;
	if (lat > s->max_ns)
		s->max_ns = lat;
	s->count++;
	s->errors += err;
	s->total_ns += lat;
	__u32 i = epoch & 1;
	if (s->iepoch[i] != epoch) {
		s->iepoch[i] = epoch;
		s->imax_ns[i] = lat;
		s->imin_ns[i] = lat;
	} else {
		if (lat > s->imax_ns[i])
			s->imax_ns[i] = lat;
		if (lat < s->imin_ns[i])
			s->imin_ns[i] = lat;
	}
	s->hist[pi_log2_slot(lat, SC_HIST_SLOTS)]++;
}

static __always_inline void owner_fill(struct sc_owner *o, struct task_struct *t)
{
	o->pid = t->tgid;
	o->tid = sc_by_thread ? t->pid : 0;
	o->pid_start_ns = t->group_leader->start_boottime;
	if (sc_by_thread)
		BPF_CORE_READ_STR_INTO(&o->comm, t, comm);
	else
		BPF_CORE_READ_STR_INTO(&o->comm, t, group_leader, comm);
}

static __always_inline void target_add(__u32 tgid, __u32 tid, __u32 slot, __u64 lat, __u32 err, __u64 epoch)
{
	struct sc_key key = {.id = sc_by_thread ? tid : tgid, .nr = slot};
	struct sc_stats *v = bpf_map_lookup_elem(&sc_target, &key);
	if (!v) {
		__u32 zero = 0;
		struct sc_stats *init = bpf_map_lookup_elem(&sc_zero, &zero);
		if (!init)
			return;
		bpf_map_update_elem(&sc_target, &key, init, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&sc_target, &key);
		if (!v) {
			pi_count_lost_as(SC_LOST_KEYS);
			return;
		}
		/* the owner's entry, created with its first key; each new key sets its slot bit */
		struct sc_owner *o = bpf_map_lookup_elem(&sc_owners, &key.id);
		if (!o) {
			struct sc_owner fresh = {};
			owner_fill(&fresh, bpf_get_current_task_btf());
			if (bpf_map_update_elem(&sc_owners, &key.id, &fresh, BPF_NOEXIST) != 0)
				pi_count_lost_as(SC_LOST_KEYS);
			o = bpf_map_lookup_elem(&sc_owners, &key.id);
		}
		/* (not atomic: BPF's atomic OR needs 5.12. Two threads of a process creating keys at
		 * the same moment may lose a bit; that key is then freed at a tick, not at the end.) */
		if (o)
			o->slots[(slot / 64) & (SC_NR_SLOTS / 64 - 1)] |= 1ULL << (slot % 64);
	}
	stats_add(v, lat, err, epoch);
}

static __always_inline __u64 batch_size(__u32 n)
{
	__u64 size = offsetof(struct sc_batch, calls) + (__u64)n * sizeof(struct sc_call);
	/* keep the bound visible to the verifier, whatever the compiler did with n */
	asm volatile("" : "+r"(size));
	if (size > sizeof(struct sc_batch))
		size = sizeof(struct sc_batch);
	return size;
}

/* Send the thread's pending calls as one record; the header is filled by the caller. */
static __always_inline void seq_send(struct sc_seqbuf *sb, __u32 reason)
{
	__u32 n = sb->b.n;
	if (n > SC_BATCH_MAX)
		n = SC_BATCH_MAX;
	__u64 size = batch_size(n);
	sb->b.h.kind = SC_BATCH;
	sb->b.h.size = size;
	sb->b.reason = reason;
	pi_output(&sc_events, &sb->b, size);
	sb->b.first += n;
	sb->b.n = 0;
}

/* From any task (thread exit). */
static __always_inline void seq_flush(struct sc_seqbuf *sb, struct task_struct *t, __u32 reason)
{
	pi_fill_header(&sb->b.h, SC_BATCH, 0, t);
	seq_send(sb, reason);
}

/* From the current task at a syscall exit: the header from what is at hand (no probe reads,
 * no extra clock read). */
static __always_inline void seq_flush_current(struct sc_seqbuf *sb, struct task_struct *t, __u64 pid_tgid,
					      __u64 now, __u32 reason)
{
	struct pi_event_header *h = &sb->b.h;
	h->cpu = bpf_get_smp_processor_id();
	h->ts_boot_ns = now;
	h->pid = pid_tgid >> 32;
	h->tid = (__u32)pid_tgid;
	h->pid_start_ns = t->group_leader->start_boottime;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
	h->cgroup_id = pi_task_cgroup_id(t);
	seq_send(sb, reason);
}

static __always_inline void seq_add(struct task_struct *t, __u64 pid_tgid, __u64 now, __u32 nr, __u64 lat,
				    long ret, __u64 epoch)
{
	struct sc_seqbuf *sb = bpf_task_storage_get(&sc_seq, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!sb) {
		pi_count_lost_as(SC_LOST_STORAGE);
		return;
	}
	if (sb->run != sc_run) {
		sb->run = sc_run;
		sb->b.first = 0;
		sb->b.n = 0;
	}
	__u32 n = sb->b.n;
	if (n && sb->epoch != epoch) {
		/* the first call of a new interval: the earlier ones go out now */
		seq_flush_current(sb, t, pid_tgid, now, SC_FLUSH_INTERVAL);
		n = 0;
	}
	if (n == 0)
		sb->epoch = epoch;
	if (n >= SC_BATCH_MAX)
		return;
	struct sc_call *c = &sb->b.calls[n];
	c->lat_ns = lat;
	c->ret = ret;
	c->nr = nr;
	c->pad = 0;
	sb->b.n = n + 1;
	if (n + 1 >= sc_batch_len)
		seq_flush_current(sb, t, pid_tgid, now, SC_FLUSH_FULL);
}

/* ------------------------------------------------------------------ hot hooks */

SEC("tp_btf/sys_enter")
int BPF_PROG(sc_enter, struct pt_regs *regs, long id)
{
	struct pi_control *c = sc_control();
	if (!c || !nr_traced((__u64)id))
		return 0;
	__u32 zero = 0;
	struct sc_cpu *cpu = bpf_map_lookup_elem(&sc_cpu, &zero);
	if (!cpu)
		return 0;
	__u64 key = (__u64)regs;
	sc_classify(c, cpu, key);
	/* Every call of the system is timed for the system latency figures (procimage's own
	 * excepted); otherwise only the target's. */
	if (sc_system == SC_SYSTEM_LATENCY ? cpu->cache_self : !cpu->cache_wanted)
		return 0;
	cpu->enter_ns = bpf_ktime_get_boot_ns();
	cpu->regs = key;
	cpu->nr = (__u32)id;
	cpu->run = sc_run;
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sc_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u32 zero = 0;
	struct sc_cpu *cpu = bpf_map_lookup_elem(&sc_cpu, &zero);
	if (!cpu || !cpu->regs)
		return 0; /* no call in flight on this CPU */
	/* The slot can only be the leaving thread's: a call leaves it at its return or here. */
	__u64 key = cpu->regs;
	cpu->regs = 0;
	if (cpu->run != sc_run || key != (__u64)bpf_task_pt_regs(prev))
		return 0; /* stale */
	if (prev->flags & PF_EXITING_FLAG)
		return 0; /* exit / exit_group: the call never returns */
	struct sc_inflight *f = bpf_task_storage_get(&sc_task, prev, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!f) {
		pi_count_lost_as(SC_LOST_STORAGE);
		return 0;
	}
	f->enter_ns = cpu->enter_ns;
	f->nr = cpu->nr;
	f->run = cpu->run;
	return 0;
}

static __always_inline __u32 nr_slot(__u32 nr)
{
	return nr < SC_NR_OTHER ? nr : SC_NR_OTHER;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(sc_exit, struct pt_regs *regs, long ret)
{
	struct pi_control *c = sc_control();
	if (!c || !nr_traced((__u64)regs->orig_ax))
		return 0;
	__u32 zero = 0;
	struct sc_cpu *cpu = bpf_map_lookup_elem(&sc_cpu, &zero);
	if (!cpu)
		return 0;
	__u64 key = (__u64)regs;
	__u32 err = ret < 0 && ret >= -4095;
	__u64 enter;
	__u32 nr;
	if (cpu->regs == key && cpu->run == sc_run) {
		/* the thread never left this CPU during the call */
		enter = cpu->enter_ns;
		nr = cpu->nr;
		cpu->regs = 0;
	} else {
		sc_classify(c, cpu, key);
		if (sc_system != SC_SYSTEM_LATENCY && !cpu->cache_wanted) {
			/* a call of the rest of the system, not timed in these modes: count it */
			if (sc_system == SC_SYSTEM_OFF || cpu->cache_self)
				return 0;
			__u32 slot = nr_slot((__u32)regs->orig_ax);
			struct sc_stats *s = bpf_map_lookup_elem(&sc_sys, &slot);
			if (s) {
				s->count++;
				s->errors += err;
			}
			return 0;
		}
		/* it blocked (its entry was moved at the switch); or the call began before
		 * collection, or this is a new task's first return from clone/fork (no entry) */
		struct sc_inflight *f =
			bpf_task_storage_get(&sc_task, bpf_get_current_task_btf(), 0, 0);
		if (!f || f->run != sc_run)
			return 0;
		enter = f->enter_ns;
		nr = f->nr;
		f->run = 0;
	}
	__u64 now = bpf_ktime_get_boot_ns();
	__u64 lat = now - enter;
	__u32 slot = nr_slot(nr);
	__u64 epoch = sc_epoch;
	if (sc_system != SC_SYSTEM_OFF) {
		struct sc_stats *s = bpf_map_lookup_elem(&sc_sys, &slot);
		if (s && sc_system == SC_SYSTEM_LATENCY) {
			stats_add(s, lat, err, epoch);
		} else if (s) {
			s->count++;
			s->errors += err;
		}
	}
	sc_classify(c, cpu, key);
	if (!cpu->cache_wanted)
		return 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (sc_rows)
		target_add(pid_tgid >> 32, (__u32)pid_tgid, slot, lat, err, epoch);
	if (sc_sequence && call_streamed(lat, err))
		seq_add(bpf_get_current_task_btf(), pid_tgid, now, nr, lat, ret, epoch);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(sc_task_exit, struct task_struct *p)
{
	__sync_fetch_and_add(&sc_exits, 1);
	/* The end of an id with figures: a thread (by thread), or the last thread of a process
	 * (signal->live has dropped to 0 when this tracepoint fires). */
	__u32 id = sc_by_thread ? p->pid : p->tgid;
	if (sc_rows && (sc_by_thread || BPF_CORE_READ(p, signal, live.counter) == 0) &&
	    bpf_map_lookup_elem(&sc_owners, &id)) {
		/* no room: not a loss, the keys are freed at a later tick instead */
		struct sc_end *e = bpf_ringbuf_reserve(&sc_events, sizeof(*e), 0);
		if (e) {
			pi_fill_header(&e->h, SC_END, sizeof(*e), p);
			e->id = id;
			e->pad = 0;
			pi_submit(&sc_events, e);
		}
	}
	if (!sc_sequence)
		return 0;
	struct sc_seqbuf *sb = bpf_task_storage_get(&sc_seq, p, 0, 0);
	if (sb && sb->run == sc_run && sb->b.n)
		seq_flush(sb, p, SC_FLUSH_EXIT);
	return 0;
}

/* A targeted task's new name after exec. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(sc_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 id = sc_by_thread ? p->pid : p->tgid;
	struct sc_owner *o = bpf_map_lookup_elem(&sc_owners, &id);
	if (o)
		owner_fill(o, p);
	return 0;
}

/* ------------------------------------------------------------------ scans */

SEC("iter/task")
int sc_scan(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *t = ctx->task;
	if (!t)
		return 0;
	if (sc_iter_mode == SC_ITER_FLUSH) {
		/* After detach: nothing else touches the buffers. The buffer is left as it is
		 * (the next attach starts it afresh): the iterator shows a task again when its
		 * output did not fit in the read, and it must then find the same calls. */
		struct sc_seqbuf *sb = bpf_task_storage_get(&sc_seq, t, 0, 0);
		if (!sb || sb->run != sc_run || !sb->b.n)
			return 0;
		__u64 size = batch_size(sb->b.n);
		pi_fill_header(&sb->b.h, SC_BATCH, size, t);
		sb->b.reason = SC_FLUSH_END;
		bpf_seq_write(seq, &sb->b, size);
		return 0;
	}
	if (!pi_wanted_in(t->tgid, t->pid, t))
		return 0;
	__u64 enter = 0;
	__u32 nr = 0;
	struct sc_inflight *f = bpf_task_storage_get(&sc_task, t, 0, 0);
	if (f && f->run == sc_run) {
		enter = f->enter_ns;
		nr = f->nr;
	} else {
		/* running on a CPU inside a call that has not blocked (yet) */
		__u32 zero = 0;
		struct sc_cpu *cpu = bpf_map_lookup_percpu_elem(&sc_cpu, &zero, t->thread_info.cpu);
		if (cpu && cpu->regs && cpu->regs == (__u64)bpf_task_pt_regs(t) && cpu->run == sc_run) {
			enter = cpu->enter_ns;
			nr = cpu->nr;
		}
	}
	__u32 flags = 0;
	if (!enter && !(t->flags & PF_KTHREAD_FLAG)) {
		/* A call that began before collection (its entry was never seen): the registers
		 * saved at entry say the thread is inside a system call while ax still holds the
		 * -ENOSYS the entry code put there and cx/r11 hold what the SYSCALL instruction
		 * saved (ip/flags); a page fault or an interrupt leaves a different picture. */
		struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(t);
		if (regs && (long)regs->orig_ax >= 0 && (long)regs->ax == -ENOSYS_VAL && regs->cx == regs->ip &&
		    regs->r11 == regs->flags) {
			enter = sc_attach_ns;
			nr = (__u32)regs->orig_ax;
			flags = SC_INPROGRESS_BEFORE_START;
		}
	}
	if (!enter || !nr_traced(nr))
		return 0;
	__u64 now = bpf_ktime_get_boot_ns();
	if (now < enter || now - enter < sc_inprogress_ns || now - enter < pi_filter_min_ns)
		return 0;
	struct sc_inprogress r = {};
	pi_fill_header(&r.h, SC_INPROGRESS, sizeof(r), t);
	r.enter_ns = enter;
	r.elapsed_ns = now - enter;
	r.nr = nr;
	r.flags = flags;
	bpf_seq_write(seq, &r, sizeof(r));
	return 0;
}
