/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Records of the resource probe, shared by resource.bpf.c and resource.cpp.
 *
 * One record layout, struct rs_task, for both sources:
 *  - RS_SAMPLE: written by the task iterator on every tick for each target task (and, for a
 *    thread target, every other thread of its process, so the process figure is complete);
 *  - RS_EXIT: sent through the ring buffer when a target task exits, with its final counters,
 *    so the last partial interval of a thread or process is not lost.
 * Fixed-width types only, explicit padding.
 */
#ifndef PROCIMAGE_RESOURCE_H
#define PROCIMAGE_RESOURCE_H

#include <procimage/bpf/common.h>

#define RS_MAX_CPUS 1024 /* per-CPU offsets kept for the exact RSS sum; more CPUs: approximate */

enum rs_kind {
	RS_SAMPLE = 1, /* a live (or not yet reaped) task seen by the iterator */
	RS_EXIT = 2,   /* final counters of a task, taken in sched_process_exit */
	RS_DEAD = 3,   /* its runtime at its last switch-out, the running slice accounted (only
			* self.runtime_ns is set): it replaces RS_EXIT's figure */
};

enum rs_flags {
	RS_F_TARGET = 1 << 0,     /* part of the target (else: another thread of a target's process) */
	RS_F_LEADER = 1 << 1,     /* pid == tgid: `dead` holds the process's released-thread sums */
	RS_F_KTHREAD = 1 << 2,    /* kernel thread (no user memory) */
	RS_F_ZOMBIE = 1 << 3,     /* exit_state set: exited, still counted in its process's totals */
	RS_F_ON_CPU = 1 << 4,     /* running on a CPU when sampled */
	RS_F_GROUP_DEAD = 1 << 5, /* RS_EXIT of the last thread of its process */
	RS_F_RSS = 1 << 6,        /* rss_pages[] is filled (the task has an mm) */
	RS_F_RSS_APPROX = 1 << 7, /* rss_pages[] are the counters' global parts only (no per-CPU sum) */
};

/* mm counters, in the kernel's order (MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES) */
enum rs_mm_counter {
	RS_MM_FILE = 0,
	RS_MM_ANON = 1,
	RS_MM_SWAP = 2,
	RS_MM_SHMEM = 3,
	RS_MM_COUNTERS = 4,
};

/* Cumulative counters of one task (or the sums its process keeps for released threads). */
struct rs_counters {
	__u64 runtime_ns; /* se.sum_exec_runtime: on-CPU time, ns, exact at the last scheduler update */
	__u64 utime_ns;   /* user time, ns, sampled at scheduler ticks (split only, see README) */
	__u64 stime_ns;   /* system time, ns, sampled at scheduler ticks */
	__u64 nvcsw;      /* voluntary context switches */
	__u64 nivcsw;     /* involuntary context switches */
	__u64 min_flt;    /* minor page faults */
	__u64 maj_flt;    /* major page faults */
	__u64 rchar;      /* bytes read by read-like syscalls (task_io_accounting) */
	__u64 wchar;      /* bytes written by write-like syscalls */
	__u64 syscr;      /* read-like syscalls */
	__u64 syscw;      /* write-like syscalls */
	__u64 read_bytes;  /* bytes the task caused to be fetched from storage */
	__u64 write_bytes; /* bytes the task caused to be sent to storage (page cache dirtied) */
	__u64 cancelled_write_bytes; /* dirtied bytes later truncated before write-back */
};

struct rs_task {
	struct pi_event_header h; /* kind: enum rs_kind; cpu: the CPU the task runs or last ran on;
				     ts_boot_ns: when sampled / when it exited */
	__u64 start_ns;           /* the thread's start, ns since boot */
	__u32 flags;              /* enum rs_flags */
	__u32 ppid;               /* parent process */
	__s64 rss_pages[RS_MM_COUNTERS]; /* with RS_F_RSS: pages, enum rs_mm_counter */
	struct rs_counters self;  /* the task's own counters */
	struct rs_counters dead;  /* with RS_F_LEADER: signal_struct sums of released threads */
};

#endif /* PROCIMAGE_RESOURCE_H */
