// SPDX-License-Identifier: Apache-2.0
//
// The cgroup path each record about a process carries ("cgroup", docs/events.md). A probe gives
// the task's v2 cgroup id where its kernel side read one; the host turns the id into a path
// once (walking the v2 mount), and names the cgroup of records without an id (rows built in user space, records of a
// process's earlier life) from the last id the same process was seen with, else from
// /proc/PID/cgroup while the process lives.
#pragma once

#include "cgroup.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace procimage::core::cgroup {

class names {
public:
	// m: the v2 mount the paths are read through (none: only /proc/PID/cgroup names them).
	// proc: the proc file system (a fake one in tests).
	explicit names(std::optional<mount> m, std::string proc = "/proc");
	~names();
	names(const names &) = delete;
	names &operator=(const names &) = delete;

	// The path of cgroup id, relative to the hierarchy's root as /proc/PID/cgroup writes it;
	// nullptr when no cgroup this process can see has that id (removed, or outside this
	// cgroup namespace's view). The pointer stays valid until the next call (the
	// caches start afresh past 65536 entries).
	const char *of_id(uint64_t id);

	// The cgroup of a record: by its id when it has one (and then remembered for the
	// process), else the one the process (pid, start_ns) was last seen in, else its
	// /proc/PID/cgroup if it is still that process. nullptr when none is known.
	const char *of_record(uint32_t pid, uint64_t start_ns, uint64_t id);

	struct stats {
		uint64_t by_walk = 0;   // ids named by walking the mount
		uint64_t from_proc = 0; // processes named from /proc/PID/cgroup
		uint64_t unknown = 0;   // ids no visible cgroup has
	};
	const stats &counts() const { return stats_; }

private:
	void walk_mount();
	std::string rel_of(const std::string &abs) const;

	struct proc_seen {
		uint64_t start_ns;
		const std::string *path; // into ids_ or from_proc_; nullptr: not known
	};
	std::optional<mount> m_;
	std::string proc_;
	uint64_t last_walk_ns_ = 0;
	std::unordered_map<uint64_t, std::string> ids_;          // every cgroup the walks found
	std::unordered_map<uint32_t, proc_seen> procs_;          // by pid
	std::unordered_set<std::string> from_proc_;              // paths read from /proc, interned
	stats stats_;
};

} // namespace procimage::core::cgroup
