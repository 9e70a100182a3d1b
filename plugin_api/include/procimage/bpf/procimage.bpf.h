/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kernel-side helpers for procimage probes. Include after vmlinux.h and the libbpf headers:
 *
 *   #include "vmlinux.h"
 *   #include <bpf/bpf_helpers.h>
 *   #include <bpf/bpf_core_read.h>
 *   #include <bpf/bpf_tracing.h>
 *   #include <procimage/bpf/procimage.bpf.h>
 *
 * It declares the host-owned shared maps (pi_control, pi_targets: the host replaces them with
 * its own before load), the probe's lost-record counter (pi_lost) and pi_slot, the probe's
 * activation slot written by the host into rodata.
 */
#ifndef PROCIMAGE_PROCIMAGE_BPF_H
#define PROCIMAGE_PROCIMAGE_BPF_H

#include <procimage/bpf/common.h>

const volatile __u32 pi_slot = 0;
/* Pending bytes at which a record wakes the host (0: every record). Set from pi_host. */
const volatile __u64 pi_wakeup_bytes = 0;

/* The run's filters (pi_host.filters, copied by set_common_rodata()). Each comm pattern is a
 * 16-byte value and mask: a thread name matches when its bytes agree with the value wherever
 * the mask is set. An exact name masks its bytes and its NUL; a "prefix*" glob its prefix
 * bytes; any other pattern the bytes before its first wildcard (the host then checks the
 * records against the whole pattern, with fnmatch). */
const volatile __u32 pi_comm_n = 0;
const volatile __u64 pi_comm_val[PI_COMM_FILTERS * 2] = {};
const volatile __u64 pi_comm_mask[PI_COMM_FILTERS * 2] = {};
/* Stream only failures (the aggregates keep every event). */
const volatile bool pi_filter_failed = false;
/* Stream only intervals at least this long, in ns (the aggregates keep every one). */
const volatile __u64 pi_filter_min_ns = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PI_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct pi_control);
} pi_control SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PI_MAX_TARGETS);
	__type(key, struct pi_target_key);
	__type(value, struct pi_target_val);
} pi_targets SEC(".maps");

/* Records or map entries this probe could not store, read and reported by the host. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PI_LOST_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} pi_lost SEC(".maps");

/* One record or map entry lost, for `cause` (PI_LOST_RINGBUF, or PI_LOST_PROBE + n for the
 * probe's own causes, named in pi_probe_io.lost_causes); slot 0 counts them all. */
static __always_inline void pi_count_lost_as(__u32 cause)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&pi_lost, &zero);
	if (n)
		*n += 1;
	if (cause > 0 && cause < PI_LOST_SLOTS) {
		n = bpf_map_lookup_elem(&pi_lost, &cause);
		if (n)
			*n += 1;
	}
}

/* A loss with no named cause. */
static __always_inline void pi_count_lost(void)
{
	pi_count_lost_as(PI_LOST_ANY);
}

/* Is the probe switched on at all? (System-wide reference figures are collected only while
 * the probe is active; check this first on hot paths.) */
static __always_inline bool pi_active(void)
{
	__u32 slot = pi_slot;
	struct pi_control *c = bpf_map_lookup_elem(&pi_control, &slot);
	return c && c->mode != PI_MODE_OFF;
}

/* The current task. bpf_get_current_task_btf() exists from 5.11; before it the plain pointer
 * serves every BPF_CORE_READ (never a direct dereference) just as well. */
static __always_inline struct task_struct *pi_current_task(void)
{
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf))
		return bpf_get_current_task_btf();
	return (struct task_struct *)bpf_get_current_task();
}

/* Is task t in the slot's cgroup target (the cgroup or one below it)? Its cgroup on the v2
 * hierarchy (task->cgroups->dfl_cgrp: the "unified" one on hybrid hosts, the same cgroup
 * bpf_get_current_cgroup_id() names) and its ancestors are compared with the target's id. */
static __always_inline bool pi_task_in_cgroup(struct task_struct *t, __u32 slot)
{
	struct pi_target_key key = {.id = slot, .kind = PI_TK_CGROUP};
	struct pi_cgroup_target *ct = bpf_map_lookup_elem(&pi_targets, &key);
	if (!ct)
		return false;
	__u64 want = ct->cgroup_id;
	int min_level = (int)ct->min_level;
	struct cgroup *cg = BPF_CORE_READ(t, cgroups, dfl_cgrp);
	if (!cg)
		return false;
	int level = BPF_CORE_READ(cg, level);
	for (int i = 0; i < PI_CGROUP_MAX_WALK; i++) {
		if (!cg || level < min_level)
			return false;
		if (BPF_CORE_READ(cg, kn, id) == want)
			return true;
		cg = BPF_CORE_READ(cg, self.parent, cgroup);
		level--;
	}
	return false;
}

/* Does a thread name (16 bytes, NUL-terminated; bytes after the NUL are not read) match one of
 * the comm patterns? Unrolled: 8 pairs of masked compares, no loop for the verifier. */
static __always_inline bool pi_comm_match(const char *comm)
{
	__u64 w[2];
	__builtin_memcpy(w, comm, sizeof(w));
#pragma unroll
	for (int i = 0; i < PI_COMM_FILTERS; i++) {
		if ((__u32)i >= pi_comm_n)
			return false;
		if (((w[0] ^ pi_comm_val[2 * i]) & pi_comm_mask[2 * i]) == 0 &&
		    ((w[1] ^ pi_comm_val[2 * i + 1]) & pi_comm_mask[2 * i + 1]) == 0)
			return true;
	}
	return false;
}

/* The comm filter for a thread: its task t, or the current thread's name when t is NULL and
 * tid is the current thread. Another thread without its task cannot be read: it passes (every
 * caller that has no task asks about the current thread). */
static __always_inline bool pi_comm_wanted(__u32 tid, struct task_struct *t)
{
	char comm[PI_COMM_LEN] = {};
	if (t)
		BPF_CORE_READ_INTO(&comm, t, comm);
	else if (tid == (__u32)bpf_get_current_pid_tgid())
		bpf_get_current_comm(comm, sizeof(comm));
	else
		return true;
	return pi_comm_match(comm);
}

/* Is this thread part of the probe's current target (the comm filter aside)? See pi_wanted_in. */
static __always_inline bool pi_target_wanted_in(__u32 tgid, __u32 tid, struct task_struct *t)
{
	__u32 slot = pi_slot;
	struct pi_control *c = bpf_map_lookup_elem(&pi_control, &slot);
	if (!c || c->mode == PI_MODE_OFF)
		return false;
	if (tgid == c->self_tgid && !c->include_self)
		return false;
	if (tid == 0)
		return c->idle_cpu >= 0 && (__u32)c->idle_cpu == bpf_get_smp_processor_id();
	if (c->mode == PI_MODE_ALL)
		return true;
	if (c->mode == PI_MODE_CGROUP) {
		if (!t) {
			if (tid != (__u32)bpf_get_current_pid_tgid())
				return false;
			t = pi_current_task();
		}
		return pi_task_in_cgroup(t, slot);
	}
	__u64 bit = 1ULL << (slot & (PI_MAX_SLOTS - 1));
	struct pi_target_key key = {.id = tid, .kind = PI_TK_TID};
	struct pi_target_val *v = bpf_map_lookup_elem(&pi_targets, &key);
	if (v && (v->slots & bit))
		return true;
	key.id = tgid;
	key.kind = PI_TK_TGID;
	v = bpf_map_lookup_elem(&pi_targets, &key);
	return v && (v->slots & bit);
}

/* Is this thread part of the probe's current target, and does its name pass the comm filter
 * (checked only when one is set)? t is the thread's task when the caller has it, or NULL: then
 * a cgroup target (and a thread name) can be checked only when tid is the current thread (any
 * other thread is then not wanted by a cgroup target). Targets by thread or process never
 * read t. */
static __always_inline bool pi_wanted_in(__u32 tgid, __u32 tid, struct task_struct *t)
{
	if (!pi_target_wanted_in(tgid, tid, t))
		return false;
	return !pi_comm_n || pi_comm_wanted(tid, t);
}

/* pi_wanted_in() without the task: right for the current thread and for targets by thread or
 * process; for a cgroup target, a thread other than the current one is not wanted. */
static __always_inline bool pi_wanted(__u32 tgid, __u32 tid)
{
	return pi_wanted_in(tgid, tid, NULL);
}

static __always_inline bool pi_wanted_current(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	return pi_wanted_in(id >> 32, (__u32)id, NULL);
}

static __always_inline bool pi_wanted_task(struct task_struct *t)
{
	return pi_wanted_in(BPF_CORE_READ(t, tgid), BPF_CORE_READ(t, pid), t);
}

/* Does the slot's target follow cgroup membership? (Then a thread's answer can change
 * without a new activation: a probe that caches pi_wanted() per activation asks again.) */
static __always_inline bool pi_cgroup_mode(const struct pi_control *c)
{
	return c && c->mode == PI_MODE_CGROUP;
}

/* Can a thread's pi_wanted() answer change within an activation? With a cgroup target (threads
 * join and leave it) or a comm filter (a thread's name changes at exec and with
 * prctl(PR_SET_NAME)). A probe that caches the answer asks again each time when this holds. */
static __always_inline bool pi_target_changes(const struct pi_control *c)
{
	return pi_cgroup_mode(c) || pi_comm_n != 0;
}

/* Reserve a ring-buffer record; a full buffer is counted in pi_lost, never silent. */
static __always_inline void *pi_reserve(void *ringbuf, __u64 size)
{
	void *p = bpf_ringbuf_reserve(ringbuf, size, 0);
	if (!p)
		pi_count_lost_as(PI_LOST_RINGBUF);
	return p;
}

/* Ring-buffer batching: the host is woken once, by the record that takes the pending bytes
 * across pi_wakeup_bytes; it drains everything then, and every flush_ms anyway. (Waking for
 * every record above the threshold would cost an interrupt per record while the host is
 * busy draining.) */
static __always_inline __u64 pi_wakeup_flags(void *ringbuf, __u64 size, bool reserved)
{
	if (!pi_wakeup_bytes)
		return 0;
	__u64 avail = bpf_ringbuf_query(ringbuf, BPF_RB_AVAIL_DATA);
	/* a reserved record is already counted as pending */
	__u64 before = !reserved ? avail : avail > size ? avail - size : 0;
	return before < pi_wakeup_bytes && before + size >= pi_wakeup_bytes ? BPF_RB_FORCE_WAKEUP
									 : BPF_RB_NO_WAKEUP;
}

/* Submit a reserved record (it starts with a pi_event_header whose size is set). */
static __always_inline void pi_submit(void *ringbuf, void *rec)
{
	bpf_ringbuf_submit(rec, pi_wakeup_flags(ringbuf, ((struct pi_event_header *)rec)->size, true));
}

/* Copy a finished record into the ring buffer (counted in pi_lost when full). */
static __always_inline void pi_output(void *ringbuf, void *rec, __u64 size)
{
	if (bpf_ringbuf_output(ringbuf, rec, size, pi_wakeup_flags(ringbuf, size, false)) != 0)
		pi_count_lost_as(PI_LOST_RINGBUF);
}

/* A task's cgroup on the v2 hierarchy: the id pi_task_in_cgroup() compares, and the one the
 * host names in each record's cgroup path. */
static __always_inline __u64 pi_task_cgroup_id(struct task_struct *t)
{
	return BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
}

/* Fill the common header from a task (not necessarily current). */
static __always_inline void pi_fill_header(struct pi_event_header *h, __u16 kind, __u16 size,
					   struct task_struct *t)
{
	h->kind = kind;
	h->size = size;
	h->cpu = bpf_get_smp_processor_id();
	h->ts_boot_ns = bpf_ktime_get_boot_ns();
	h->pid = BPF_CORE_READ(t, tgid);
	h->tid = BPF_CORE_READ(t, pid);
	/* the idle task of a CPU (tgid 0) belongs to no process: no process start */
	h->pid_start_ns = h->pid ? BPF_CORE_READ(t, group_leader, start_boottime) : 0;
	BPF_CORE_READ_STR_INTO(&h->comm, t, comm);
	h->cgroup_id = pi_task_cgroup_id(t);
}

/* A task's state: task_struct.__state from 5.14, .state before. */
struct task_struct___pre514 {
	long state;
} __attribute__((preserve_access_index));

static __always_inline unsigned int pi_task_state(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	struct task_struct___pre514 *old = (void *)t;
	return (unsigned int)BPF_CORE_READ(old, state);
}

/* The number of the syscall a task is in, from the registers saved at its kernel entry (-1 or
 * an interrupt's mark when it entered for something else). */
static __always_inline long pi_syscall_nr(struct pt_regs *regs)
{
#if defined(__TARGET_ARCH_arm64)
	return BPF_CORE_READ(regs, syscallno);
#else
	return (long)BPF_CORE_READ(regs, orig_ax);
#endif
}

static __always_inline void pi_fill_header_current(struct pi_event_header *h, __u16 kind,
						   __u16 size)
{
	pi_fill_header(h, kind, size, pi_current_task());
}

/* The log2 histogram slot of v, capped at nslots - 1: slot i counts [2^i, 2^(i+1)), and 0
 * lands in slot 0. Branch-free, so the verifier sees one path. Every step is 64-bit and so is
 * the final cap: verifiers before 6.3 do not carry a 32-bit comparison's bound into the upper
 * half of the register, and would refuse the slot as an index into a map value. */
static __always_inline __u64 pi_log2_slot(__u64 v, __u32 nslots)
{
	__u64 r = 0, s;
	s = (__u64)(v > 0xffffffffULL) << 5; v >>= s; r |= s;
	s = (__u64)(v > 0xffff) << 4; v >>= s; r |= s;
	s = (__u64)(v > 0xff) << 3; v >>= s; r |= s;
	s = (__u64)(v > 0xf) << 2; v >>= s; r |= s;
	s = (__u64)(v > 0x3) << 1; v >>= s; r |= s;
	r |= (v >> 1);
	if (r >= (__u64)nslots)
		r = (__u64)nslots - 1;
	return r;
}

#endif /* PROCIMAGE_PROCIMAGE_BPF_H */
