// SPDX-License-Identifier: Apache-2.0
#include "cgroup_names.hpp"

#include <procimage/sdk.hpp>


namespace procimage::core::cgroup {

namespace {

// Past these many entries a cache starts afresh (a bounded memory on long runs).
constexpr size_t max_entries = 65536;
// The mount is walked again for an unknown id at most this often.
constexpr uint64_t walk_every_ns = 250000000ULL;

} // namespace

names::names(std::optional<mount> m, std::string proc) : m_(std::move(m)), proc_(std::move(proc)) {}

names::~names() = default;

// "/sys/fs/cgroup/unified/a/b" → "/a/b" below the mount, joined to the cgroup the mount shows.
std::string names::rel_of(const std::string &abs) const
{
	std::string below = abs.substr(m_->path.size());
	if (m_->root == "/" || m_->root.empty())
		return below.empty() ? "/" : below;
	return m_->root + below;
}

void names::walk_mount()
{
	uint64_t now = sdk::boot_now_ns();
	if (last_walk_ns_ && now - last_walk_ns_ < walk_every_ns)
		return;
	last_walk_ns_ = now;
	auto note = [&](const std::string &dir) {
		if (auto id = cgroup_id(dir); id && !ids_.count(*id)) {
			ids_.emplace(*id, rel_of(dir));
			stats_.by_walk++;
		}
	};
	note(m_->path);
	for_each_dir(m_->path, [&](const std::filesystem::path &dir) { note(dir.string()); });
}

const char *names::of_id(uint64_t id)
{
	if (!id || !m_)
		return nullptr;
	if (auto it = ids_.find(id); it != ids_.end())
		return it->second.c_str();
	if (ids_.size() >= max_entries) {
		ids_.clear();
		procs_.clear(); // they point into ids_
		last_walk_ns_ = 0;
	}
	walk_mount();
	if (auto it = ids_.find(id); it != ids_.end())
		return it->second.c_str();
	// not remembered as unknown: the cgroup may be younger than the last walk (a removed one
	// is looked for again at most once a walk period)
	stats_.unknown++;
	return nullptr;
}

const char *names::of_record(uint32_t pid, uint64_t start_ns, uint64_t id)
{
	if (!pid)
		return nullptr;
	if (procs_.size() >= max_entries)
		procs_.clear();
	if (id) {
		const char *p = of_id(id);
		if (p) {
			// of_id's strings live in ids_'s nodes, which do not move; most records repeat
			// what is known of their process, which then costs one lookup
			auto &seen = procs_[pid];
			if (seen.path == nullptr || seen.path->c_str() != p || seen.start_ns != start_ns)
				seen = proc_seen{start_ns, &ids_.find(id)->second};
			return p;
		}
	}
	if (auto it = procs_.find(pid); it != procs_.end() && (!start_ns || it->second.start_ns == start_ns))
		return it->second.path ? it->second.path->c_str() : nullptr;
	// a process seen for the first time without an id: its /proc entry, while it is the same
	// process (remembered, found or not, so a gone process costs one look)
	proc_seen seen{start_ns, nullptr};
	if (auto rel = pid_cgroup(pid, proc_); rel && sdk::same_process(pid, start_ns, proc_)) {
		seen.path = &*from_proc_.insert(*rel).first;
		stats_.from_proc++;
	}
	procs_[pid] = seen;
	return seen.path ? seen.path->c_str() : nullptr;
}

} // namespace procimage::core::cgroup
