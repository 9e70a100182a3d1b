// SPDX-License-Identifier: GPL-2.0
/*
 * profile: on-CPU sampling of the target's threads, with user and kernel stacks.
 *
 *  perf_event (software cpu-clock, one event per CPU, pr_freq Hz)
 *      a sample of a target thread is counted in the kernel under (thread, image, user stack,
 *      kernel stack); the user side reads the counts once per interval.
 *
 * Two count maps take turns: the user side switches pr_sel at each interval, then reads and
 * empties the map that was just left, while samples go to the other one.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <procimage/bpf/procimage.bpf.h>
#include "profile.h"

char LICENSE[] SEC("license") = "GPL";

#define PR_EEXIST 17

const volatile bool pr_user_on = true;
const volatile bool pr_kernel_on = true;
/* frames per stack: PR_MAX_DEPTH, or PR_SMALL_DEPTH where hash keys are at most 512 bytes */
const volatile __u32 pr_depth = PR_MAX_DEPTH;

/* which count map takes samples: written by the user side at each interval */
__u32 pr_sel = 0;

struct pr_counts {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096); /* set from the config before load */
	/* sizes, not BTF types: the user side shortens the key to pr_key_size(pr_depth) */
	__uint(key_size, sizeof(struct pr_key));
	__uint(value_size, sizeof(struct pr_count));
};
struct pr_counts pr_counts0 SEC(".maps");
struct pr_counts pr_counts1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pr_key);
} pr_scratch SEC(".maps");

/* processes already announced to the user side, by tgid (LRU: a process evicted is announced
 * again, which costs one more read of its mappings) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct pr_seen_val);
} pr_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} pr_events SEC(".maps");

static __always_inline void announce(struct task_struct *t, __u32 tgid, __u32 exec_id)
{
	__u64 start = BPF_CORE_READ(t, group_leader, start_boottime);
	struct pr_seen_val *seen = bpf_map_lookup_elem(&pr_seen, &tgid);
	if (seen && seen->pid_start_ns == start && seen->exec_id == exec_id)
		return;
	struct pr_seen_val v = {.pid_start_ns = start, .exec_id = exec_id};
	bpf_map_update_elem(&pr_seen, &tgid, &v, BPF_ANY);
	struct pr_process *e = pi_reserve(&pr_events, sizeof(*e));
	if (!e)
		return;
	pi_fill_header(&e->h, PR_PROCESS, sizeof(*e), t);
	e->exec_id = exec_id;
	e->pad = 0;
	/* wake the user side at once: the process may not live long */
	bpf_ringbuf_submit(e, 0);
}

static __always_inline void count(void *counts, struct pr_key *key, struct task_struct *t)
{
	struct pr_count *c = bpf_map_lookup_elem(counts, key);
	if (c) {
		__sync_fetch_and_add(&c->samples, 1);
		return;
	}
	struct pr_count init = {.samples = 1};
	init.pid_start_ns = BPF_CORE_READ(t, group_leader, start_boottime);
	bpf_get_current_comm(init.comm, sizeof(init.comm));
	long err = bpf_map_update_elem(counts, key, &init, BPF_NOEXIST);
	if (err == -PR_EEXIST) {
		/* another CPU inserted the same key meanwhile */
		c = bpf_map_lookup_elem(counts, key);
		if (c) {
			__sync_fetch_and_add(&c->samples, 1);
			return;
		}
	}
	if (err)
		pi_count_lost_as(PR_LOST_COUNTS); /* the map is full: counted as lost, never silently */
}

SEC("perf_event")
int pr_sample(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	if (!pi_wanted(tgid, tid))
		return 0;
	__u32 zero = 0;
	struct pr_key *key = bpf_map_lookup_elem(&pr_scratch, &zero);
	if (!key)
		return 0;
	struct task_struct *t = pi_current_task();
	key->pid = tgid;
	key->tid = tid;
	key->exec_id = (__u32)BPF_CORE_READ(t, self_exec_id);
	key->pad = 0;
	/* bpf_get_stack zeroes what it does not fill (all of it on an error): equal stacks make
	 * equal keys */
	__u32 depth = pr_depth <= PR_MAX_DEPTH ? pr_depth : PR_MAX_DEPTH;
	__u64 *ustack = key->frames, *kstack = key->frames + depth;
	if (!pr_user_on || !pr_kernel_on) {
		/* a stack not taken stays zero (two halves: clang inlines a memset of 512 bytes) */
		__builtin_memset(key->frames, 0, sizeof(key->frames) / 2);
		__builtin_memset(key->frames + PR_MAX_DEPTH, 0, sizeof(key->frames) / 2);
	}
	long n = 0;
	if (pr_user_on)
		n = bpf_get_stack(ctx, ustack, depth * sizeof(__u64), BPF_F_USER_STACK);
	key->ustack_nr = n < 0 ? (__s32)n : (__s32)(n / sizeof(__u64));
	n = 0;
	if (pr_kernel_on)
		n = bpf_get_stack(ctx, kstack, depth * sizeof(__u64), 0);
	key->kstack_nr = n < 0 ? (__s32)n : (__s32)(n / sizeof(__u64));
	if (tgid)
		announce(t, tgid, key->exec_id);
	if (pr_sel & 1)
		count(&pr_counts1, key, t);
	else
		count(&pr_counts0, key, t);
	return 0;
}
