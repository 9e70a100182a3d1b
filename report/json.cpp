// SPDX-License-Identifier: Apache-2.0
//
// The model as JSON (docs/report.md): a figure not collected is null, never 0.
#include "model.hpp"

namespace procimage::report {

using json = nlohmann::json;

static json val(const opt_u64 &v) { return v ? json(*v) : json(nullptr); }
static json val(const std::optional<double> &v) { return v ? json(*v) : json(nullptr); }

static json lat(const latency &l)
{
	return {{"count", val(l.count)},   {"sum_ns", val(l.sum_ns)}, {"mean_ns", val(l.mean_ns())},
		{"max_ns", val(l.max_ns)}, {"errors", val(l.errors)}, {"hist_ns", l.hist_ns}};
}

json render_json(const model &m)
{
	json procs = json::array();
	for (const auto &p : m.processes) {
		json threads = json::array();
		for (const auto &[tid, t] : p.threads) {
			json off = json::object();
			for (auto &[r, ns] : t.offcpu_ns)
				off[r] = ns;
			threads.push_back({{"tid", tid}, {"comm", t.comm}, {"first_ns", t.first_ns}, {"last_ns", t.last_ns},
					   {"ended_ns", t.ended_ns ? json(*t.ended_ns) : json(nullptr)},
					   {"oncpu_ns", val(t.oncpu_ns)}, {"offcpu_ns", off}, {"sched", lat(t.sched)}});
		}
		json sys = json::object();
		for (auto &[n, l] : p.syscalls)
			sys[n] = lat(l);
		json locks = json::object();
		for (auto &[n, l] : p.locks)
			locks[n] = {{"acquisitions", val(l.acquisitions)}, {"contended", val(l.contended)},
				    {"wait_ns", val(l.wait_ns)},           {"wait_max_ns", val(l.wait_max_ns)},
				    {"hold_ns", val(l.hold_ns)},           {"hold_max_ns", val(l.hold_max_ns)}};
		json children = json::array();
		for (auto c : p.children)
			children.push_back(m.processes[c].pid);
		json ended = nullptr;
		if (p.ended)
			ended = {{"exit_code", p.ended->code ? json(*p.ended->code) : json(nullptr)},
				 {"signal", p.ended->signal ? json(*p.ended->signal) : json(nullptr)},
				 {"core_dumped", p.ended->core}};
		procs.push_back({{"pid", p.pid},
				 {"start_ns", p.start_ns},
				 {"comm", p.comm},
				 {"cgroup", p.cgroup.empty() ? json(nullptr) : json(p.cgroup)},
				 {"ppid", p.ppid},
				 {"created_by", p.created_by},
				 {"execs", p.execs},
				 {"failed_execs", p.failed_execs},
				 {"children", children},
				 {"first_ns", p.first_ns},
				 {"last_ns", p.last_ns},
				 {"lifetime_ns", val(p.lifetime_ns)},
				 {"ended", ended},
				 {"user_ns", val(p.user_ns)},
				 {"system_ns", val(p.system_ns)},
				 {"cpu_ns", val(p.cpu_ns)},
				 {"cpu_share_pct", val(p.cpu_share())},
				 {"rss_peak_bytes", val(p.rss_peak_bytes)},
				 {"read_bytes", val(p.read_bytes)},
				 {"write_bytes", val(p.write_bytes)},
				 {"sched", m.has("schedule") ? lat(p.sched) : json(nullptr)},
				 {"syscalls", m.has("syscall") ? lat(p.syscall_total) : json(nullptr)},
				 {"syscall_by_name", sys},
				 {"locks", m.has("lock") ? locks : json(nullptr)},
				 {"threads", threads}});
	}
	json collected = json::array();
	for (auto &[k, _] : m.collected)
		collected.push_back(k);
	json cgroups = json::array();
	for (const auto &g : by_cgroup(m))
		cgroups.push_back({{"cgroup", g.cgroup.empty() ? json(nullptr) : json(g.cgroup)},
				   {"processes", g.processes},
				   {"cpu_ns", val(g.cpu_ns)},
				   {"syscalls", val(g.syscalls)},
				   {"syscall_errors", val(g.syscall_errors)},
				   {"sched_delay_ns", val(g.sched_delay_ns)},
				   {"lock_wait_ns", val(g.lock_wait_ns)}});
	json stacks = nullptr;
	if (m.has("profile")) {
		stacks = json::array();
		for (const auto &s : top_stacks(m, 50))
			stacks.push_back({{"stack", s.folded}, {"samples", s.samples}});
	}
	return {{"report_version", 1},
		{"t0_ns", m.t0_ns},
		{"duration_ns", m.duration_ns()},
		{"ncpu", m.ncpu},
		{"collected", collected},
		{"lost", m.lost},
		{"records", m.records},
		{"unreadable", m.unreadable},
		{"system",
		 {{"sched", m.has("schedule") ? lat(m.system.sched) : json(nullptr)},
		  {"syscalls", m.has("syscall") ? lat(m.system.syscall_total) : json(nullptr)},
		  {"mem_used_peak_bytes", val(m.system.mem_used_peak_bytes)}}},
		{"processes", procs},
		{"cgroups", cgroups},
		{"stack_samples", m.has("profile") ? json(m.stack_samples) : json(nullptr)},
		{"top_stacks", stacks}};
}

} // namespace procimage::report
