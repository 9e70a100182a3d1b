// SPDX-License-Identifier: GPL-2.0
// sigcount: signals sent to the target, counted in the kernel per (process, signal).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <procimage/bpf/procimage.bpf.h>
#include "sigcount.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct sigcount_key);
	__type(value, __u64);
} sig_counts SEC(".maps");

#define TRACE_SIGNAL_DELIVERED 0 /* enum trace_signal_result: queued for the task */

/* Runs in the sender as the signal is generated, with the signal that was sent: by the time a
 * fatal signal is delivered, the kernel has turned it into SIGKILL for the whole group. */
SEC("tp_btf/signal_generate")
int BPF_PROG(sigcount_generate, int sig, struct kernel_siginfo *info, struct task_struct *task, int group,
	     int result)
{
	if (result != TRACE_SIGNAL_DELIVERED)
		return 0; /* ignored, or merged with one already pending: it will not arrive again */
	__u32 tgid = BPF_CORE_READ(task, tgid);
	if (!pi_wanted_in(tgid, BPF_CORE_READ(task, pid), task))
		return 0;
	struct sigcount_key key = {.tgid = tgid, .sig = (__u32)sig,
				   .start_ns = BPF_CORE_READ(task, group_leader, start_boottime)};
	__u64 *n = bpf_map_lookup_elem(&sig_counts, &key);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return 0;
	}
	__u64 one = 1;
	if (bpf_map_update_elem(&sig_counts, &key, &one, BPF_NOEXIST) != 0) {
		n = bpf_map_lookup_elem(&sig_counts, &key);
		if (n)
			__sync_fetch_and_add(n, 1);
		else
			pi_count_lost();
	}
	return 0;
}
