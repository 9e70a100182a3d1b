/* SPDX-License-Identifier: Apache-2.0 */
/* Records and map layouts of the profile probe, shared by profile.bpf.c and profile.cpp. */
#ifndef PROCIMAGE_PROFILE_H
#define PROCIMAGE_PROFILE_H

#include <procimage/bpf/common.h>

#define PR_MAX_DEPTH 64 /* frames kept per stack, user and kernel each */
/* Frames per stack where a hash key may not exceed 512 bytes (before Linux 5.11): the key is
 * then offsetof(frames) + 2 · 30 · 8 = 504 bytes. */
#define PR_SMALL_DEPTH 30

/* Cause of losses (pi_lost key, named by the user side): a sample found its count map full */
#define PR_LOST_COUNTS (PI_LOST_PROBE + 0)

enum pr_kind {
	PR_PROCESS = 1, /* struct pr_process: a process (or a new image of it) was first sampled */
};

/* What a sample is counted under: the thread, the image it ran (exec generation) and both
 * stacks, copied whole into the key (no stack-id map: no bucket collisions, no stale ids).
 * With a depth of D frames per stack (pr_depth: PR_MAX_DEPTH, or PR_SMALL_DEPTH on a kernel
 * without large hash keys) the user stack is frames[0, D), the kernel stack frames[D, 2·D), and
 * the count maps' keys are the first pr_key_size(D) bytes of this structure. */
struct pr_key {
	__u32 pid;        /* tgid */
	__u32 tid;
	__u32 exec_id;    /* low 32 bits of task->self_exec_id: bumped at every exec */
	__s32 ustack_nr;  /* user frames, or a negative errno (-EFAULT: no user context) */
	__s32 kstack_nr;  /* kernel frames (0: the sample hit user mode), or a negative errno */
	__u32 pad;
	__u64 frames[2 * PR_MAX_DEPTH]; /* each stack innermost first; unused entries zero */
};

#define pr_key_size(depth) (__builtin_offsetof(struct pr_key, frames) + 2 * (depth) * sizeof(__u64))

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
