/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Types shared by the kernel side (BPF) and the user side of every probe: the activation map
 * layout owned by the host and the header every ring-buffer record starts with.
 * Fixed-width types only, explicit padding.
 */
#ifndef PROCIMAGE_BPF_COMMON_H
#define PROCIMAGE_BPF_COMMON_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define PI_COMM_LEN 16
#define PI_MAX_SLOTS 32      /* probe instances one host can run */
#define PI_MAX_TARGETS 16384 /* entries of the shared target map */
#define PI_COMM_FILTERS 8 /* comm patterns the kernel checks (pi_filters.n_comms at most) */

/* A probe's pi_lost counters (per-CPU array, u64 per CPU): slot 0 counts every record or map
 * entry the probe could not store; slot PI_LOST_RINGBUF (also in slot 0) those refused by a full
 * ring buffer; slots PI_LOST_PROBE.. PI_LOST_SLOTS-1 causes the probe names in
 * pi_probe_io.lost_causes (a full map, a failed allocation). */
#define PI_LOST_SLOTS 8
#define PI_LOST_ANY 0
#define PI_LOST_RINGBUF 1
#define PI_LOST_PROBE 2

/* pi_control[slot].mode */
enum pi_mode {
	PI_MODE_OFF = 0,     /* the probe collects nothing */
	PI_MODE_ALL = 1,     /* every thread (procimage itself excluded unless include_self) */
	PI_MODE_TARGETS = 2, /* threads / thread groups listed in pi_targets for this slot */
	PI_MODE_CGROUP = 3,  /* every thread in a cgroup v2 subtree: pi_targets[{slot, PI_TK_CGROUP}] */
};

struct pi_control {
	__u32 mode;         /* enum pi_mode */
	__u32 self_tgid;    /* procimage's own tgid */
	__u32 include_self; /* 1: do not exclude self_tgid */
	__s32 idle_cpu;     /* >= 0: the target includes that CPU's idle task (tid 0) */
	__u64 generation;   /* bumped on every (re)activation */
};

enum pi_target_key_kind {
	PI_TK_TID = 1,  /* one thread, by the kernel's pid */
	PI_TK_TGID = 2, /* a whole thread group */
	/* id is a probe slot; the value is that slot's struct pi_cgroup_target (same size as
	 * pi_target_val), present while the slot's mode is PI_MODE_CGROUP */
	PI_TK_CGROUP = 3,
};

struct pi_target_key {
	__u32 id;
	__u32 kind; /* enum pi_target_key_kind */
};

struct pi_target_val {
	__u64 slots;        /* bit n: probe slot n targets this id */
	__u64 follow_slots; /* bit n: children forked by this process join slot n's target */
};

/* A slot's cgroup target: the cgroup (its kernfs id, the id bpf_get_current_cgroup_id() and
 * name_to_handle_at() give) and every cgroup below it, on the v2 (unified) hierarchy. A task's
 * cgroup is compared with the target's id, then its parent, and so on up to min_level (no
 * cgroup at a lower level can lie below the target) or PI_CGROUP_MAX_WALK steps. */
#define PI_CGROUP_MAX_WALK 32
struct pi_cgroup_target {
	__u64 cgroup_id;
	__u32 min_level; /* the target's depth below the root as the host sees it: a lower bound */
	__u32 pad;
};

/* The header every ring-buffer record starts with. */
struct pi_event_header {
	__u16 kind;  /* probe-specific record type */
	__u16 size;  /* size of the whole record in bytes */
	__u32 cpu;
	__u64 ts_boot_ns;   /* bpf_ktime_get_boot_ns() */
	__u32 pid;          /* tgid */
	__u32 tid;          /* the kernel's pid */
	__u64 pid_start_ns; /* group leader's start time, ns since boot */
	char comm[PI_COMM_LEN];
	/* The task's cgroup on the v2 hierarchy (its kernfs id, what bpf_get_current_cgroup_id()
	 * returns for it); 0: not read. The host turns it into the record's cgroup path. */
	__u64 cgroup_id;
};

#endif /* PROCIMAGE_BPF_COMMON_H */
