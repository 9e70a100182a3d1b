/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Maps and records of the schedule probe, shared by schedule.bpf.c and schedule.cpp.
 * Fixed-width types only, explicit padding.
 *
 * A "delay" is the time a thread spent runnable but waiting for a CPU: from the moment it
 * became runnable (woken, newly created, or switched out while still runnable) to the moment
 * it was switched in. Durations are nanoseconds of CLOCK_MONOTONIC (bpf_ktime_get_ns).
 */
#ifndef PROCIMAGE_SCHEDULE_H
#define PROCIMAGE_SCHEDULE_H

#include <procimage/bpf/common.h>

/* Log2 histogram of delays in ns: bucket i counts delays in [2^i, 2^(i+1)); bucket 0 also
 * counts 0 ns, the last bucket everything from 2^(SC_HIST_SLOTS-1) ns (about 9 minutes) on. */
/* Causes of losses (pi_lost keys, named by the user side) */
#define SC_LOST_THREADS (PI_LOST_PROBE + 0) /* sc_threads full: config max_threads */
#define SC_LOST_TASKS (PI_LOST_PROBE + 1)   /* a thread's stamp (sc_tasks) could not be stored */

#define SC_HIST_SLOTS 40

/* Cumulative figures since the activation began. */
struct sc_stats {
	__u64 count;   /* delays measured */
	__u64 sum_ns;  /* their sum */
	__u64 max_ns;
	__u64 min_ns;  /* valid when count > 0 */
	__u64 fallback; /* of count: waits whose start the tracepoints did not report, timed from
			 * the kernel's own enqueue time (task->sched_info.last_queued) */
	__u64 untimed;  /* waits counted without a duration: start not seen and no kernel stamp */
	__u64 hist[SC_HIST_SLOTS];
};

/* Largest and smallest delay of one reporting interval. The kernel writes the slot
 * win[epoch & 1] and starts it afresh when its tag differs from the current epoch; the user
 * side advances the epoch at each tick and then reads the slot of the interval that ended. */
struct sc_window {
	__u64 epoch; /* interval the slot belongs to; 0 = never used */
	__u64 max_ns;
	__u64 min_ns;
};

/* sc_system: whole-system figures, one per CPU (the CPU the waiting thread was switched in on). */
struct sc_cpu {
	struct sc_stats total;
	struct sc_window win[2];
	__u64 recovered; /* waits whose switch-in the tracepoint did not report, timed from CPU time */
};

/* sc_threads: one entry per target thread, keyed by thread id. */
struct sc_thread {
	struct sc_stats total;
	struct sc_window win[2];
	__u64 start_ns;     /* task->start_time (monotonic ns): tells apart threads reusing a tid */
	__u64 pid_start_ns; /* group leader's start, ns since boot (as in pi_event_header) */
	__u32 pid;          /* tgid */
	__u32 tid;
	__s32 prio;         /* task->prio at the last delay: 0..99 real-time, 100..139 = 120 + nice */
	__s32 static_prio;  /* task->static_prio: 120 + nice */
	__u32 policy;       /* task->policy: SCHED_OTHER 0, FIFO 1, RR 2, BATCH 3, IDLE 5, DEADLINE 6, EXT 7 */
	__u32 pad;
	char comm[PI_COMM_LEN];
};

/* sc_tasks (task-local storage): what the probe keeps about a task between two events. */
struct sc_task {
	__u64 ts_ns;      /* when it became runnable (0: not waiting, or already counted) */
	__u64 generation; /* pi_control.generation then: a stamp of an earlier activation is ignored */
	__u64 runtime_ns; /* its se.sum_exec_runtime then: if it has run since, the stamp is stale */
	__u64 wanted_gen; /* generation for which `wanted` was computed */
	__u32 wanted;     /* pi_wanted() for this task, cached for the activation */
	__u32 pad;
};

enum sc_kind {
	SC_THREAD_END = 1, /* struct sc_thread_end */
};

/* A thread's entry leaves sc_threads (the task was freed, or its tid was reused by a new
 * thread): its final figures, so that nothing measured is lost. Header = that thread. */
struct sc_thread_end {
	struct pi_event_header h;
	struct sc_thread t;
};

#endif /* PROCIMAGE_SCHEDULE_H */
