// SPDX-License-Identifier: Apache-2.0
//
// The report model on hand-made record streams: ordering, pid reuse, missing probes, losses,
// and the structure of the Chrome trace.
#include "report/model.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <map>
#include <set>
#include <sstream>

using namespace procimage::report;
using json = nlohmann::json;

namespace {

const uint64_t T0 = 1'000'000'000'000;

json rec(uint64_t ms, const char *probe, const char *event, uint32_t pid, uint32_t tid, uint64_t start, json extra = {})
{
	json r = {{"ts_ns", T0 + ms * 1'000'000}, {"probe", probe}, {"event", event}, {"pid", pid}, {"tid", tid},
		  {"comm", "p" + std::to_string(pid)}, {"pid_start_ns", start}};
	for (auto &[k, v] : extra.items())
		r[k] = v;
	return r;
}

model build(const std::vector<json> &rs)
{
	std::stringstream s;
	for (auto &r : rs)
		s << r.dump() << "\n";
	return read_jsonl(s);
}

const process_model *find(const model &m, uint32_t pid, uint64_t start)
{
	for (auto &p : m.processes)
		if (p.pid == pid && p.start_ns == start)
			return &p;
	return nullptr;
}

} // namespace

TEST_CASE("report model: fork, exec, exit and the life tree", "[report]")
{
	auto m = build({
		rec(0, "keytime", "fork", 100, 100, 50, {{"child_pid", 101}, {"child_tid", 101}, {"child_comm", "p100"}}),
		rec(1, "keytime", "exec", 101, 101, 60, {{"filename", "/bin/nope"}, {"ret", -2}}),
		rec(2, "keytime", "exec", 101, 101, 60, {{"filename", "/bin/true"}, {"ret", 0}}),
		rec(3, "keytime", "exit", 101, 101, 60,
		    {{"exit_code", 0}, {"signal", 9}, {"core_dumped", true}, {"group_dead", true}, {"ppid", 100},
		     {"process_lifetime_ns", 3'000'000}, {"created_by", "fork"}}),
		rec(5, "keytime", "exit", 100, 100, 50, {{"exit_code", 3}, {"signal", 0}, {"group_dead", true}}),
	});
	REQUIRE(m.processes.size() == 2);
	auto *parent = find(m, 100, 50);
	auto *child = find(m, 101, 60);
	REQUIRE(parent);
	REQUIRE(child);
	REQUIRE(child->parent);
	CHECK(m.processes[*child->parent].pid == 100);
	CHECK(child->created_by == "fork");
	CHECK(child->execs == std::vector<std::string>{"/bin/true"});
	CHECK(child->failed_execs.size() == 1);
	REQUIRE(child->ended);
	CHECK(*child->ended->signal == 9);
	CHECK(child->ended->core);
	CHECK(*child->lifetime_ns == 3'000'000);
	CHECK(*parent->ended->code == 3);
	auto text = render_text(m);
	CHECK(text.find("killed by signal 9, core dumped") != std::string::npos);
	CHECK(text.find("exit code 3") != std::string::npos);
}

TEST_CASE("report model: a reused pid is a new process", "[report]")
{
	auto m = build({
		rec(0, "keytime", "exit", 200, 200, 10, {{"exit_code", 1}, {"group_dead", true}}),
		rec(1, "keytime", "exec", 200, 200, 20, {{"filename", "/bin/b"}, {"ret", 0}}),
		rec(2, "keytime", "exit", 200, 200, 20, {{"exit_code", 2}, {"group_dead", true}}),
	});
	REQUIRE(m.processes.size() == 2);
	CHECK(*find(m, 200, 10)->ended->code == 1);
	CHECK(*find(m, 200, 20)->ended->code == 2);
	CHECK(find(m, 200, 20)->execs.size() == 1);
	CHECK(find(m, 200, 10)->execs.empty());
	// the chrome trace keeps them on two tracks
	auto t = json::parse(render_chrome_trace(m));
	std::set<uint64_t> pids;
	for (auto &e : t["traceEvents"])
		if (e["name"] == "process_name")
			pids.insert(e["pid"].get<uint64_t>());
	CHECK(pids.size() == 2);
}

TEST_CASE("report model: records out of order start the run at the earliest", "[report]")
{
	auto m = build({
		rec(10, "keytime", "oncpu", 300, 300, 5, {{"dur_ns", 2'000'000}}),
		rec(4, "keytime", "offcpu", 300, 300, 5, {{"dur_ns", 1'000'000}, {"reason", "sleeping"}}),
	});
	CHECK(m.t0_ns == T0 + 3'000'000); // the off-CPU interval began 1 ms before its record
	CHECK(m.duration_ns() == 7'000'000);
	auto &t = m.processes.at(0).threads.at(300);
	REQUIRE(t.slices.size() == 2);
	CHECK(t.slices[0].start_ns == 0); // sorted
	CHECK(t.slices[0].name == "sleeping");
	CHECK(t.slices[1].start_ns == 5'000'000);
	CHECK(*t.oncpu_ns == 2'000'000);
	CHECK(t.offcpu_ns.at("sleeping") == 1'000'000);
}

TEST_CASE("report model: what was not collected is not 0", "[report]")
{
	auto m = build({rec(0, "keytime", "exit", 400, 400, 1, {{"exit_code", 0}, {"group_dead", true}})});
	CHECK_FALSE(m.has("resource"));
	auto j = render_json(m);
	auto &p = j["processes"][0];
	CHECK(p["user_ns"].is_null());
	CHECK(p["rss_peak_bytes"].is_null());
	CHECK(p["sched"].is_null());
	CHECK(p["syscalls"].is_null());
	CHECK(p["locks"].is_null());
	auto text = render_text(m);
	CHECK(text.find("CPU user / system      not collected") != std::string::npos);
	CHECK(text.find("scheduling delay       not collected") != std::string::npos);
	CHECK(text.find("CPU share              not collected") != std::string::npos);
	CHECK(text.find("syscalls               not collected") != std::string::npos);
	CHECK(render_html(m).find("not collected") != std::string::npos);
}

TEST_CASE("report model: collected figures, system beside the process, and losses", "[report]")
{
	auto m = build({
		rec(0, "resource", "process", 500, 500, 7,
		    {{"user_ns", 3'000'000}, {"system_ns", 1'000'000}, {"cpu_total_ns", 4'000'000}, {"cpu_ns", 4'000'000},
		     {"interval_ns", 8'000'000}, {"cpu_pct", 50.0}, {"rss_bytes", 4096}, {"read_total_bytes", 10},
		     {"write_total_bytes", 20}}),
		rec(8, "resource", "process", 500, 500, 7, {{"rss_bytes", 1024}, {"cpu_total_ns", 5'000'000}}),
		rec(7, "schedule", "process", 500, 0, 7,
		    {{"scope", "process"}, {"window", "interval"}, {"count", 1}, {"total_ns", 50}, {"max_ns", 50}}),
		rec(8, "schedule", "process", 500, 0, 7,
		    {{"scope", "process"}, {"window", "total"}, {"count", 4}, {"total_ns", 400}, {"max_ns", 250}, {"hist_ns", {0, 1, 3}}}),
		rec(8, "schedule", "system", 0, 0, 0,
		    {{"scope", "system"}, {"window", "total"}, {"count", 10}, {"total_ns", 2000}, {"max_ns", 900}}),
		rec(8, "syscall", "syscall", 500, 0, 7,
		    {{"scope", "process"}, {"window", "interval"}, {"syscall", "read"}, {"count", 1}, {"errors", 0}, {"total_ns", 5}}),
		rec(8, "syscall", "syscall", 500, 0, 7,
		    {{"scope", "process"}, {"window", "total"}, {"syscall", "read"}, {"count", 3}, {"errors", 1}, {"total_ns", 30}, {"max_ns", 20}}),
		rec(8, "syscall", "totals", 500, 0, 7,
		    {{"scope", "process"}, {"window", "interval"}, {"count", 1}, {"errors", 0}, {"total_ns", 5}}),
		rec(8, "syscall", "totals", 500, 0, 7,
		    {{"scope", "process"}, {"window", "total"}, {"count", 3}, {"errors", 1}, {"total_ns", 30}}),
		rec(8, "syscall", "totals", 0, 0, 0, {{"scope", "system"}, {"window", "interval"}, {"count", 9}}),
		rec(8, "syscall", "totals", 0, 0, 0, {{"scope", "system"}, {"window", "total"}, {"count", 99}}),
		rec(8, "lock", "process", 500, 0, 0,
		    {{"window", "interval"}, {"lock_type", "mutex"}, {"acquisitions", 1}, {"hold_total_ns", 5}}),
		rec(9, "lock", "process", 500, 0, 0,
		    {{"window", "total"}, {"lock_type", "mutex"}, {"acquisitions", 7}, {"contended", 2}, {"hold_total_ns", 700}}),
		{{"ts_ns", T0 + 9'000'000}, {"probe", "procimage"}, {"event", "summary"}, {"pid", 1}, {"source", "syscall"}, {"lost_total", 12}},
	});
	REQUIRE(m.processes.size() == 1);
	auto &p = m.processes[0];
	CHECK(*p.user_ns == 3'000'000);
	CHECK(*p.cpu_ns == 5'000'000);
	CHECK(*p.rss_peak_bytes == 4096);
	CHECK(*p.read_bytes == 10);
	CHECK(*p.sched.count == 4);
	CHECK(*p.sched.mean_ns() == 100.0);
	CHECK(*m.system.sched.count == 10);
	CHECK(*p.syscalls.at("read").count == 3); // the total row, not the interval's
	CHECK(*p.syscalls.at("read").sum_ns == 30);
	CHECK(*p.syscall_total.errors == 1);
	CHECK(*m.system.syscall_total.count == 99);
	CHECK(*p.locks.at("mutex").acquisitions == 7); // the total, not the interval
	CHECK(*p.locks.at("mutex").contended == 2);
	CHECK(m.lost.at("syscall") == 12);
	auto text = render_text(m);
	CHECK(text.find("syscall                12 records lost") != std::string::npos);
	CHECK(text.find("system: mean 200 ns") != std::string::npos);
}

TEST_CASE("report model: unreadable lines are counted, not fatal", "[report]")
{
	std::stringstream s;
	s << rec(0, "keytime", "exit", 1, 1, 1, {{"group_dead", true}}).dump() << "\n{not json\n\n[1]\n";
	auto m = read_jsonl(s);
	CHECK(m.records == 1);
	CHECK(m.unreadable == 2);
}

TEST_CASE("report chrome trace: named tracks, non-negative and non-overlapping slices", "[report]")
{
	auto m = build({
		rec(0, "keytime", "fork", 600, 600, 1, {{"child_pid", 601}, {"child_tid", 601}}),
		rec(0, "keytime", "thread", 600, 600, 1, {{"child_pid", 600}, {"child_tid", 602}}),
		rec(5, "keytime", "oncpu", 600, 600, 1, {{"dur_ns", 5'000'000}}),
		rec(6, "keytime", "oncpu", 600, 600, 1, {{"dur_ns", 3'000'000}}), // overlaps the one before
		rec(7, "keytime", "offcpu", 601, 601, 2, {{"dur_ns", 1'000'000}, {"reason", "io"}}),
		rec(8, "keytime", "oncpu", 600, 602, 1, {{"dur_ns", 1'000'000}}),
		rec(9, "syscall", "sequence", 600, 602, 1, {{"syscalls", {"read", "write"}}, {"lat_ns", {1000, 2000}}}),
	});
	auto t = json::parse(render_chrome_trace(m));
	std::set<std::pair<uint64_t, uint64_t>> named_threads;
	std::set<uint64_t> named_procs;
	std::map<std::pair<uint64_t, uint64_t>, std::vector<std::pair<long long, long long>>> slices;
	bool flow = false;
	for (auto &e : t["traceEvents"]) {
		auto ph = e["ph"].get<std::string>();
		if (ph == "M" && e["name"] == "process_name")
			named_procs.insert(e["pid"].get<uint64_t>());
		else if (ph == "M" && e["name"] == "thread_name")
			named_threads.insert({e["pid"].get<uint64_t>(), e["tid"].get<uint64_t>()});
		else if (ph == "X") {
			CHECK(e["ts"].get<double>() >= 0);
			CHECK(e["dur"].get<double>() >= 0);
			slices[{e["pid"].get<uint64_t>(), e["tid"].get<uint64_t>()}].push_back(// the format's resolution is 1 ns (µs with 3 decimals): compare whole ns
				{std::llround(e["ts"].get<double>() * 1000),
				 std::llround((e["ts"].get<double>() + e["dur"].get<double>()) * 1000)});
		} else if (ph == "f")
			flow = true;
	}
	CHECK(named_procs == std::set<uint64_t>{600, 601});
	CHECK(flow);
	for (auto &[track, v] : slices) {
		CHECK(named_threads.count(track) == 1);
		std::sort(v.begin(), v.end());
		for (size_t i = 1; i < v.size(); i++)
			CHECK(v[i].first >= v[i - 1].second);
	}
	CHECK(slices.size() == 4); // 600, 601, 602 on-CPU, 602 syscalls
}

TEST_CASE("report model: a child's records that come before its fork record", "[report]")
{
	// ring buffers of two CPUs: the child's exec is read before the parent's fork
	auto m = build({
		rec(2, "keytime", "exec", 701, 701, 90, {{"filename", "/bin/x"}, {"ret", 0}}),
		rec(1, "keytime", "fork", 700, 700, 80, {{"child_pid", 701}, {"child_tid", 701}}),
		rec(3, "keytime", "exit", 701, 701, 90, {{"exit_code", 4}, {"group_dead", true}}),
	});
	REQUIRE(m.processes.size() == 2);
	auto *c = find(m, 701, 90);
	REQUIRE(c);
	REQUIRE(c->parent);
	CHECK(m.processes[*c->parent].pid == 700);
	CHECK(c->created_by == "fork");
	CHECK(*c->ended->code == 4);
	CHECK(c->execs.size() == 1);
}
