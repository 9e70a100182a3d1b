// SPDX-License-Identifier: GPL-2.0
/*
 * The host's own BPF object. It creates the shared maps every probe reuses (pi_control,
 * pi_targets) and keeps the target map current as targets fork and die:
 *  - a child forked by a process whose target entry has follow_slots joins those slots;
 *  - a thread group's entry is removed when its leader is freed (no stale ids after reuse).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <procimage/bpf/procimage.bpf.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/sched_process_fork")
int BPF_PROG(pi_follow_fork, struct task_struct *parent, struct task_struct *child)
{
	struct pi_target_key key = {.id = BPF_CORE_READ(parent, tgid), .kind = PI_TK_TGID};
	struct pi_target_val *pv = bpf_map_lookup_elem(&pi_targets, &key);
	if (!pv || !pv->follow_slots)
		return 0;
	__u32 child_tgid = BPF_CORE_READ(child, tgid);
	if (child_tgid == key.id)
		return 0; /* a new thread: already covered by its thread group */
	struct pi_target_key ckey = {.id = child_tgid, .kind = PI_TK_TGID};
	struct pi_target_val nv = {.slots = pv->follow_slots, .follow_slots = pv->follow_slots};
	struct pi_target_val *cv = bpf_map_lookup_elem(&pi_targets, &ckey);
	if (cv) {
		/* A plain read-modify-write: atomic OR exists only from 5.12, and a child is forked
		 * once, so the only other writer is the host replacing a whole entry. */
		cv->slots |= nv.slots;
		cv->follow_slots |= nv.follow_slots;
		return 0;
	}
	if (bpf_map_update_elem(&pi_targets, &ckey, &nv, BPF_NOEXIST) != 0)
		pi_count_lost();
	return 0;
}

SEC("tp_btf/sched_process_free")
int BPF_PROG(pi_forget_task, struct task_struct *t)
{
	struct pi_target_key key = {.id = BPF_CORE_READ(t, pid), .kind = PI_TK_TID};
	bpf_map_delete_elem(&pi_targets, &key);
	if (key.id == (__u32)BPF_CORE_READ(t, tgid)) {
		key.kind = PI_TK_TGID;
		bpf_map_delete_elem(&pi_targets, &key);
	}
	return 0;
}
