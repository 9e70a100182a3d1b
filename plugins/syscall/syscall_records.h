/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Maps and records of the syscall probe, shared by syscall.bpf.c and syscall.cpp.
 * Fixed-width types only, explicit padding.
 */
#ifndef PROCIMAGE_SYSCALL_RECORDS_H
#define PROCIMAGE_SYSCALL_RECORDS_H

#include <procimage/bpf/common.h>

#define SC_NR_SLOTS 512     /* per-syscall slots; numbers outside 0..510 share slot SC_NR_OTHER */
#define SC_NR_OTHER 511
#define SC_HIST_SLOTS 40    /* log2 latency buckets: slot i counts [2^i, 2^(i+1)) ns; 0 ns goes
			     * to slot 0, 2^39 ns (9 min) and more to the last one */
#define SC_BATCH_MAX 50     /* longest sequence batch (config "batch" is 1..SC_BATCH_MAX) */

/* Latency statistics of one syscall (one per-CPU copy; the user side merges CPUs). Totals are
 * cumulative since attach; the interval extremes are kept in two slots selected by the parity
 * of the interval number (sc_epoch), so the user side reads the interval that just ended while
 * the kernel fills the next one. */
struct sc_stats {
	__u64 count;
	__u64 errors;   /* calls that returned -4095..-1 */
	__u64 total_ns;
	__u64 max_ns;
	__u64 min_ns;   /* valid when count > 0 */
	__u64 iepoch[2];  /* interval each slot belongs to */
	__u64 imax_ns[2];
	__u64 imin_ns[2];
	__u64 hist[SC_HIST_SLOTS];
};

/* Causes of losses (pi_lost keys, named by the user side) */
#define SC_LOST_KEYS (PI_LOST_PROBE + 0)    /* sc_target or sc_owners full: config max_keys */
#define SC_LOST_STORAGE (PI_LOST_PROBE + 1) /* a thread's task storage could not be allocated */

/* Per-target statistics: key of the per-CPU hash sc_target (value: struct sc_stats). */
struct sc_key {
	__u32 id; /* tid or tgid (config "by") */
	__u32 nr; /* syscall number slot */
};

/* Who an sc_key id is (hash sc_owners, by id): written when its first key is created and
 * refreshed when the task execs (the name changes; with -- CMD the first calls are made before
 * the command's exec). */
struct sc_owner {
	__u64 pid_start_ns; /* of the process, boot ns */
	__u32 pid;          /* tgid */
	__u32 tid;          /* 0 when the id is a whole process */
	char comm[PI_COMM_LEN];
	__u64 slots[SC_NR_SLOTS / 64]; /* the syscall slots it has sc_target keys for */
};

/* In-flight call of the thread that is running on a CPU (per-CPU array sc_cpu, one entry),
 * plus a one-entry cache of what the last thread seen on this CPU is. Threads are told apart
 * by the address of their saved user registers (the pt_regs at the top of their kernel stack,
 * which the syscall tracepoints pass): it is unique among live threads and costs no helper
 * call to get. */
struct sc_cpu {
	__u64 enter_ns;    /* bpf_ktime_get_boot_ns() at sys_enter */
	__u64 regs;        /* thread inside a system call on this CPU, 0: none */
	__u32 nr;
	__u32 run;         /* attach number the entry belongs to */
	__u64 cache_regs;  /* the cached answers below are for this thread, ... */
	__u64 cache_gen;   /* ... this activation generation ... */
	__u64 cache_exits; /* ... and while no thread exited (stacks and tids are reused) */
	__u32 cache_run;
	__u8 cache_wanted; /* pi_wanted() */
	__u8 cache_self;   /* a procimage thread excluded from the system figures */
	__u8 pad[2];
};

/* What the system-wide figures hold (config "system") */
enum sc_system_mode {
	SC_SYSTEM_OFF = 0,
	SC_SYSTEM_COUNTS = 1,  /* calls and errors; only the target's calls are timed */
	SC_SYSTEM_LATENCY = 2, /* calls, errors and latency of every call */
};

/* In-flight call of a thread that left its CPU during the call (task storage sc_task). */
struct sc_inflight {
	__u64 enter_ns;
	__u32 nr;
	__u32 run; /* 0 or another attach: no call in flight */
};

/* Ring-buffer and iterator records */
enum sc_kind {
	SC_BATCH = 1,      /* struct sc_batch */
	SC_INPROGRESS = 2, /* struct sc_inprogress (task iterator output only) */
	SC_END = 3,        /* struct sc_end: an id with sc_target keys ended */
};

/* The thread (by thread) or process (by process, its last thread) that an sc_target id names
 * exited: its figures are final, and the user side reports and frees its keys at once instead
 * of holding them until the next interval. */
struct sc_end {
	struct pi_event_header h; /* the exiting task */
	__u32 id;
	__u32 pad;
};

enum sc_flush_reason {
	SC_FLUSH_FULL = 1,     /* the batch reached "batch" calls */
	SC_FLUSH_INTERVAL = 2, /* first call after an interval boundary: earlier calls sent */
	SC_FLUSH_EXIT = 3,     /* the thread exited */
	SC_FLUSH_END = 4,      /* collection stopped (detach) */
};

struct sc_call {
	__u64 lat_ns;
	__s64 ret;
	__u32 nr; /* the real number, not the slot */
	__u32 pad;
};

/* A batch of consecutive calls of one thread; the header is the thread. */
struct sc_batch {
	struct pi_event_header h;
	__u64 first;  /* index of calls[0] in the thread's sequence since collection began */
	__u32 n;      /* calls used */
	__u32 reason; /* enum sc_flush_reason */
	struct sc_call calls[SC_BATCH_MAX];
};

/* Per-thread sequence buffer of a targeted thread (task storage sc_seq). */
struct sc_seqbuf {
	struct sc_batch b;
	__u64 epoch; /* interval in which the current batch began */
	__u32 run;
	__u32 pad;
};

enum sc_inprogress_flags {
	/* the call began before collection: enter_ns is the activation time, elapsed_ns a
	 * lower bound */
	SC_INPROGRESS_BEFORE_START = 1,
};

/* A call in flight for longer than the in-progress threshold; the header is the thread. */
struct sc_inprogress {
	struct pi_event_header h;
	__u64 enter_ns;   /* boot ns at entry */
	__u64 elapsed_ns; /* at the scan */
	__u32 nr;
	__u32 flags;      /* enum sc_inprogress_flags */
};

/* What the task iterator does (rodata is fixed at load: this is a .bss variable) */
enum sc_iter_mode {
	SC_ITER_INPROGRESS = 0,
	SC_ITER_FLUSH = 1,
};

#endif /* PROCIMAGE_SYSCALL_RECORDS_H */
