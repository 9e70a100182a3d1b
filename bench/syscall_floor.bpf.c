// SPDX-License-Identifier: GPL-2.0
// bench/syscall.sh's floors, on the raw syscall tracepoints:
//  - by default, an empty program on sys_enter and on sys_exit: what merely running a BPF
//    program at every system call costs;
//  - with -DCLOCK, the least a per-call latency tool does: read the clock at entry into a
//    per-CPU slot, read it again at exit and add the difference to a per-CPU sum (no thread
//    identity, no blocking calls, no map keyed by anything).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#ifdef CLOCK
struct slot {
	__u64 enter_ns;
	__u64 sum_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct slot);
} floor_clock SEC(".maps");
#endif

SEC("raw_tp/sys_enter")
int floor_enter(void *ctx)
{
#ifdef CLOCK
	__u32 zero = 0;
	struct slot *s = bpf_map_lookup_elem(&floor_clock, &zero);
	if (s)
		s->enter_ns = bpf_ktime_get_boot_ns();
#endif
	return 0;
}

SEC("raw_tp/sys_exit")
int floor_exit(void *ctx)
{
#ifdef CLOCK
	__u32 zero = 0;
	struct slot *s = bpf_map_lookup_elem(&floor_clock, &zero);
	if (s)
		s->sum_ns += bpf_ktime_get_boot_ns() - s->enter_ns;
#endif
	return 0;
}
