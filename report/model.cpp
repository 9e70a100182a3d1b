// SPDX-License-Identifier: Apache-2.0
#include "model.hpp"
#include "fields.hpp"
#include "sinks/folded/folded.hpp"

#include <algorithm>
#include <istream>
#include <unistd.h>

namespace procimage::report {

namespace f = fields;
using json = nlohmann::json;

std::optional<double> process_model::cpu_share() const
{
	opt_u64 cpu = cpu_ns;
	if (!cpu && user_ns && system_ns)
		cpu = *user_ns + *system_ns;
	auto life = lifetime_ns ? *lifetime_ns : (last_ns > first_ns ? last_ns - first_ns : 0);
	if (!cpu || life == 0)
		return std::nullopt;
	return 100.0 * double(*cpu) / double(life);
}

process_model &builder::process(uint32_t pid, uint64_t start, uint64_t now)
{
	if (auto it = by_start_.find({pid, start}); start && it != by_start_.end())
		return m_.processes[it->second];
	if (auto it = live_.find(pid); it != live_.end()) {
		auto &p = m_.processes[it->second];
		// the same pid, a different start time: the pid was reused by a new process
		if (!start || !p.start_ns || p.start_ns == start) {
			if (!p.start_ns && start) {
				p.start_ns = start;
				by_start_[{pid, start}] = it->second;
			}
			return p;
		}
	}
	size_t i = m_.processes.size();
	m_.processes.emplace_back();
	auto &p = m_.processes.back();
	p.pid = pid;
	p.start_ns = start;
	p.first_ns = p.last_ns = now;
	live_[pid] = i;
	if (start)
		by_start_[{pid, start}] = i;
	if (auto pp = pending_parent_.find(pid); pp != pending_parent_.end()) {
		if (auto par = live_.find(pp->second); par != live_.end() && par->second != i) {
			p.parent = par->second;
			p.ppid = pp->second;
			m_.processes[par->second].children.push_back(i);
		}
		pending_parent_.erase(pp);
	}
	return m_.processes[i];
}

process_model &builder::process(const json &r)
{
	auto now = rel(f::ts(r));
	auto &p = process(f::pid(r), f::pid_start(r), now);
	p.first_ns = std::min(p.first_ns, now);
	p.last_ns = std::max(p.last_ns, now);
	if (p.comm.empty() || f::event(r) == "exec")
		if (auto c = f::comm(r); !c.empty() && f::tid(r) == f::pid(r))
			p.comm = c;
	if (p.comm.empty())
		p.comm = f::comm(r);
	if (auto cg = f::cgroup(r); !cg.empty())
		p.cgroup = std::move(cg);
	return p;
}

thread_model &builder::thread(process_model &p, uint32_t tid, const std::string &comm, uint64_t now)
{
	auto &t = p.threads[tid];
	if (t.tid == 0) {
		t.tid = tid;
		t.first_ns = now;
	}
	if (!comm.empty())
		t.comm = comm;
	t.first_ns = std::min(t.first_ns, now);
	t.last_ns = std::max(t.last_ns, now);
	return t;
}

void builder::add_slice(thread_model &t, slice s)
{
	if (slices_ >= max_slices_) {
		dropped_slices_++;
		return;
	}
	slices_++;
	t.slices.push_back(std::move(s));
}

static void take(latency &l, const json &r)
{
	if (auto v = f::count(r))
		l.count = v;
	if (auto v = f::total_ns(r))
		l.sum_ns = v;
	if (auto v = f::max_ns(r))
		l.max_ns = v;
	if (auto v = f::errors(r))
		l.errors = v;
	if (auto h = f::hist(r); !h.empty())
		l.hist_ns = std::move(h);
}

static void take(lock_figures &l, const json &r)
{
	if (auto v = f::acquisitions(r)) l.acquisitions = v;
	if (auto v = f::contended(r)) l.contended = v;
	if (auto v = f::wait_ns(r)) l.wait_ns = v;
	if (auto v = f::wait_max_ns(r)) l.wait_max_ns = v;
	if (auto v = f::hold_ns(r)) l.hold_ns = v;
	if (auto v = f::hold_max_ns(r)) l.hold_max_ns = v;
}

void builder::add_line(const std::string &line)
{
	if (line.find_first_not_of(" \t\r") == std::string::npos)
		return;
	auto j = json::parse(line, nullptr, false);
	if (!j.is_discarded() && j.is_object()) {
		add(j);
		return;
	}
	if (!add_folded(line))
		m_.unreadable++;
}

// A line of collapsed stacks ("comm;outer;…;leaf COUNT", what the folded sink, perf script |
// stackcollapse and other profilers write): the stack's samples join the run's stacks.
bool builder::add_folded(const std::string &line)
{
	std::string l = line;
	while (!l.empty() && (l.back() == '\r' || l.back() == ' '))
		l.pop_back();
	auto sp = l.rfind(' ');
	if (sp == std::string::npos || sp == 0 || l[0] == '{' || sp + 1 == l.size())
		return false;
	uint64_t n = 0;
	for (size_t i = sp + 1; i < l.size(); i++) {
		if (l[i] < '0' || l[i] > '9' || n > UINT64_MAX / 10)
			return false;
		n = n * 10 + uint64_t(l[i] - '0');
	}
	m_.records++;
	m_.collected["profile"] = true;
	add_stack(l.substr(0, sp), n);
	return true;
}

void builder::add(const json &r)
{
	m_.records++;
	auto probe = f::probe(r), ev = f::event(r);
	auto ts = f::ts(r);
	if (ts) {
		// an interval record (oncpu, offcpu) begins dur_ns before its time
		uint64_t begin = ts - std::min(ts, f::duration(r).value_or(0));
		if (!m_.t0_ns || begin < m_.t0_ns) {
			// a record older than the first one seen: shift what was measured from it
			uint64_t shift = m_.t0_ns ? m_.t0_ns - begin : 0;
			m_.t0_ns = begin;
			if (shift)
				for (auto &p : m_.processes) {
					p.first_ns += shift, p.last_ns += shift;
					for (auto &[_, t] : p.threads) {
						t.first_ns += shift, t.last_ns += shift;
						for (auto &s : t.slices) s.start_ns += shift;
					}
					for (auto &i : p.instants) i.ts_ns += shift;
					for (auto &s : p.samples) s.ts_ns += shift;
				}
		}
		m_.end_ns = std::max(m_.end_ns, ts);
	}
	auto now = rel(ts);

	if (probe == "procimage" || probe.empty()) {
		if (ev == "summary" || ev == "lost") {
			auto src = f::source(r);
			if (auto l = f::lost(r); l && !src.empty())
				m_.lost[src] = std::max(m_.lost[src], *l);
		}
		return;
	}
	m_.collected[probe] = true;

	if (f::is_system(r)) {
		auto &s = m_.system;
		if (probe == "schedule" && f::is_total(r))
			take(s.sched, r);
		else if (probe == "syscall") {
			// figures since the start: the total rows (the last one of a key is its final)
			if (f::is_total(r) && ev == "totals")
				take(s.syscall_total, r);
			else if (auto name = f::syscall_name(r); f::is_total(r) && ev == "syscall" && !name.empty())
				take(s.syscalls[name], r);
		} else if (probe == "resource") {
			if (auto u = f::mem_used(r))
				s.mem_used_peak_bytes = std::max(s.mem_used_peak_bytes.value_or(0), *u);
			sample x{now, f::cpu_pct(r), f::mem_used(r), f::u64(r, "storage_read_bytes"),
				 f::u64(r, "storage_write_bytes")};
			s.samples.push_back(x);
		}
		return;
	}
	if (!f::pid(r))
		return;

	if (probe == "keytime") {
		if (ev == "fork" || ev == "vfork" || ev == "thread" || ev == "clone") {
			auto &p = process(r);
			auto child = static_cast<uint32_t>(f::child_pid(r).value_or(0));
			auto ctid = static_cast<uint32_t>(f::u64(r, "child_tid").value_or(child));
			p.instants.push_back({now, ev, f::str(r, "child_comm"), ev == "thread" ? ctid : child});
			if (ev == "thread") {
				thread(p, ctid, f::str(r, "child_comm"), now);
			} else if (child) {
				size_t pi = static_cast<size_t>(&p - m_.processes.data());
				auto seen = live_.find(child);
				auto started_after = [&](const process_model &c) {
					// same clock: pid_start_ns of the parent (this record) and of the child
					if (c.start_ns && p.start_ns)
						return c.start_ns >= p.start_ns;
					return c.first_ns >= now;
				};
				if (seen != live_.end() && !m_.processes[seen->second].parent &&
				    m_.processes[seen->second].created_by.empty() && seen->second != pi &&
				    started_after(m_.processes[seen->second])) {
					// the child's own records came in before its parent's fork record
					// (another probe's batch or CPU's ring buffer): it is this child
					auto &c = m_.processes[seen->second];
					c.parent = pi;
					c.ppid = m_.processes[pi].pid;
					c.created_by = ev;
					c.first_ns = now;
					m_.processes[pi].children.push_back(seen->second);
				} else {
					live_.erase(child); // a new process with this pid starts here
					pending_parent_[child] = p.pid;
					auto &c = process(child, f::child_start(r).value_or(0), now);
					c.created_by = ev;
					c.comm = f::str(r, "child_comm");
					c.first_ns = now;
				}
			}
			return;
		}
		auto &p = process(r);
		auto &t = thread(p, f::tid(r), f::comm(r), now);
		if (ev == "exec") {
			auto rv = f::ret(r).value_or(0);
			if (rv < 0) {
				p.failed_execs.push_back(f::filename(r) + " (" + std::to_string(rv) + ")");
				p.instants.push_back({now, "exec failed", f::filename(r)});
			} else {
				p.execs.push_back(f::filename(r));
				p.comm = f::comm(r);
				p.instants.push_back({now, "exec", f::filename(r)});
			}
		} else if (ev == "exit") {
			t.ended_ns = now;
			if (f::group_dead(r) || f::tid(r) == f::pid(r)) {
				ending e{f::exit_code(r), f::exit_signal(r), f::core_dumped(r)};
				if (f::group_dead(r) || !p.ended)
					p.ended = e;
				if (auto l = f::u64(r, "process_lifetime_ns"))
					p.lifetime_ns = l;
				if (auto pp = f::ppid(r); pp && !p.ppid)
					p.ppid = static_cast<uint32_t>(*pp);
				if (auto cb = f::str(r, "created_by");
				    f::tid(r) == f::pid(r) && !cb.empty() && cb != "unknown" && p.created_by.empty())
					p.created_by = cb;
				std::string d = e.signal && *e.signal ? "signal " + std::to_string(*e.signal) + (e.core ? " (core)" : "")
								     : "code " + std::to_string(e.code.value_or(0));
				p.instants.push_back({now, "exit", d});
			}
		} else if (ev == "oncpu" || ev == "offcpu") {
			auto d = f::duration(r).value_or(0);
			uint64_t start = now > d ? now - d : 0;
			if (ev == "oncpu") {
				t.oncpu_ns = t.oncpu_ns.value_or(0) + d;
				add_slice(t, {start, d, "on-CPU", "oncpu"});
			} else {
				auto why = f::offcpu_reason(r);
				if (why.empty())
					why = "off-CPU";
				t.offcpu_ns[why] += d;
				add_slice(t, {start, d, why, "offcpu"});
			}
			t.first_ns = std::min(t.first_ns, start);
		} else if (ev == "signal") {
			p.instants.push_back({now, "signal", f::str(r, "sig")});
		}
		return;
	}

	auto &p = process(r);
	if (probe == "resource") {
		if (ev == "thread") {
			thread(p, f::tid(r), f::comm(r), now);
			return;
		}
		if (auto v = f::user_ns(r)) p.user_ns = std::max(p.user_ns.value_or(0), *v);
		if (auto v = f::system_ns(r)) p.system_ns = std::max(p.system_ns.value_or(0), *v);
		if (auto v = f::cpu_total_ns(r)) p.cpu_ns = std::max(p.cpu_ns.value_or(0), *v);
		if (auto v = f::rss_bytes(r)) p.rss_peak_bytes = std::max(p.rss_peak_bytes.value_or(0), *v);
		if (auto v = f::read_total(r)) p.read_bytes = std::max(p.read_bytes.value_or(0), *v);
		if (auto v = f::write_total(r)) p.write_bytes = std::max(p.write_bytes.value_or(0), *v);
		sample x{now, f::cpu_pct(r), f::rss_bytes(r), f::read_bytes(r), f::write_bytes(r)};
		p.samples.push_back(x);
	} else if (probe == "schedule") {
		if (ev == "thread") {
			auto &t = thread(p, f::tid(r), f::comm(r), now);
			if (f::is_total(r))
				take(t.sched, r);
		} else if (ev == "process" && f::is_total(r)) {
			take(p.sched, r);
		}
	} else if (probe == "syscall") {
		// figures since the start: the total rows (the last one of a key is its final)
		auto name = f::syscall_name(r);
		if (ev == "syscall" && !name.empty() && f::is_total(r))
			take(p.syscalls[name], r);
		else if (ev == "totals" && f::is_total(r))
			take(p.syscall_total, r);
		if (ev == "sequence") {
			// a sequence carries each call's latency but not its start: laid out back to back,
			// ending at the record's time
			auto &t = thread(p, f::tid(r), f::comm(r), now);
			auto names = f::seq_names(r);
			auto lat = f::seq_lat(r);
			uint64_t end = now;
			for (size_t i = std::min(names.size(), lat.size()); i-- > 0;) {
				uint64_t s = end > lat[i] ? end - lat[i] : 0;
				add_slice(t, {s, end - s, names[i], "syscall"});
				end = s;
			}
		}
	} else if (probe == "lock") {
		auto key = f::lock_type(r);
		auto name = f::lock_name(r);
		if (!name.empty())
			key += " " + name;
		// whole-run figures: per lock type (process) and per named lock (lock)
		if (f::is_total(r) && (ev == "process" || ev == "lock") && !key.empty())
			take(p.locks[key], r);
	} else if (probe == "profile" && ev == "stack") {
		// each row is one interval's samples of one thread and stack: summed over the run
		add_stack(sinks::folded::folded_stack(f::comm(r), f::ustack(r), f::kstack(r), "_[k]"),
			  f::samples(r).value_or(0));
	}
}

// A stack's samples join the run's (past max_stacks distinct stacks, under one name).
void builder::add_stack(std::string folded, uint64_t n)
{
	m_.stack_samples += n;
	auto it = m_.stacks.find(folded);
	if (it != m_.stacks.end())
		it->second += n;
	else if (m_.stacks.size() < max_stacks)
		m_.stacks.emplace(std::move(folded), n);
	else
		m_.stacks["[other stacks]"] += n;
}

model builder::finish()
{
	for (auto &p : m_.processes) {
		for (auto &[_, t] : p.threads)
			std::sort(t.slices.begin(), t.slices.end(),
				  [](const slice &a, const slice &b) { return a.start_ns < b.start_ns; });
		std::stable_sort(p.instants.begin(), p.instants.end(),
				 [](const instant &a, const instant &b) { return a.ts_ns < b.ts_ns; });
		if (!p.syscalls.empty() && !p.syscall_total.count) {
			latency t;
			for (auto &[_, l] : p.syscalls) {
				t.count = t.count.value_or(0) + l.count.value_or(0);
				t.sum_ns = t.sum_ns.value_or(0) + l.sum_ns.value_or(0);
				t.errors = t.errors.value_or(0) + l.errors.value_or(0);
				t.max_ns = std::max(t.max_ns.value_or(0), l.max_ns.value_or(0));
			}
			p.syscall_total = t;
		}
		if (!p.cpu_ns && p.user_ns && p.system_ns)
			p.cpu_ns = *p.user_ns + *p.system_ns;
	}
	if (dropped_slices_)
		m_.lost["report: timeline slices left out"] = dropped_slices_;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	m_.ncpu = n > 0 ? unsigned(n) : 1;
	return std::move(m_);
}

std::vector<cgroup_figures> by_cgroup(const model &m)
{
	std::map<std::string, cgroup_figures> g;
	auto add = [](opt_u64 &to, const opt_u64 &v) {
		if (v)
			to = to.value_or(0) + *v;
	};
	for (const auto &p : m.processes) {
		auto &c = g[p.cgroup];
		c.cgroup = p.cgroup;
		c.processes++;
		add(c.cpu_ns, p.cpu_ns);
		add(c.syscalls, p.syscall_total.count);
		add(c.syscall_errors, p.syscall_total.errors);
		add(c.sched_delay_ns, p.sched.sum_ns);
		for (const auto &[_, l] : p.locks)
			add(c.lock_wait_ns, l.wait_ns);
	}
	std::vector<cgroup_figures> v;
	for (auto &[_, c] : g)
		v.push_back(std::move(c));
	std::stable_sort(v.begin(), v.end(), [](const cgroup_figures &a, const cgroup_figures &b) {
		if (a.cgroup.empty() != b.cgroup.empty())
			return b.cgroup.empty();
		return a.cpu_ns.value_or(0) > b.cpu_ns.value_or(0);
	});
	return v;
}

std::vector<stack_figures> top_stacks(const model &m, size_t n)
{
	std::vector<stack_figures> v;
	for (const auto &[s, k] : m.stacks)
		v.push_back({s, k});
	std::stable_sort(v.begin(), v.end(), [](const stack_figures &a, const stack_figures &b) { return a.samples > b.samples; });
	if (v.size() > n)
		v.resize(n);
	return v;
}

model read_jsonl(std::istream &in)
{
	builder b;
	std::string line;
	while (std::getline(in, line))
		b.add_line(line);
	return b.finish();
}

} // namespace procimage::report
