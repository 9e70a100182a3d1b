// SPDX-License-Identifier: Apache-2.0
//
// One self-contained HTML page (inline CSS and SVG, no script, no network): the life tree, a
// timeline of processes and threads, and charts beside the system's figures. Timeline slices
// are capped by the model (large runs are summarised), so the page stays small.
#include "words.hpp"

#include <algorithm>
#include <cmath>
#include <functional>

namespace procimage::report {

static std::string esc(const std::string &s)
{
	std::string o;
	for (char c : s)
		switch (c) {
		case '<': o += "&lt;"; break;
		case '>': o += "&gt;"; break;
		case '&': o += "&amp;"; break;
		case '"': o += "&quot;"; break;
		default: o += c;
		}
	return o;
}

static std::string fmt(const char *f, double v)
{
	char b[64];
	std::snprintf(b, sizeof b, f, v);
	return b;
}

static const char *colour(const std::string &cat, const std::string &name)
{
	if (cat == "oncpu") return "#2e9e44";
	if (cat == "lock") return "#d9480f";
	if (cat == "syscall") return "#5f3dc4";
	if (name == "runnable" || name == "preempted") return "#f2c94c";
	if (name.find("io") != std::string::npos || name == "disk") return "#1c7ed6";
	return "#adb5bd";
}

// log2 histogram as bars, the process's beside the system's (both as shares of their counts)
static std::string hist_svg(const std::string &title, const std::vector<uint64_t> &mine, const std::vector<uint64_t> &sys)
{
	std::string o = "<figure><figcaption>" + esc(title) + "</figcaption>";
	if (mine.empty() && sys.empty())
		return o + "<p class=nc>" + NOT_COLLECTED + "</p></figure>";
	size_t lo = 64, hi = 0;
	for (auto *h : {&mine, &sys})
		for (size_t i = 0; i < h->size(); i++)
			if ((*h)[i])
				lo = std::min(lo, i), hi = std::max(hi, i);
	if (hi < lo)
		return o + "<p class=nc>no events</p></figure>";
	auto total = [](const std::vector<uint64_t> &h) { uint64_t t = 0; for (auto x : h) t += x; return t; };
	double tm = double(total(mine)), ts = double(total(sys));
	size_t n = hi - lo + 1;
	double w = 320, hgt = 110, bw = w / double(n);
	o += "<svg width=340 height=140 viewBox='0 0 340 140'>";
	for (size_t i = 0; i < n; i++) {
		size_t k = lo + i;
		double a = k < mine.size() && tm ? double(mine[k]) / tm : 0, b = k < sys.size() && ts ? double(sys[k]) / ts : 0;
		double x = 10 + double(i) * bw;
		o += "<rect x='" + fmt("%.1f", x) + "' y='" + fmt("%.1f", 10 + hgt * (1 - a)) + "' width='" +
		     fmt("%.1f", bw * 0.45) + "' height='" + fmt("%.1f", hgt * a) + "' fill='#1c7ed6'><title>" +
		     dur(double(uint64_t(1) << k)) + ": " + fmt("%.0f", k < mine.size() ? double(mine[k]) : 0) + "</title></rect>";
		o += "<rect x='" + fmt("%.1f", x + bw * 0.45) + "' y='" + fmt("%.1f", 10 + hgt * (1 - b)) + "' width='" +
		     fmt("%.1f", bw * 0.45) + "' height='" + fmt("%.1f", hgt * b) + "' fill='#ced4da'/>";
	}
	o += "<text x='10' y='135' class=ax>" + dur(double(uint64_t(1) << lo)) + "</text><text x='330' y='135' class=ax text-anchor=end>" +
	     dur(double(uint64_t(1) << (hi + 1))) + "</text></svg>";
	o += "<div class=leg><span style='background:#1c7ed6'></span>this process <span style='background:#ced4da'></span>system</div></figure>";
	return o;
}

static std::string series_svg(const std::string &title, const std::vector<std::pair<double, double>> &pts, double span,
			      const std::function<std::string(double)> &label)
{
	std::string o = "<figure><figcaption>" + esc(title) + "</figcaption>";
	if (pts.empty())
		return o + "<p class=nc>" + NOT_COLLECTED + "</p></figure>";
	double mx = 0;
	for (auto &[_, v] : pts)
		mx = std::max(mx, v);
	if (mx <= 0)
		mx = 1;
	std::string path;
	for (auto &[t, v] : pts)
		path += (path.empty() ? "M" : " L") + fmt("%.1f", 10 + 320 * t / span) + "," + fmt("%.1f", 120 - 110 * v / mx);
	o += "<svg width=340 height=140 viewBox='0 0 340 140'><line x1=10 y1=120 x2=330 y2=120 stroke='#dee2e6'/><path d='" + path +
	     "' fill=none stroke='#1c7ed6' stroke-width=2/>";
	if (pts.size() < 40)
		for (auto &[t, v] : pts)
			o += "<circle cx='" + fmt("%.1f", 10 + 320 * t / span) + "' cy='" + fmt("%.1f", 120 - 110 * v / mx) +
			     "' r=3 fill='#1c7ed6'><title>" + esc(label(v)) + "</title></circle>";
	o += "<text x=10 y=135 class=ax>max " + esc(label(mx)) + "</text></svg></figure>";
	return o;
}

// The processes grouped by cgroup (only when the records named more than the root cgroup).
static std::string cgroups_html(const model &m)
{
	auto groups = by_cgroup(m);
	bool named = std::any_of(groups.begin(), groups.end(), [](const cgroup_figures &g) { return !g.cgroup.empty() && g.cgroup != "/"; });
	if (!named)
		return "";
	std::string o = "<h2>By cgroup</h2><table><tr><th>cgroup</th><th>processes</th><th>CPU</th><th>syscalls</th>"
			"<th>errors</th><th>run-queue delay</th><th>lock wait</th></tr>";
	for (const auto &g : groups)
		o += "<tr><td>" + esc(g.cgroup.empty() ? "(not named)" : g.cgroup) + "</td><td>" + std::to_string(g.processes) +
		     "</td><td>" + dur(g.cpu_ns) + "</td><td>" + num(g.syscalls) + "</td><td>" + num(g.syscall_errors) +
		     "</td><td>" + dur(g.sched_delay_ns) + "</td><td>" + dur(g.lock_wait_ns) + "</td></tr>";
	return o + "</table>";
}

// The frames of a folded stack, outermost first.
static std::vector<std::string> split_frames(const std::string &folded)
{
	std::vector<std::string> v;
	size_t at = 0;
	while (at <= folded.size()) {
		size_t semi = folded.find(';', at);
		if (semi == std::string::npos)
			semi = folded.size();
		v.push_back(folded.substr(at, semi - at));
		at = semi + 1;
	}
	return v;
}

// The profile's samples: an icicle graph (callers above their callees, widths the share of
// samples) of the heaviest stacks, then those stacks as a table.
static std::string stacks_html(const model &m)
{
	if (!m.has("profile"))
		return "";
	std::string o = "<h2>Where the CPU time went (on-CPU samples)</h2>";
	if (!m.stack_samples)
		return o + "<p class=nc>no samples</p>";
	auto top = top_stacks(m, 400);
	struct node {
		std::map<std::string, node> kids;
		uint64_t n = 0;
	} root;
	size_t depth = 0;
	for (const auto &s : top) {
		node *at = &root;
		at->n += s.samples;
		auto frames = split_frames(s.folded);
		depth = std::max(depth, frames.size());
		for (const auto &f : frames) {
			at = &at->kids[f];
			at->n += s.samples;
		}
	}
	const double W = 1100, RH = 17;
	depth = std::min<size_t>(depth, 80);
	o += "<svg class=flame width='" + fmt("%.0f", W) + "' height='" + fmt("%.0f", RH * double(depth) + 4) + "'>";
	std::function<void(const node &, double, double, size_t)> draw = [&](const node &n, double x, double w, size_t d) {
		for (const auto &[name, k] : n.kids) {
			double kw = w * double(k.n) / double(n.n ? n.n : 1);
			if (kw >= 0.5 && d < depth) {
				bool kernel = name.size() > 4 && name.compare(name.size() - 4, 4, "_[k]") == 0;
				std::string tip = name + " — " + std::to_string(k.n) + " samples (" +
						  fmt("%.1f", 100.0 * double(k.n) / double(m.stack_samples)) + "%)";
				o += "<g><title>" + esc(tip) + "</title><rect x='" + fmt("%.1f", x) + "' y='" + fmt("%.0f", RH * double(d)) +
				     "' width='" + fmt("%.1f", kw) + "' height='" + fmt("%.0f", RH - 1) + "' fill='" +
				     (d == 0 ? "#ced4da" : kernel ? "#f08c00" : "#e8590c") + "' fill-opacity='" +
				     fmt("%.2f", 0.55 + 0.45 * double(k.n) / double(root.n)) + "'/>";
				if (kw > 40) {
					size_t fit = size_t((kw - 6) / 7);
					std::string label = name.size() > fit ? name.substr(0, fit > 1 ? fit - 1 : 0) + "…" : name;
					o += "<text x='" + fmt("%.1f", x + 3) + "' y='" + fmt("%.0f", RH * double(d) + 12) + "'>" + esc(label) + "</text>";
				}
				o += "</g>";
				draw(k, x, kw, d + 1);
			}
			x += kw;
		}
	};
	draw(root, 0, W, 0);
	o += "</svg><p class=sub>" + std::to_string(m.stack_samples) + " samples in " + std::to_string(m.stacks.size()) +
	     " distinct stacks; the first row is the command, each row below the functions it called (in a run's "
	     "portrait, kernel frames end in _[k]). The same stacks in collapsed form: <code>-o folded:PATH</code>.</p>";
	o += "<table><tr><th>samples</th><th>share</th><th>stack (caller › callee)</th></tr>";
	auto shown = top_stacks(m, 15);
	for (const auto &s : shown) {
		auto frames = split_frames(s.folded);
		std::string text;
		for (size_t i = 0; i < frames.size(); i++)
			text += (i ? " › " : "") + (i + 1 == frames.size() ? "<b>" + esc(frames[i]) + "</b>" : esc(frames[i]));
		o += "<tr><td>" + std::to_string(s.samples) + "</td><td>" +
		     fmt("%.1f%%", 100.0 * double(s.samples) / double(m.stack_samples)) + "</td><td class=stack>" + text + "</td></tr>";
	}
	return o + "</table>";
}

std::string render_html(const model &m)
{
	std::string o = R"(<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>procimage portrait</title><style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#212529;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dee2e6}
.sub{color:#868e96}.flame text{font:11px ui-monospace,monospace;fill:#212529;pointer-events:none}td.stack{font:12px ui-monospace,monospace;word-break:break-all}.tree{font:13px ui-monospace,monospace;white-space:pre;background:#f8f9fa;padding:10px;border-radius:6px}
table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #f1f3f5;text-align:left;vertical-align:top}
.nc{color:#adb5bd;font-style:italic}figure{display:inline-block;margin:6px 14px 6px 0}figcaption{font-weight:600}
.ax{font-size:10px;fill:#868e96}.leg span{display:inline-block;width:10px;height:10px;margin:0 4px 0 8px}
.tl text{font:11px ui-monospace,monospace}
</style></head><body>)";
	if (m.processes.empty())
		return o + "<h1>procimage: on-CPU stacks</h1><div class=sub>" + std::to_string(m.records) +
		       " lines of collapsed stacks</div>" + stacks_html(m) + "</body></html>\n";
	o += "<h1>procimage portrait</h1><div class=sub>" + std::to_string(m.processes.size()) + " processes, " +
	     dur(double(m.duration_ns())) + ", " + std::to_string(m.records) + " records; probes:";
	for (auto &[k, _] : m.collected)
		o += " " + esc(k);
	o += "</div>";

	o += "<h2>Life tree</h2><div class=tree>";
	{
		std::string t = render_text(m, true);
		auto a = t.find("\n\n"), b = t.find("\n\n", a + 2);
		t = t.substr(a + 2, b == std::string::npos ? std::string::npos : b - a - 2);
		size_t cut = 0, lines = 0;
		while (cut != std::string::npos && lines < 60)
			cut = t.find('\n', cut + 1), lines++;
		if (cut != std::string::npos)
			t = t.substr(0, cut) + "\n… (" + std::to_string(m.processes.size()) + " processes in all: see All processes)";
		o += esc(t);
	}
	o += "</div>";

	// Large runs are summarised: the timeline and the detailed sections cover the root
	// processes and those with the most CPU; every process still has a row in the table below.
	const size_t DETAIL = 40;
	std::vector<size_t> chosen;
	for (size_t i = 0; i < m.processes.size(); i++)
		chosen.push_back(i);
	if (chosen.size() > DETAIL) {
		auto weight = [&](size_t i) {
			auto &p = m.processes[i];
			uint64_t on = 0;
			for (auto &[_, t] : p.threads)
				on += t.oncpu_ns.value_or(0);
			return std::pair<bool, uint64_t>(!p.parent, std::max(p.cpu_ns.value_or(0), on));
		};
		std::stable_sort(chosen.begin(), chosen.end(), [&](size_t a, size_t b) { return weight(a) > weight(b); });
		chosen.resize(DETAIL);
		std::sort(chosen.begin(), chosen.end());
		o += "<p class=sub>" + std::to_string(m.processes.size()) + " processes: the timeline and the detailed sections show " +
		     std::to_string(DETAIL) + " of them (the roots and the busiest); every process has a row under All processes.</p>";
	}

	// timeline
	double span = std::max<double>(1, double(m.duration_ns()));
	size_t rows = 0;
	for (auto i : chosen)
		rows += std::max<size_t>(1, m.processes[i].threads.size());
	double W = 1100, L = 190, rh = 18;
	o += "<h2>Timeline</h2><svg class=tl width='" + fmt("%.0f", W) + "' height='" + fmt("%.0f", 30 + rh * double(rows)) +
	     "' viewBox='0 0 " + fmt("%.0f", W) + " " + fmt("%.0f", 30 + rh * double(rows)) + "'>";
	auto X = [&](double ns) { return L + (W - L - 10) * ns / span; };
	double y = 20;
	for (auto i : chosen) {
		auto &p = m.processes[i];
		auto threads = p.threads;
		if (threads.empty())
			threads[p.pid].tid = p.pid;
		for (auto &[tid, t] : threads) {
			std::string lab = tid == p.pid ? std::to_string(p.pid) + " " + p.comm : "  └ " + std::to_string(tid);
			o += "<text x=4 y='" + fmt("%.0f", y + 12) + "'>" + esc(lab) + "</text>";
			double a = X(double(tid == p.pid ? p.first_ns : t.first_ns));
			double b = X(double(tid == p.pid ? (p.lifetime_ns ? p.first_ns + *p.lifetime_ns : p.last_ns)
							 : t.ended_ns.value_or(t.last_ns)));
			o += "<rect x='" + fmt("%.1f", a) + "' y='" + fmt("%.0f", y + 7) + "' width='" + fmt("%.1f", std::max(1.0, b - a)) +
			     "' height=4 fill='#e9ecef'/>";
			for (auto &s : t.slices) {
				double sx = X(double(s.start_ns)), sw = std::max(0.6, X(double(s.start_ns + s.dur_ns)) - sx);
				double sy = s.cat == "syscall" ? y + 13 : s.cat == "lock" ? y + 1 : y + 3;
				double sh = s.cat == "syscall" || s.cat == "lock" ? 4 : 12;
				o += "<rect x='" + fmt("%.1f", sx) + "' y='" + fmt("%.0f", sy) + "' width='" + fmt("%.1f", sw) + "' height='" +
				     fmt("%.0f", sh) + "' fill='" + colour(s.cat, s.name) + "'><title>" + esc(s.name) + " " +
				     dur(double(s.dur_ns)) + "</title></rect>";
			}
			if (tid == p.pid)
				for (auto &in : p.instants)
					o += "<circle cx='" + fmt("%.1f", X(double(in.ts_ns))) + "' cy='" + fmt("%.0f", y + 9) +
					     "' r=3 fill='#212529'><title>" + esc(in.name + " " + in.detail) + "</title></circle>";
			y += rh;
		}
	}
	o += "</svg><div class=leg><span style='background:#2e9e44'></span>on-CPU<span style='background:#adb5bd'></span>off-CPU "
	     "(sleeping)<span style='background:#f2c94c'></span>runnable<span style='background:#d9480f'></span>lock wait/hold"
	     "<span style='background:#5f3dc4'></span>syscall<span style='background:#212529;border-radius:5px'></span>fork/exec/exit</div>";

	// system series
	std::vector<std::pair<double, double>> sys_cpu, sys_mem;
	for (auto &s : m.system.samples) {
		if (s.cpu_pct) sys_cpu.push_back({double(s.ts_ns), *s.cpu_pct});
		if (s.rss_bytes) sys_mem.push_back({double(s.ts_ns), double(*s.rss_bytes)});
	}
	auto b2s = [](double v) { return bytes(opt_u64(uint64_t(v))); };
	auto p2s = [](double v) { return fmt("%.1f%%", v); };

	for (auto i : chosen) {
		auto &p = m.processes[i];
		o += "<h2>" + std::to_string(p.pid) + " " + esc(p.comm) + "</h2><table>";
		auto row = [&](const std::string &k, const std::string &v, const std::string &s = "") {
			auto cell = [](const std::string &x) {
				return x.find(NOT_COLLECTED) == 0 ? "<td class=nc>" + esc(x) + "</td>" : "<td>" + esc(x) + "</td>";
			};
			o += "<tr><th>" + esc(k) + "</th>" + cell(v) + (s.empty() ? std::string("<td></td>") : cell("system: " + s)) + "</tr>";
		};
		bool res = m.has("resource"), sch = m.has("schedule"), sc = m.has("syscall");
		row("ended", how_ended(p));
		row("lifetime", dur(p.lifetime_ns));
		row("created by", p.created_by.empty() ? "(not seen)" : p.created_by);
		if (!p.execs.empty()) row("exec", p.execs.back());
		for (auto &fe : p.failed_execs) row("failed exec", fe);
		row("CPU user / system", res ? dur(p.user_ns) + " / " + dur(p.system_ns) : NOT_COLLECTED);
		row("CPU share", res ? pct(p.cpu_share()) : NOT_COLLECTED);
		row("memory peak", res ? bytes(p.rss_peak_bytes) : NOT_COLLECTED, res ? bytes(m.system.mem_used_peak_bytes) + " used" : "");
		row("read / written", res ? bytes(p.read_bytes) + " / " + bytes(p.write_bytes) : NOT_COLLECTED);
		row("scheduling delay", sch && p.sched.count ? num(p.sched.count) + " waits, mean " + dur(p.sched.mean_ns()) + ", max " + dur(p.sched.max_ns) : NOT_COLLECTED,
		    sch ? "mean " + dur(m.system.sched.mean_ns()) + ", max " + dur(m.system.sched.max_ns) : "");
		row("syscalls", sc && p.syscall_total.count ? num(p.syscall_total.count) + " calls, " + num(p.syscall_total.errors) + " errors, " + dur(p.syscall_total.sum_ns) : NOT_COLLECTED,
		    sc ? num(m.system.syscall_total.count) + " calls" : "");
		for (auto &[n, l] : p.locks)
			row("lock " + n, num(l.acquisitions) + " acquired, " + num(l.contended) + " contended, wait " + dur(l.wait_ns) + ", hold " + dur(l.hold_ns));
		if (!m.has("lock")) row("locks", NOT_COLLECTED);
		o += "</table>";
		std::vector<std::pair<double, double>> cpu, mem, io;
		for (auto &s : p.samples) {
			if (s.cpu_pct) cpu.push_back({double(s.ts_ns), *s.cpu_pct});
			if (s.rss_bytes) mem.push_back({double(s.ts_ns), double(*s.rss_bytes)});
			if (s.read_bytes || s.write_bytes) io.push_back({double(s.ts_ns), double(s.read_bytes.value_or(0) + s.write_bytes.value_or(0))});
		}
		o += series_svg("CPU % (system: " + (sys_cpu.empty() ? std::string(NOT_COLLECTED) : p2s(sys_cpu.back().second)) + ")", cpu, span, p2s);
		o += series_svg("memory (RSS)", mem, span, b2s);
		o += series_svg("I/O bytes per interval", io, span, b2s);
		o += hist_svg("scheduling delay", sch ? p.sched.hist_ns : std::vector<uint64_t>{}, sch ? m.system.sched.hist_ns : std::vector<uint64_t>{});
		o += hist_svg("syscall latency", sc ? p.syscall_total.hist_ns : std::vector<uint64_t>{}, sc ? m.system.syscall_total.hist_ns : std::vector<uint64_t>{});
	}
	if (chosen.size() < m.processes.size()) {
		o += "<h2>All processes</h2><table><tr><th>pid</th><th>comm</th><th>parent</th><th>ended</th><th>lifetime</th><th>CPU</th></tr>";
		for (auto &p : m.processes)
			o += "<tr><td>" + std::to_string(p.pid) + "</td><td>" + esc(p.comm) + "</td><td>" + std::to_string(p.ppid) +
			     "</td><td>" + esc(how_ended(p)) + "</td><td>" + dur(p.lifetime_ns) + "</td><td>" + dur(p.cpu_ns) + "</td></tr>";
		o += "</table>";
	}
	o += cgroups_html(m);
	o += stacks_html(m);
	if (!m.lost.empty()) {
		o += "<h2>Losses</h2><table>";
		for (auto &[k, n] : m.lost)
			o += "<tr><th>" + esc(k) + "</th><td>" + std::to_string(n) + "</td></tr>";
		o += "</table>";
	}
	return o + "</body></html>\n";
}

} // namespace procimage::report
