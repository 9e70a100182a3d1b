// SPDX-License-Identifier: Apache-2.0
//
// The terminal portrait: a process tree, one line per process, then a section per process with
// its figures beside the system's.
#include "words.hpp"

#include <algorithm>
#include <functional>

namespace procimage::report {

static std::string process_line(const process_model &p)
{
	std::string s = std::to_string(p.pid) + " " + p.comm;
	if (!p.created_by.empty())
		s += " [" + p.created_by + "]";
	if (!p.execs.empty())
		s += " exec " + p.execs.back();
	if (!p.failed_execs.empty())
		s += " (" + std::to_string(p.failed_execs.size()) + " failed exec)";
	s += " — " + how_ended(p);
	s += ", lived " + dur(p.lifetime_ns ? p.lifetime_ns : opt_u64(p.last_ns - p.first_ns));
	return s;
}

static void tree(std::string &out, const model &m)
{
	std::function<void(size_t, const std::string &, bool, bool)> walk = [&](size_t i, const std::string &pre,
										 bool last, bool root) {
		const auto &p = m.processes[i];
		out += pre + (root ? "" : (last ? "└─ " : "├─ ")) + process_line(p);
		if (p.threads.size() > 1)
			out += ", " + std::to_string(p.threads.size()) + " threads";
		out += "\n";
		for (size_t k = 0; k < p.children.size(); k++)
			walk(p.children[k], root ? pre : pre + (last ? "   " : "│  "), k + 1 == p.children.size(), false);
	};
	for (size_t i = 0; i < m.processes.size(); i++)
		if (!m.processes[i].parent)
			walk(i, "", true, true);
}

static std::string row(const std::string &label, const std::string &v, const std::string &sys = "")
{
	char b[256];
	if (sys.empty())
		std::snprintf(b, sizeof b, "  %-22s %s\n", label.c_str(), v.c_str());
	else
		std::snprintf(b, sizeof b, "  %-22s %-28s system: %s\n", label.c_str(), v.c_str(), sys.c_str());
	return b;
}

static std::string latency_line(const latency &l, bool collected)
{
	if (!collected || !l.count)
		return NOT_COLLECTED;
	return num(l.count) + " x, sum " + dur(l.sum_ns) + ", mean " + dur(l.mean_ns()) + ", max " + dur(l.max_ns);
}

std::string render_text(const model &m, bool brief)
{
	std::string out;
	out += "procimage portrait: " + std::to_string(m.processes.size()) + " processes, " + dur(double(m.duration_ns())) +
	       "\n\n";
	tree(out, m);
	for (const auto &p : m.processes) {
		if (brief && p.parent)
			continue;
		out += "\n" + std::to_string(p.pid) + " " + p.comm + "\n";
		bool res = m.has("resource");
		out += row("CPU user / system", res ? dur(p.user_ns) + " / " + dur(p.system_ns) : NOT_COLLECTED);
		out += row("CPU share", res ? pct(p.cpu_share()) : NOT_COLLECTED);
		out += row("memory peak (RSS)", res ? bytes(p.rss_peak_bytes) : NOT_COLLECTED,
			   res ? bytes(m.system.mem_used_peak_bytes) + " used" : "");
		out += row("read / written", res ? bytes(p.read_bytes) + " / " + bytes(p.write_bytes) : NOT_COLLECTED);
		bool sch = m.has("schedule");
		out += row("scheduling delay", latency_line(p.sched, sch),
			   sch ? "mean " + dur(m.system.sched.mean_ns()) + ", max " + dur(m.system.sched.max_ns) : "");
		bool sc = m.has("syscall");
		std::string scl = latency_line(p.syscall_total, sc);
		if (sc && p.syscall_total.errors)
			scl += ", " + num(p.syscall_total.errors) + " errors";
		out += row("syscalls", scl, sc && m.system.syscall_total.count ? num(m.system.syscall_total.count) + " x" : "");
		if (sc && !brief) {
			std::vector<std::pair<std::string, const latency *>> top;
			for (auto &[n, l] : p.syscalls)
				top.push_back({n, &l});
			std::sort(top.begin(), top.end(), [](auto &a, auto &b) { return a.second->count > b.second->count; });
			for (size_t i = 0; i < top.size() && i < 5; i++)
				out += row("  " + top[i].first, latency_line(*top[i].second, true));
		}
		if (!m.has("lock"))
			out += row("locks", NOT_COLLECTED);
		else if (p.locks.empty())
			out += row("locks", "none seen");
		for (auto &[n, l] : p.locks)
			out += row("lock " + n, num(l.acquisitions) + " acquired, " + num(l.contended) + " contended, wait " +
							dur(l.wait_ns) + ", hold " + dur(l.hold_ns) + " (max " + dur(l.hold_max_ns) + ")");
		if (!m.has("keytime"))
			out += row("off-CPU", NOT_COLLECTED);
		else {
			std::map<std::string, uint64_t> off;
			opt_u64 on;
			for (auto &[_, t] : p.threads) {
				for (auto &[r, ns] : t.offcpu_ns)
					off[r] += ns;
				if (t.oncpu_ns)
					on = on.value_or(0) + *t.oncpu_ns;
			}
			if (!on && off.empty())
				out += row("on/off-CPU", "not collected (keytime --cpu)");
			else {
				out += row("on-CPU (keytime)", dur(on));
				for (auto &[r, ns] : off)
					out += row("off-CPU " + r, dur(double(ns)));
			}
		}
	}
	if (!brief) {
		auto groups = by_cgroup(m);
		if (std::any_of(groups.begin(), groups.end(), [](const cgroup_figures &g) { return !g.cgroup.empty() && g.cgroup != "/"; })) {
			out += "\nby cgroup:\n";
			for (const auto &g : groups)
				out += row(g.cgroup.empty() ? "(not named)" : g.cgroup,
					   std::to_string(g.processes) + " processes, CPU " + dur(g.cpu_ns) + ", " + num(g.syscalls) +
						   " syscalls (" + num(g.syscall_errors) + " errors), run-queue delay " +
						   dur(g.sched_delay_ns) + ", lock wait " + dur(g.lock_wait_ns));
		}
		if (m.has("profile") && m.stack_samples) {
			out += "\ntop stacks (" + std::to_string(m.stack_samples) + " on-CPU samples, caller;…;callee):\n";
			for (const auto &s : top_stacks(m, 10)) {
				char b[32];
				std::snprintf(b, sizeof b, "  %5.1f%% %8llu  ", 100.0 * double(s.samples) / double(m.stack_samples),
					      static_cast<unsigned long long>(s.samples));
				out += b + s.folded + "\n";
			}
		}
	}
	uint64_t lost = 0;
	for (auto &[_, n] : m.lost)
		lost += n;
	if (lost) {
		out += "\nlosses:\n";
		for (auto &[src, n] : m.lost)
			if (n)
				out += row(src, std::to_string(n) + (src.rfind("report", 0) == 0 ? "" : " records lost"));
	} else if (!m.lost.empty()) {
		out += "\nno records lost\n";
	}
	if (m.unreadable)
		out += "\n" + std::to_string(m.unreadable) + " unreadable lines skipped\n";
	return out;
}

} // namespace procimage::report
