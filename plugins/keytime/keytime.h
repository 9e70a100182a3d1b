/* SPDX-License-Identifier: Apache-2.0 */
/* Records of the keytime probe, shared by keytime.bpf.c and keytime.cpp. */
#ifndef PROCIMAGE_KEYTIME_H
#define PROCIMAGE_KEYTIME_H

#include <procimage/bpf/common.h>

#define KT_FILENAME_LEN 256
#define KT_ARG_LEN 128     /* longest single argument kept */
#define KT_MAX_ARGS 32     /* most arguments kept (config argv_max is 1..KT_MAX_ARGS) */
#define KT_ARGS_SIZE (KT_ARG_LEN * KT_MAX_ARGS)
#define KT_MAX_STACK 32

/* Causes of losses (pi_lost keys, named by the user side) */
#define KT_LOST_VFORKS (PI_LOST_PROBE + 0) /* kt_vforks full */
#define KT_LOST_BIRTHS (PI_LOST_PROBE + 1) /* kt_births full */
#define KT_LOST_EXECS (PI_LOST_PROBE + 2)  /* kt_exec_inflight full */
#define KT_LOST_CPU (PI_LOST_PROBE + 3)    /* kt_cpustate full */
#define KT_LOST_STACKS (PI_LOST_PROBE + 4) /* kt_stackbufs full */

enum kt_kind {
	KT_EXEC = 1,      /* struct kt_exec */
	KT_EXIT = 2,      /* struct kt_exit */
	KT_NEWTASK = 3,   /* struct kt_newtask */
	KT_VFORK_DONE = 4,/* struct kt_vfork_done */
	KT_ONCPU = 5,     /* struct kt_cpu: an on-CPU interval ended */
	KT_OFFCPU = 6,    /* struct kt_cpu: an off-CPU interval ended */
};

enum kt_exec_flags {
	KT_EXEC_ARGS_TRUNCATED = 1, /* more arguments than kept, or one was cut */
	KT_EXEC_FROM_MM = 2,        /* argv read from the new image (no syscall entry seen) */
	KT_EXEC_UNREADABLE = 4,     /* failed exec whose filename could not be read at entry */
};

struct kt_exec {
	struct pi_event_header h;
	__s32 ret;       /* 0 or a negative errno */
	__u32 old_tid;   /* thread id before exec (differs when a non-leader thread execs) */
	__u32 argc;      /* arguments kept in args */
	__u32 flags;     /* enum kt_exec_flags */
	__u32 args_size; /* bytes used in args (NUL-separated) */
	__u32 pad;
	/* the caller's filename and argv pointers, to read again at exit what was not resident at
	 * entry (kernel side only; user space ignores them) */
	__u64 filename_uptr;
	__u64 argv_uptr;
	char old_comm[PI_COMM_LEN];
	char filename[KT_FILENAME_LEN];
	char args[KT_ARGS_SIZE];
};

struct kt_exit {
	struct pi_event_header h;
	__u32 exit_code;  /* the kernel's task->exit_code: status << 8 | core << 7 | signal */
	__u32 group_dead; /* 1: last thread of the process */
	__u64 thread_start_ns;  /* boot ns */
	__u64 process_start_ns; /* boot ns */
	__u32 ppid;       /* real parent's tgid */
	__u32 created_by; /* enum kt_clone_kind, 0 when its birth was not seen */
};

enum kt_clone_kind {
	KT_CLONE_FORK = 1,
	KT_CLONE_VFORK = 2,
	KT_CLONE_THREAD = 3,
};

/* Header = the parent (current). */
struct kt_newtask {
	struct pi_event_header h;
	__u64 clone_flags;
	__u32 child_pid;  /* tgid */
	__u32 child_tid;
	__u32 clone_kind; /* enum kt_clone_kind */
	__u32 pad;
	char child_comm[PI_COMM_LEN];
};

/* Header = the vfork parent, suspended from the child's creation until now. */
struct kt_vfork_done {
	struct pi_event_header h;
	__u32 child_pid;
	__u32 child_tid;
	__u64 dur_ns;
	__u32 by_exec; /* 1: child exec'd; 0: child exited */
	__u32 pad;
};

enum kt_offcpu_reason {
	KT_OFF_PREEMPTED = 1,
	KT_OFF_YIELD = 2,
	KT_OFF_SLEEPING = 3,      /* TASK_INTERRUPTIBLE */
	KT_OFF_DISK = 4,          /* TASK_UNINTERRUPTIBLE (I/O, page faults, D state) */
	KT_OFF_IDLE_WAIT = 5,     /* TASK_IDLE: uninterruptible but not counted as load */
	KT_OFF_STOPPED = 6,
	KT_OFF_TRACED = 7,
	KT_OFF_DEAD = 8,
	KT_OFF_PARKED = 9,
	KT_OFF_OTHER = 10,
	KT_OFF_KILLABLE = 11,     /* TASK_KILLABLE: uninterruptible but fatal signals wake it */
};

struct kt_cpu {
	struct pi_event_header h;
	__u64 start_ns; /* interval start, boot ns (end is h.ts_boot_ns) */
	__u32 reason;   /* KT_OFFCPU: enum kt_offcpu_reason */
	__u32 state;    /* KT_OFFCPU: raw task state at switch-out */
	__u32 stack_nr; /* KT_OFFCPU with stacks on: frames in the kt_cpu_stack record */
	__u32 prev_cpu; /* KT_OFFCPU: CPU it left; h.cpu is the CPU it came back on */
};

/* KT_OFFCPU with stacks on: the kernel and user stacks where the thread went off CPU,
 * innermost first (c.stack_nr kernel frames in ips, ustack_nr user frames in uips). */
struct kt_cpu_stack {
	struct kt_cpu c;
	__u64 ips[KT_MAX_STACK];
	__u64 uips[KT_MAX_STACK];
	__u32 ustack_nr;
	__u32 pad;
};

/* Per-thread stacks taken at switch-out, copied into the record at switch-in. */
struct kt_stackbuf {
	__u64 ips[KT_MAX_STACK];
	__u64 uips[KT_MAX_STACK];
	__u32 nr;
	__u32 unr;
};

#endif /* PROCIMAGE_KEYTIME_H */
