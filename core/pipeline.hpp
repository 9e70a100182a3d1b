// SPDX-License-Identifier: Apache-2.0
//
// The pipeline document: probes, their targets, sinks and the wiring between them.
// Format: docs/pipeline.md.
#pragma once

#include "filters.hpp"
#include "result.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace procimage::core {

constexpr int PIPELINE_VERSION = 1;

struct target_spec {
	enum class kind_t { all, tid, tgid, cgroup };
	kind_t kind = kind_t::all;
	std::vector<uint32_t> ids;
	bool include_self = false; // do not exclude procimage's own threads
	bool follow = false;       // processes forked by a target join it
	int32_t idle_cpu = -1;     // with tid 0: that CPU's idle task

	// kind cgroup: every thread in a cgroup v2 subtree, named by a path, a systemd unit or a
	// container id (cgroup_query as given) ...
	enum class cgroup_by_t { path, unit, container };
	cgroup_by_t cgroup_by = cgroup_by_t::path;
	std::string cgroup_query;
	// ... and, once resolved on this machine (resolve_cgroup_target, system.hpp), its directory,
	// the kernel's id of it, and its least possible depth in the hierarchy
	std::string cgroup_dir;
	uint64_t cgroup_id = 0;
	uint32_t cgroup_min_level = 0;

	std::string describe() const;
	nlohmann::json to_json() const;
};

struct component {
	std::string id;     // key in "probes" / "sinks", e.g. "jsonl/errors"
	std::string plugin; // plugin name or path to a .so
	nlohmann::json config = nlohmann::json::object(); // keys passed to the plugin
	std::optional<target_spec> target;                 // probes only
	std::string json_path;                             // "probes.keytime"
};

struct wire {
	std::vector<std::string> probes;
	std::vector<std::string> sinks;
};

struct pipeline {
	int version = PIPELINE_VERSION;
	std::vector<std::string> plugin_dirs;
	target_spec target;               // all threads unless given
	bool target_given = false;        // "target" present (or a flag / command set one)
	std::optional<bool> start;        // "start": true = active; absent = active iff a target is given
	bool starts_active() const;
	uint32_t interval_ms = 1000;
	double duration_s = 0;            // "duration_s": stop by itself after this long (0 = no limit)
	uint32_t flush_ms = 100;          // ring buffers drained and sinks flushed at least this often
	uint32_t wakeup_bytes = 65536;    // pending bytes at which a probe wakes the host earlier
	std::vector<component> probes;
	std::vector<component> sinks;
	std::vector<wire> wires;
	std::vector<std::string> command;
	filter_spec filters;              // "filters" (--comm, --failed, --min-duration, --syscall)

	nlohmann::json to_json() const;
	// Sinks wired to the probe (indices into sinks).
	std::vector<size_t> sinks_of(const std::string &probe_id) const;
};

// The longest "duration_s" (--duration): a week, as procimage-ctl -t.
constexpr double MAX_DURATION_S = 7 * 24 * 3600;

// With a command, CMD's standard output is CMD's: a stdout sink that names neither "stream" nor
// "path" writes to standard error (as strace and perf trace do). Call once p.command is final.
void route_readable_output(pipeline &p);

// Structural validation (plugin configs are checked by the plugins themselves).
// base_dir resolves relative plugin_dirs and plugin paths.
result<pipeline> parse_pipeline(const nlohmann::json &doc, const std::string &base_dir = ".");
result<pipeline> load_pipeline_file(const std::string &path);
// The one JSON parser for text from outside (pipeline files, --set values): one document and
// nothing after it (no NUL byte either), nested at most MAX_JSON_DEPTH levels (the refusal
// names the JSON path), every failure an EXIT_USAGE error rather than an exception.
constexpr size_t MAX_JSON_DEPTH = 64;
result<nlohmann::json> parse_json_text(const std::string &text);
// The VALUE of --set PROBE.KEY=VALUE: JSON when it parses as JSON, else the plain string.
result<nlohmann::json> parse_set_value(const std::string &text);
// --set PROBE.KEY=VALUE, split and its value parsed.
struct set_flag {
	std::string probe, key;
	nlohmann::json value;
};
result<set_flag> parse_set_flag(const std::string &kv);
result<target_spec> parse_target(const nlohmann::json &j, const std::string &path);
// A syscall filter needs the syscall probe: one line naming the fix when none is in p.
result<void> check_filters_fit(const pipeline &p);

} // namespace procimage::core
