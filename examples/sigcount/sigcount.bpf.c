// SPDX-License-Identifier: GPL-2.0
// sigcount: signals delivered to the target, counted in the kernel per (process, signal).
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

/* Runs in the receiving task as it takes the signal. */
SEC("tp_btf/signal_deliver")
int BPF_PROG(sigcount_deliver, int sig, struct kernel_siginfo *info, struct k_sigaction *ka)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!pi_wanted(id >> 32, (__u32)id))
		return 0;
	struct sigcount_key key = {.tgid = id >> 32, .sig = (__u32)sig};
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
