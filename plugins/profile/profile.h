/* SPDX-License-Identifier: Apache-2.0 */
/* Records and map layouts of the profile probe, shared by profile.bpf.c and profile.cpp. */
#ifndef PROCIMAGE_PROFILE_H
#define PROCIMAGE_PROFILE_H

#include <procimage/bpf/common.h>

#define PR_MAX_DEPTH 64 /* frames kept per stack, user and kernel each */

enum pr_kind {
	PR_PROCESS = 1, /* struct pr_process: a process (or a new image of it) was first sampled */
};

/* What a sample is counted under: the thread, the image it ran (exec generation) and both
 * stacks, copied whole into the key (no stack-id map: no bucket collisions, no stale ids). */
struct pr_key {
	__u32 pid;        /* tgid */
	__u32 tid;
	__u32 exec_id;    /* low 32 bits of task->self_exec_id: bumped at every exec */
	__s32 ustack_nr;  /* user frames, or a negative errno (-EFAULT: no user context) */
	__s32 kstack_nr;  /* kernel frames (0: the sample hit user mode), or a negative errno */
	__u32 pad;
	__u64 ustack[PR_MAX_DEPTH]; /* innermost first; unused entries zero */
	__u64 kstack[PR_MAX_DEPTH];
};

struct pr_count {
	__u64 samples;
	__u64 pid_start_ns; /* the group leader's start_boottime */
	char comm[PI_COMM_LEN]; /* the thread's comm at its first sample in the window */
};

/* A process was sampled for the first time, or first since an exec: the user side reads its
 * mappings now, while it lives. */
struct pr_process {
	struct pi_event_header h;
	__u32 exec_id;
	__u32 pad;
};

/* The value of pr_seen (by tgid): what the last pr_process record was sent for. */
struct pr_seen_val {
	__u64 pid_start_ns;
	__u32 exec_id;
	__u32 pad;
};

#endif /* PROCIMAGE_PROFILE_H */
