/* SPDX-License-Identifier: Apache-2.0 */
/*
 * procimage plugin ABI.
 *
 * The whole boundary between the procimage host and a probe or sink plugin is this C header.
 * A plugin is a shared object that exports exactly one symbol, `procimage_plugin_entry`,
 * declared with PROCIMAGE_PLUGIN_ENTRY(). The symbol is a pointer to a function returning the
 * plugin's descriptor. The host reads the descriptor's size and ABI version before touching
 * anything else and refuses a plugin whose major version differs from its own or whose minor
 * version is newer. The full contract is in docs/plugin-abi.md.
 *
 * Rules that keep the boundary safe:
 *  - every struct that crosses it starts with its own size (forward compatibility);
 *  - no C++ exception crosses it (functions return PI_OK / PI_ERR and an error text);
 *  - memory is freed by the side that allocated it: strings handed to the host are copied by
 *    the host before the call returns;
 *  - plugins log through the host's log callback.
 */
#ifndef PROCIMAGE_PLUGIN_API_H
#define PROCIMAGE_PLUGIN_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PI_API_MAJOR 1
#define PI_API_MINOR 4

/* Test builds may override the version a plugin declares (to build mismatched plugins). */
#ifndef PI_PLUGIN_API_MAJOR
#define PI_PLUGIN_API_MAJOR PI_API_MAJOR
#endif
#ifndef PI_PLUGIN_API_MINOR
#define PI_PLUGIN_API_MINOR PI_API_MINOR
#endif

#define PI_OK 0
#define PI_ERR (-1)

/* Size of the error buffer the host passes to every call that can fail. */
#define PI_ERRBUF_SIZE 512

enum pi_log_level {
	PI_LOG_DEBUG = 0,
	PI_LOG_INFO = 1,
	PI_LOG_WARN = 2,
	PI_LOG_ERROR = 3,
};

/* ----------------------------------------------------------------------------------------
 * Records: what probes emit and sinks receive.
 * ---------------------------------------------------------------------------------------- */

enum pi_field_type {
	PI_FT_I64 = 1,  /* v.i */
	PI_FT_U64 = 2,  /* v.u */
	PI_FT_F64 = 3,  /* v.d */
	PI_FT_STR = 4,  /* v.s (NUL-terminated UTF-8) */
	PI_FT_BOOL = 5, /* v.u != 0 */
	PI_FT_STRV = 6, /* v.sv[0..count) */
	PI_FT_U64V = 7, /* v.uv[0..count) */
};

/* How a value should be shown to a human. Machine sinks (JSON, CSV) print the raw value; the
 * unit is carried by the field name (`dur_ns`, `bytes`). */
enum pi_field_fmt {
	PI_FMT_PLAIN = 0,
	PI_FMT_DURATION_NS = 1, /* shown as ns/µs/ms/s */
	PI_FMT_BYTES = 2,       /* shown as B/KiB/MiB/GiB */
	PI_FMT_ERRNO = 3,       /* negative errno, shown as -ENOENT */
	PI_FMT_SIGNAL = 4,      /* signal number, shown as SIGKILL */
	PI_FMT_HEX = 5,         /* shown as 0x… */
	PI_FMT_PERCENT = 6,     /* a percentage, shown with % */
	PI_FMT_LOG2_HIST = 7,   /* U64V: bucket i counts values in [2^i, 2^(i+1)) */
};

struct pi_field {
	const char *key;
	uint16_t type; /* enum pi_field_type */
	uint16_t fmt;  /* enum pi_field_fmt */
	uint32_t count; /* element count for STRV / U64V */
	union {
		int64_t i;
		uint64_t u;
		double d;
		const char *s;
		const char *const *sv;
		const uint64_t *uv;
	} v;
};

struct pi_record {
	uint32_t size;     /* sizeof(struct pi_record) as built by the emitter */
	uint32_t nfields;
	const char *probe; /* instance name of the emitting probe, e.g. "keytime" */
	const char *event; /* record type, e.g. "exec" */
	uint64_t ts_ns;    /* Unix epoch, nanoseconds */
	uint32_t pid;      /* process id (the kernel's tgid); procimage's own for host records */
	uint32_t tid;      /* thread id (the kernel's pid) */
	int32_t cpu;       /* CPU the event happened on, -1 if not applicable */
	uint32_t reserved;
	uint64_t pid_start_ns; /* process start, ns since boot: (pid, pid_start_ns) is unique */
	const char *comm;
	const struct pi_field *fields;
	/* The probe's plugin name ("keytime") when `probe` is an instance id ("keytime/cpu", or
	 * any id with a "plugin" key); "procimage" for host records. Present when size covers it. */
	const char *plugin;
	/* Since 1.3 (read only when size covers it). The task's cgroup on the v2 hierarchy, as its
	 * kernfs id (pi_event_header.cgroup_id; 0: the probe does not know it). The host fills
	 * `cgroup` before the record reaches the sinks: the cgroup's path ("/system.slice/x.service",
	 * as /proc/PID/cgroup writes it), from cgroup_id, from the process's earlier records or from
	 * /proc; NULL when it is not known or the record is about no process. A probe leaves it NULL. */
	uint64_t cgroup_id;
	const char *cgroup;
};

/* The plugin name of a record (its probe name when the emitter did not set one). */
static inline const char *pi_record_plugin(const struct pi_record *r)
{
	if (r->size >= offsetof(struct pi_record, plugin) + sizeof(r->plugin) && r->plugin)
		return r->plugin;
	return r->probe ? r->probe : "";
}

/* The cgroup path the host gave a record (NULL when none, or from a host before 1.3). */
static inline const char *pi_record_cgroup(const struct pi_record *r)
{
	if (r->size >= offsetof(struct pi_record, cgroup) + sizeof(r->cgroup))
		return r->cgroup;
	return NULL;
}

/* ----------------------------------------------------------------------------------------
 * What the host hands to every plugin instance.
 * ---------------------------------------------------------------------------------------- */

struct btf; /* libbpf's parsed BTF (bpf/btf.h); opaque here */

struct pi_host {
	uint32_t size;
	uint32_t api_major;
	uint32_t api_minor;
	uint32_t slot; /* probe's activation slot (bit in the target map), 0..PI_MAX_SLOTS-1 */
	void *ctx;     /* opaque host context for the callbacks below */
	void (*log)(void *ctx, int level, const char *msg);
	/* Send a record to every sink wired to this probe. Only on the host thread (inside the
	 * plugin's callbacks). Delivered before return: the record may be freed afterwards. */
	void (*emit)(void *ctx, const struct pi_record *rec);
	/* File descriptors of the host-owned shared maps, to be reused by the probe's BPF object
	 * (bpf_map__reuse_fd on maps named "pi_control" and "pi_targets"). */
	int control_map_fd;
	int targets_map_fd;
	/* Convert a bpf_ktime_get_boot_ns() timestamp to Unix epoch ns. */
	uint64_t boot_to_epoch_ns;
	uint32_t interval_ms; /* periodic reporting interval of the pipeline */
	uint32_t self_tgid;   /* procimage's own process id */
	/* Ring-buffer batching: records are submitted without waking the host until this many
	 * bytes are pending (pi_wakeup_bytes rodata, see procimage.bpf.h); the host drains every
	 * flush_ms anyway. 0 = wake the host for every record. */
	uint32_t wakeup_bytes;
	uint32_t flush_ms;
	/* Since 1.2 (read only when size covers it): the record schema of this run, a JSON Schema
	 * (2020-12) document joined by the host from every probe's record_schema and its own
	 * records (what `procimage --print-schema` prints). A sink may use it to lay out its
	 * output (the CSV sink's columns). NUL-terminated UTF-8, valid while the instance lives;
	 * NULL when the host has none. */
	const char *record_schema;
	/* Since 1.3 (read only when size covers it): the run's filters (--comm, --failed,
	 * --min-duration, --syscall; docs/filters.md), valid while the instance lives. NULL: no
	 * filter. A probe applies them where it can, in the kernel (set_common_rodata() in
	 * procimage/bpf.hpp copies the common ones into procimage.bpf.h's rodata). */
	const struct pi_filters *filters;
	/* Since 1.4 (read only when size covers it), probes only: the running kernel's BTF, parsed
	 * once by the host (libbpf's struct btf, from /sys/kernel/btf/vmlinux), or NULL when the
	 * kernel has none. Read only; shared by every probe, possibly from several threads at
	 * once; valid during create and load only: the host frees it once every probe is loaded
	 * (and sets this field to NULL). A probe uses it for its kernel checks instead of parsing
	 * the 5-6 MB file again (the SDK's vmlinux_btf() does). */
	const struct btf *kernel_btf;
};

/* The filters of a run (pi_host.filters, since 1.3). Fixed-width fields only. */
#define PI_FILTER_COMMS 8     /* comm patterns at most */
#define PI_FILTER_COMM_LEN 32 /* bytes of one pattern, its NUL included */
#define PI_FILTER_SYSCALLS 512 /* syscall numbers 0..511 in the syscall mask */

struct pi_filters {
	uint32_t size;    /* sizeof(struct pi_filters) as built by the host */
	uint32_t n_comms; /* patterns in comm[], 0: every thread name */
	/* A thread is kept when its name (the kernel's comm, at most 15 bytes) matches one of
	 * them: exactly, or as an fnmatch(3) pattern when bit i of comm_glob is set. */
	char comm[PI_FILTER_COMMS][PI_FILTER_COMM_LEN];
	uint32_t comm_glob;
	uint32_t failed_only;     /* 1: stream only failures (failed execs, errors, ...) */
	uint64_t min_duration_ns; /* stream only intervals at least this long (0: all) */
	uint32_t n_syscalls;      /* syscall numbers set in syscalls[], 0: every syscall */
	uint32_t pad;
	uint64_t syscalls[PI_FILTER_SYSCALLS / 64]; /* bit n of word n/64: syscall number n */
};

/* What a probe collects for (the same rules for every probe). The BPF side filters with
 * pi_wanted() from the shared maps; a probe needs this only to attach per-process hooks
 * (uprobes) or to label its output. */
enum pi_target_kind {
	PI_TARGET_ALL = 0,  /* every thread */
	PI_TARGET_TID = 1,  /* threads, by the kernel's pid */
	PI_TARGET_TGID = 2, /* processes (thread groups) */
	/* Since 1.2: every thread in a cgroup v2 subtree (cgroup_id, cgroup_path), including
	 * those that join it later. The host gives this kind only to plugins built for 1.2 or
	 * newer; n_ids is 0. */
	PI_TARGET_CGROUP = 3,
};

struct pi_target {
	uint32_t size;
	uint32_t kind; /* enum pi_target_kind */
	uint32_t n_ids;
	int32_t idle_cpu;      /* >= 0 with kind TID and id 0: that CPU's idle task */
	const uint32_t *ids;   /* n_ids ids, valid during the call */
	uint32_t include_self; /* procimage's own threads are not excluded */
	uint32_t follow;       /* processes forked by a target process join the target */
	/* Activation options for this probe as a JSON object ("{}" when none), e.g. keytime's
	 * {"cpu": true} from procimage-ctl -k 1. They override the probe's configuration for this
	 * activation only. Valid during the call. */
	const char *options;
	/* Since 1.2 (read only when size covers them): with kind PI_TARGET_CGROUP, the cgroup's
	 * kernfs id (the id bpf_get_current_cgroup_id() returns for a task in it) and its
	 * directory, absolute, on the v2 hierarchy as the host has it mounted. Valid during the
	 * call. */
	uint64_t cgroup_id;
	const char *cgroup_path;
};

/* Event sources a probe hands to the host's bus after load. */
#define PI_MAX_RINGBUFS 4
#define PI_LOST_CAUSES 8 /* keys of the lost map (the BPF side's PI_LOST_SLOTS) */
struct pi_probe_io {
	uint32_t size;
	uint32_t n_ringbufs;
	int ringbuf_fds[PI_MAX_RINGBUFS]; /* BPF_MAP_TYPE_RINGBUF fds; records decoded by on_data */
	int lost_map_fd; /* per-CPU array, key 0, u64 per CPU: records the kernel could not queue */
	/* Since 1.1 (write only when size covers it): what the lost map's keys 1..7 count, when
	 * it has them, each a static string naming the map or ring buffer and the setting that
	 * makes it larger, e.g. "the per-target map sc_target was full (raise syscall.max_keys)".
	 * NULL: the key is not used. Key 0 counts every loss, whatever its cause. */
	const char *lost_causes[PI_LOST_CAUSES];
};

/* ----------------------------------------------------------------------------------------
 * Probe plugins.
 * ---------------------------------------------------------------------------------------- */

struct pi_probe_ops {
	uint32_t size;
	/* Check a configuration (JSON object text) without loading anything. On error write a
	 * message starting with the offending key ("argv_max: expected an integer in 1..32"). */
	int (*validate)(const char *config_json, char *err, size_t errlen);
	/* Create an instance; nothing is loaded into the kernel yet. */
	void *(*create)(const struct pi_host *host, const char *config_json, char *err,
			size_t errlen);
	/* Open and load the BPF object (verifier runs here), reusing the host's shared maps.
	 * Since 1.4 the host loads the probes of a run at the same time, each load on a thread of
	 * its own: a plugin built for 1.4 must not share unguarded state between its instances
	 * in load (one plugin may be loaded twice, under two ids). A plugin built for an earlier
	 * ABI is loaded alone, on the host's thread. */
	int (*load)(void *inst, struct pi_probe_io *io, char *err, size_t errlen);
	/* Attach the loaded programs for a target / detach them. The host calls attach when it
	 * activates the probe and detach + attach when the target changes; the shared maps
	 * already describe the target when attach is called. */
	int (*attach)(void *inst, const struct pi_target *target, char *err, size_t errlen);
	int (*detach)(void *inst, char *err, size_t errlen);
	/* One ring-buffer record from ringbuf_fds[index]. Decode it and emit records. */
	int (*on_data)(void *inst, uint32_t index, const void *data, size_t len);
	/* Periodic work (timerfd), now in boot ns; final != 0 on the last call before exit. */
	int (*on_tick)(void *inst, uint64_t now_boot_ns, int final);
	void (*destroy)(void *inst);
};

/* ----------------------------------------------------------------------------------------
 * Sink plugins.
 * ---------------------------------------------------------------------------------------- */

struct pi_sink_ops {
	uint32_t size;
	int (*validate)(const char *config_json, char *err, size_t errlen);
	void *(*create)(const struct pi_host *host, const char *config_json, char *err,
			size_t errlen);
	int (*write)(void *inst, const struct pi_record *rec);
	/* Called after each batch drained from the bus and at exit. */
	int (*flush)(void *inst);
	void (*destroy)(void *inst);
};

/* ----------------------------------------------------------------------------------------
 * The descriptor every plugin exports.
 * ---------------------------------------------------------------------------------------- */

enum pi_plugin_kind {
	PI_KIND_PROBE = 1,
	PI_KIND_SINK = 2,
};

struct pi_plugin_desc {
	uint32_t size;      /* sizeof(struct pi_plugin_desc) as built by the plugin */
	uint32_t api_major; /* PI_PLUGIN_API_MAJOR the plugin was built with */
	uint32_t api_minor;
	uint32_t kind;      /* enum pi_plugin_kind */
	const char *name;   /* e.g. "keytime" */
	const char *version; /* the plugin's own version, e.g. "1.0.0" */
	const char *description;
	const struct pi_probe_ops *probe; /* when kind == PI_KIND_PROBE */
	const struct pi_sink_ops *sink;   /* when kind == PI_KIND_SINK */
	/* Since 1.2 (read only when size covers it): the records this probe emits, as JSON text
	 * ({"records": {EVENT: {...}}}; the format is in docs/plugin-abi.md, "Record schema"). The
	 * host checks it at load, joins it with the common header into the run's JSON Schema, and
	 * derives the CSV columns and Prometheus metrics from it. NULL: the probe declares nothing
	 * (its records are then accepted with any fields). Static storage. */
	const char *record_schema;
};

/* The size of a descriptor built against ABI 1.0 or 1.1 (before record_schema). A host reads
 * a field only when the descriptor's size covers it. */
#define PI_PLUGIN_DESC_SIZE_1_0 offsetof(struct pi_plugin_desc, record_schema)

typedef const struct pi_plugin_desc *(*pi_plugin_entry_fn)(void);

/*
 * Export the entry point. `fn` is a function `const struct pi_plugin_desc *fn(void)`.
 * The exported object is a pointer to that function (the layout Boost.DLL's import_alias
 * expects), so the host loads it with Boost.DLL while the plugin needs nothing but this header.
 */
#ifdef __cplusplus
#define PI_EXTERN_C extern "C"
#else
#define PI_EXTERN_C
#endif
#define PROCIMAGE_PLUGIN_ENTRY(fn)                                                               \
	PI_EXTERN_C __attribute__((visibility("default"))) const void *procimage_plugin_entry;   \
	const void *procimage_plugin_entry = (const void *)(&fn)

#define PI_ENTRY_SYMBOL "procimage_plugin_entry"

#ifdef __cplusplus
}
#endif

#endif /* PROCIMAGE_PLUGIN_API_H */
