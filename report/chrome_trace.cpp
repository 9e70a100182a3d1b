// SPDX-License-Identifier: Apache-2.0
//
// Chrome Trace Event JSON (Perfetto UI, chrome://tracing): a track per process and thread,
// on/off-CPU, lock and syscall slices, instants for fork/exec/exit/signal, counters for CPU %,
// memory and I/O, flows from a fork to the child's first slice. Timestamps in µs from run start.
#include "model.hpp"

namespace procimage::report {

using json = nlohmann::json;

static double us(uint64_t ns) { return double(ns) / 1000.0; }

std::string render_chrome_trace(const model &m)
{
	json ev = json::array();
	int flow = 1;
	for (size_t i = 0; i < m.processes.size(); i++) {
		const auto &p = m.processes[i];
		// a reused pid gets its own track: the trace's pid is an index-derived id when needed
		uint64_t tp = p.pid;
		for (size_t k = 0; k < i; k++)
			if (m.processes[k].pid == p.pid)
				tp = (uint64_t(1) << 32) | (i + 1);
		ev.push_back({{"ph", "M"}, {"name", "process_name"}, {"pid", tp}, {"tid", p.pid},
			      {"args", {{"name", std::to_string(p.pid) + " " + p.comm}}}});
		auto threads = p.threads;
		if (!threads.count(p.pid))
			threads[p.pid].tid = p.pid, threads[p.pid].comm = p.comm;
		for (const auto &[tid, t] : threads) {
			ev.push_back({{"ph", "M"}, {"name", "thread_name"}, {"pid", tp}, {"tid", tid},
				      {"args", {{"name", std::to_string(tid) + " " + (t.comm.empty() ? p.comm : t.comm)}}}});
			// slices of one thread on one track must not overlap: cpu slices on the thread's
			// track, lock and syscall slices on their own sub-tracks
			uint64_t last_end[3] = {0, 0, 0};
			for (const auto &s : t.slices) {
				int lane = s.cat == "lock" ? 1 : s.cat == "syscall" ? 2 : 0;
				uint64_t start = std::max(s.start_ns, last_end[lane]);
				uint64_t end = std::max(start, s.start_ns + s.dur_ns);
				last_end[lane] = end;
				uint64_t track = lane ? (uint64_t(lane) << 32) | tid : tid;
				ev.push_back({{"ph", "X"}, {"name", s.name}, {"cat", s.cat}, {"pid", tp}, {"tid", track},
					      {"ts", us(start)}, {"dur", us(end - start)}});
			}
			if (last_end[1])
				ev.push_back({{"ph", "M"}, {"name", "thread_name"}, {"pid", tp}, {"tid", (uint64_t(1) << 32) | tid},
					      {"args", {{"name", std::to_string(tid) + " locks"}}}});
			if (last_end[2])
				ev.push_back({{"ph", "M"}, {"name", "thread_name"}, {"pid", tp}, {"tid", (uint64_t(2) << 32) | tid},
					      {"args", {{"name", std::to_string(tid) + " syscalls"}}}});
		}
		for (const auto &in : p.instants) {
			ev.push_back({{"ph", "i"}, {"s", "t"}, {"name", in.name}, {"pid", tp}, {"tid", p.pid},
				      {"ts", us(in.ts_ns)}, {"args", {{"detail", in.detail}}}});
			if ((in.name == "fork" || in.name == "vfork") && in.other) {
				for (auto c : p.children) {
					const auto &ch = m.processes[c];
					if (ch.pid != in.other)
						continue;
					ev.push_back({{"ph", "s"}, {"id", flow}, {"name", "fork"}, {"cat", "fork"}, {"pid", tp},
						      {"tid", p.pid}, {"ts", us(in.ts_ns)}});
					ev.push_back({{"ph", "f"}, {"bp", "e"}, {"id", flow}, {"name", "fork"}, {"cat", "fork"},
						      {"pid", ch.pid}, {"tid", ch.pid}, {"ts", us(std::max(in.ts_ns, ch.first_ns))}});
					flow++;
					break;
				}
			}
		}
		for (const auto &s : p.samples) {
			json a = json::object();
			if (s.cpu_pct) a["cpu_pct"] = *s.cpu_pct;
			if (!a.empty())
				ev.push_back({{"ph", "C"}, {"name", "CPU %"}, {"pid", tp}, {"ts", us(s.ts_ns)}, {"args", a}});
			if (s.rss_bytes)
				ev.push_back({{"ph", "C"}, {"name", "memory"}, {"pid", tp}, {"ts", us(s.ts_ns)},
					      {"args", {{"rss_bytes", *s.rss_bytes}}}});
			if (s.read_bytes || s.write_bytes)
				ev.push_back({{"ph", "C"}, {"name", "I/O bytes"}, {"pid", tp}, {"ts", us(s.ts_ns)},
					      {"args", {{"read", s.read_bytes.value_or(0)}, {"written", s.write_bytes.value_or(0)}}}});
		}
	}
	return json{{"traceEvents", ev}, {"displayTimeUnit", "ms"},
		    {"otherData", {{"t0_boot_ns", m.t0_ns}, {"lost", m.lost}}}}
		.dump();
}

} // namespace procimage::report
