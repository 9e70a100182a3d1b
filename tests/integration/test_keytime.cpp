// SPDX-License-Identifier: Apache-2.0
// keytime end to end: the procimage binary traces the demo workload ("-- CMD" mode) and every
// key time point the workload reports about itself must be in the JSON lines, once, with the
// right ids, codes and order.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <fstream>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <csignal>
#include <thread>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

using nlohmann::json;
namespace t = procimage::test;

namespace {

std::vector<json> select(const std::vector<json> &recs, const std::string &event,
			 const std::function<bool(const json &)> &pred = nullptr)
{
	return t::select_records(recs, "keytime", event, pred);
}

json one(const std::vector<json> &v, const std::string &what)
{
	INFO(what);
	REQUIRE(v.size() == 1);
	return v[0];
}

} // namespace

TEST_CASE("keytime: the whole life of the demo workload, from -- CMD")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	auto r = t::run({t::procimage_bin(), "-q", "-k", "-o", "jsonl:" + d.file("out.jsonl"), "--",
			 t::build_dir() + "/procimage-demo"},
			{{"PROCIMAGE_DEMO_LOG", d.file("demo.log")}});
	INFO(r.err);
	REQUIRE(r.status == 3); // the demo's own exit status, passed on
	auto truth = t::read_kv(d.file("demo.log"));
	REQUIRE(truth.count("exit_status"));
	auto recs = t::read_jsonl(d.file("out.jsonl"));
	const long pid = truth["pid"];

	// every record belongs to the demo or one of its descendants, never to anything else
	std::set<long> family = {pid, truth["fork_child"], truth["vfork_child"], truth["killed_child"],
				 truth["group_child"]};
	for (const auto &rec : recs) {
		if (rec["probe"] != "keytime")
			continue;
		INFO(rec.dump());
		CHECK(family.count(rec["pid"].get<long>()));
		// events, not periodic rows: the process they are about, identified by its start
		CHECK(rec["pid_start_ns"].get<uint64_t>() > 0);
		CHECK_FALSE(rec.contains("scope"));
		CHECK_FALSE(rec.contains("window"));
	}

	// birth: the exec of the demo itself, from before its first instruction
	auto execs = select(recs, "exec", [&](const json &e) { return e["pid"] == pid && e["ret"] == 0; });
	const json &birth = one(execs, "the demo's successful exec");
	CHECK(birth["filename"] == t::build_dir() + "/procimage-demo");
	CHECK(birth["argv"] == json::array({t::build_dir() + "/procimage-demo"}));
	CHECK(birth["comm"] == "procimage-demo");
	const uint64_t start = birth["pid_start_ns"];

	// 1. fork, child exits 7
	const json &fork = one(select(recs, "fork", [&](const json &e) { return e["child_pid"] == truth["fork_child"]; }),
			       "fork record");
	CHECK(fork["pid"] == pid);
	CHECK(fork["tid"] == pid);
	CHECK(fork["child_tid"] == truth["fork_child"]);
	const json &fork_exit = one(select(recs, "exit", [&](const json &e) { return e["tid"] == truth["fork_child"]; }),
				    "fork child's exit");
	CHECK(fork_exit["exit_code"] == 7);
	CHECK(fork_exit["signal"] == 0);
	CHECK(fork_exit["group_dead"] == true);
	CHECK(fork_exit["created_by"] == "fork");
	CHECK(fork_exit["ppid"] == pid);
	CHECK(fork_exit["ts_ns"] > fork["ts_ns"]);

	// 2. vfork + exec of /bin/true, the parent resumes at the exec
	const json &vfork = one(select(recs, "vfork", [&](const json &e) { return e["child_pid"] == truth["vfork_child"]; }),
				"vfork record");
	CHECK(vfork["pid"] == pid);
	CHECK((vfork["clone_flags"].get<uint64_t>() & 0x4000) != 0); // CLONE_VFORK
	const json &vexec = one(select(recs, "exec", [&](const json &e) { return e["pid"] == truth["vfork_child"]; }),
				"vfork child's exec");
	CHECK(vexec["filename"] == "/bin/true");
	CHECK(vexec["argv"] == json::parse(R"(["/bin/true", "demo-arg"])"));
	CHECK(vexec["ret"] == 0);
	CHECK(vexec["old_comm"] == "procimage-demo");
	const json &vdone = one(select(recs, "vfork_done", [&](const json &e) { return e["child_pid"] == truth["vfork_child"]; }),
				"vfork_done record");
	CHECK(vdone["pid"] == pid); // the parent's record: its suspension ended
	CHECK(vdone["tid"] == pid);
	CHECK(vdone["child_tid"] == truth["vfork_child"]);
	CHECK(vdone["by"] == "exec");
	CHECK(vdone["suspended_ns"].get<uint64_t>() > 0);
	CHECK(vdone["suspended_ns"].get<uint64_t>() < 1000000000ULL);
	const json &vexit = one(select(recs, "exit", [&](const json &e) { return e["tid"] == truth["vfork_child"]; }),
				"vfork child's exit");
	CHECK(vexit["exit_code"] == 0);
	CHECK(vexit["created_by"] == "vfork");
	CHECK(vexit["comm"] == "true");

	// 3. the failed exec, with its errno
	const json &bad = one(select(recs, "exec", [&](const json &e) { return e["ret"] != 0 && e["pid"] == pid; }),
			      "failed exec");
	CHECK(bad["filename"] == "/nonexistent/procimage-missing");
	CHECK(bad["ret"] == -truth["failed_exec_errno"]);
	CHECK(bad["argv"] == json::parse(R"(["/nonexistent/procimage-missing", "x"])"));

	// 4. two threads, born and ended
	for (const char *key : {"thread1_tid", "thread2_tid"}) {
		INFO(key);
		const long tid = truth[key];
		const json &born = one(select(recs, "thread", [&](const json &e) { return e["child_tid"] == tid; }), "thread");
		CHECK(born["child_pid"] == pid);
		CHECK(born["pid"] == pid);
		CHECK((born["clone_flags"].get<uint64_t>() & 0x10000) != 0); // CLONE_THREAD
		const json &end = one(select(recs, "exit", [&](const json &e) { return e["tid"] == tid; }), "thread exit");
		CHECK(end["pid"] == pid);
		CHECK(end["group_dead"] == false);
		CHECK(end["created_by"] == "thread");
		CHECK(end["exit_code"] == 0);
		// each thread sleeps 20 ms: its lifetime is at least that, and well under a second
		CHECK(end["thread_lifetime_ns"].get<uint64_t>() >= 20000000ULL);
		CHECK(end["thread_lifetime_ns"].get<uint64_t>() < 1000000000ULL);
		CHECK(end["ts_ns"] > born["ts_ns"]);
	}

	// 5. the child killed by SIGKILL
	const json &killed = one(select(recs, "exit", [&](const json &e) { return e["tid"] == truth["killed_child"]; }),
				 "killed child's exit");
	CHECK(killed["signal"] == SIGKILL);
	CHECK(killed["exit_code"] == 0);
	CHECK(truth["killed_child_status"] == 128 + SIGKILL);

	// 6. exit_group from a two-thread child: both threads end with status 5, one is the last
	auto gexits = select(recs, "exit", [&](const json &e) { return e["pid"] == truth["group_child"]; });
	REQUIRE(gexits.size() == 2);
	std::set<long> gtids;
	int last = 0;
	for (const auto &e : gexits) {
		gtids.insert(e["tid"].get<long>());
		CHECK(e["exit_code"] == 5);
		CHECK(e["signal"] == 0);
		last += e["group_dead"].get<bool>() ? 1 : 0;
	}
	CHECK(gtids == std::set<long>{truth["group_child"], truth["group_thread_tid"]});
	CHECK(last == 1);

	// 7. the demo's own end: status 3, its lifetime, last of its records
	const json &end = one(select(recs, "exit", [&](const json &e) { return e["tid"] == pid; }), "demo exit");
	CHECK(end["exit_code"] == 3);
	CHECK(end["group_dead"] == true);
	CHECK(end["pid_start_ns"] == start);
	CHECK(end["process_lifetime_ns"].get<uint64_t>() > 30000000ULL); // threads 20 ms + kill wait 10 ms
	for (const auto &rec : recs)
		if (rec["probe"] == "keytime" && rec["pid"] == pid)
			CHECK(rec["ts_ns"] <= end["ts_ns"]);

	// no duplicates: each (event, tid, child, filename, ret) appears once
	std::set<std::string> seen;
	for (const auto &rec : recs) {
		if (rec["probe"] != "keytime")
			continue;
		std::string key = rec["event"].get<std::string>() + "/" + std::to_string(rec["tid"].get<long>()) + "/" +
				  rec.value("child_tid", json(0)).dump() + "/" + rec.value("filename", "") + "/" +
				  rec.value("ret", json(0)).dump();
		INFO(key);
		CHECK(seen.insert(key).second);
	}

	// nothing lost, and the summary says so
	CHECK(std::none_of(recs.begin(), recs.end(), [](const json &e) { return e["event"] == "lost"; }));
	auto summary = std::find_if(recs.begin(), recs.end(), [](const json &e) { return e["event"] == "summary"; });
	REQUIRE(summary != recs.end());
	CHECK((*summary)["source"] == "keytime");
	CHECK((*summary)["lost_total"] == 0);
	CHECK((*summary)["errors"] == 0);
}

TEST_CASE("keytime: on/off-CPU intervals agree with the kernel's own switch counts")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	// 50 sleeps of 2 ms: at least 50 voluntary switches, each an off-CPU "sleeping" interval
	auto r = t::run({t::procimage_bin(), "-q", "-k", "--cpu", "-o", "jsonl:" + d.file("out.jsonl"), "--",
			 t::build_dir() + "/procimage-workload", "sleeps", "50", "2"});
	INFO(r.err);
	REQUIRE(r.status == 0);
	std::istringstream out(r.out);
	long pid = 0, vol = 0, invol = 0;
	long long read_at = 0; // wall-clock ns just before the workload read its counts
	out >> pid >> vol >> invol >> read_at;
	REQUIRE(pid > 0);
	REQUIRE(read_at > 0);
	auto recs = t::read_jsonl(d.file("out.jsonl"));
	auto offs = select(recs, "offcpu", [&](const json &e) { return e["tid"] == pid; });
	size_t sleeping = 0, preempted = 0, voluntary = 0;
	size_t preempted_before = 0, voluntary_before = 0; // of the intervals begun before the read
	uint64_t off_ns = 0;
	for (const auto &e : offs) {
		sleeping += e["reason"] == "sleeping";
		preempted += e["reason"] == "preempted";
		voluntary += e["reason"] != "preempted";
		off_ns += e["dur_ns"].get<uint64_t>();
		// 1 ms of margin for the two clocks' offsets (procimage turns boot time into wall time
		// once, at its start)
		long long began = e["ts_ns"].get<long long>() - e["dur_ns"].get<long long>();
		if (began < read_at - 1000000) {
			preempted_before += e["reason"] == "preempted";
			voluntary_before += e["reason"] != "preempted";
		}
	}
	// Each 2 ms sleep takes the thread off CPU: normally as one "sleeping" interval; on a
	// loaded machine the thread may be preempted between arming the timer and calling
	// schedule(), and if the timer fires meanwhile that sleep is a "preempted" interval. On a
	// virtual machine a vCPU stalled by its host for 2 ms can even let the timer fire before
	// schedule() with no switch at all: allow 10% of the sleeps that.
	CHECK(sleeping + preempted >= 45);
	CHECK(sleeping >= 25);
	// the intervals add up to about the 100 ms slept (less the part of each sleep before the
	// switch-out, and the stalled sleeps above)
	CHECK(off_ns >= 85000000ULL);
	// never more intervals than the kernel counted switches (tracing may start a little
	// after the task's first switches, never before), counting those that began before the
	// workload read its counts (it may be preempted while it prints them and exits)
	INFO("intervals: " << voluntary << " voluntary, " << preempted << " preempted; before the read: "
			   << voluntary_before << ", " << preempted_before << "; the kernel's: " << vol << ", " << invol);
	CHECK(voluntary_before <= static_cast<size_t>(vol));
	CHECK(preempted_before <= static_cast<size_t>(invol));
	CHECK(voluntary_before + preempted_before >= 45); // the sleeps are among them (see above)
	auto oncpu = select(recs, "oncpu", [&](const json &e) { return e["tid"] == pid; });
	CHECK(oncpu.size() >= 50);
}

TEST_CASE("keytime: -P targets one running process and nothing else")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	// Two identical shells wait on their FIFOs; only the first is targeted.
	REQUIRE(t::sh("mkfifo " + d.file("a") + " " + d.file("b")).status == 0);
	auto spawn = [&](const std::string &fifo) {
		pid_t p = fork();
		if (p == 0) {
			execl("/bin/sh", "sh", "-c", ("read x < " + fifo + "; /bin/true; exit 4").c_str(), (char *)nullptr);
			_exit(127);
		}
		return p;
	};
	pid_t target = spawn(d.file("a"));
	pid_t decoy = spawn(d.file("b"));
	pid_t tool = fork();
	if (tool == 0) {
		int fd = open(d.file("err").c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
		dup2(fd, 2);
		execl(t::procimage_bin().c_str(), "procimage", "-k", "-P", std::to_string(target).c_str(), "-o",
		      ("jsonl:" + d.file("out.jsonl")).c_str(), (char *)nullptr);
		_exit(127);
	}
	// wait until the probe is attached
	for (int i = 0; i < 200 && t::read_file(d.file("err")).find("collecting for") == std::string::npos; i++)
		std::this_thread::sleep_for(std::chrono::milliseconds(25));
	REQUIRE_THAT(t::read_file(d.file("err")), Catch::Contains("collecting for process " + std::to_string(target)));
	REQUIRE(t::sh("echo go > " + d.file("a") + "; echo go > " + d.file("b")).status == 0);
	int st = 0;
	waitpid(target, &st, 0);
	CHECK(WEXITSTATUS(st) == 4);
	waitpid(decoy, &st, 0);
	kill(tool, SIGINT); // (it drains every record the kernel holds before it exits)
	waitpid(tool, &st, 0);
	CHECK(WIFEXITED(st));
	CHECK(WEXITSTATUS(st) == 0);

	auto recs = t::read_jsonl(d.file("out.jsonl"));
	size_t keytime = 0;
	for (const auto &rec : recs) {
		if (rec["probe"] != "keytime")
			continue;
		keytime++;
		INFO(rec.dump());
		CHECK(rec["pid"] == target); // not the decoy, not the target's children (not followed)
	}
	CHECK(keytime >= 2);
	// the shell starts /bin/true with fork or vfork, whichever it uses
	auto forks = select(recs, "fork");
	auto vforks = select(recs, "vfork");
	forks.insert(forks.end(), vforks.begin(), vforks.end());
	REQUIRE(forks.size() == 1);
	CHECK(forks[0]["pid"] == target);
	const json &end = one(select(recs, "exit"), "target exit");
	CHECK(end["tid"] == target);
	CHECK(end["exit_code"] == 4);
	// flushed on SIGINT: the summary is there
	CHECK(std::any_of(recs.begin(), recs.end(), [](const json &e) { return e["event"] == "summary"; }));
}

TEST_CASE("keytime: --stacks symbolizes the kernel stack where the thread went off CPU")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	auto r = t::run({t::procimage_bin(), "-q", "-k", "--cpu", "--stacks", "-o", "jsonl:" + d.file("out.jsonl"), "--",
			 t::build_dir() + "/procimage-workload", "sleeps", "5", "3"});
	INFO(r.err);
	REQUIRE(r.status == 0);
	long pid = std::stol(r.out.substr(0, r.out.find(' ')));
	// the workload's sleeps: after its exec (before it, the same pid waited in procimage's
	// start-up pipe under procimage's name, for as long as a loaded machine makes it)
	auto sleeps = select(t::read_jsonl(d.file("out.jsonl")), "offcpu", [&](const json &e) {
		return e["tid"] == pid && e["comm"] == "procimage-workl" && e["reason"] == "sleeping" &&
		       e["dur_ns"].get<uint64_t>() >= 3000000ULL;
	});
	REQUIRE(sleeps.size() >= 3); // of 5 (a loaded machine may turn a sleep into a preemption)
	for (const auto &s : sleeps) {
		INFO(s.dump());
		REQUIRE(s["kstack"].is_array());
		REQUIRE(!s["kstack"].empty());
		// starts in the scheduler, not in procimage's own BPF program, and passes through the
		// nanosleep path the workload took
		CHECK_THAT(s["kstack"][0].get<std::string>(), Catch::Contains("schedule"));
		CHECK_THAT(s["kstack"].dump(), Catch::Contains("nanosleep"));
	}
}

TEST_CASE("keytime: --stacks symbolizes the user stack where the thread went off CPU")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	// sleeps of 50 ms: the process still lives when its first stack is decoded (its mappings
	// are read then)
	auto r = t::run({t::procimage_bin(), "-q", "-k", "--cpu", "--stacks", "-o", "jsonl:" + d.file("out.jsonl"), "--",
			 t::build_dir() + "/procimage-workload", "sleeps", "4", "50"});
	INFO(r.err);
	REQUIRE(r.status == 0);
	long pid = std::stol(r.out.substr(0, r.out.find(' ')));
	auto sleeps = select(t::read_jsonl(d.file("out.jsonl")), "offcpu", [&](const json &e) {
		return e["tid"] == pid && e["reason"] == "sleeping" && e["dur_ns"].get<uint64_t>() >= 40000000ULL;
	});
	REQUIRE(sleeps.size() >= 3);
	for (const auto &s : sleeps) {
		INFO(s.dump());
		REQUIRE(s["ustack"].is_array());
		REQUIRE(!s["ustack"].empty());
		// the innermost user frame is libc's sleep call that entered the kernel
		CHECK_THAT(s["ustack"][0].get<std::string>(), Catch::Contains("nanosleep"));
	}
}

TEST_CASE("keytime: a failed exec in a freshly forked child names the path it tried")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	auto r = t::run({t::procimage_bin(), "-q", "-k", "-o", "jsonl:" + d.file("out.jsonl"), "--",
			 t::build_dir() + "/wl-exec-fail"});
	INFO(r.err);
	REQUIRE(r.status == 0); // the child's execve failed with ENOENT
	long child = 0;
	REQUIRE(std::sscanf(r.out.c_str(), "child=%ld", &child) == 1);
	auto recs = t::read_jsonl(d.file("out.jsonl"));
	auto e = one(select(recs, "exec", [&](const json &x) { return x["pid"] == child; }), "the child's exec");
	INFO(e.dump());
	CHECK(e["ret"] == -ENOENT);
	CHECK(e["filename"] == "/nonexistent/procimage-untouched-literal");
	CHECK(e["unreadable"] == false);
	CHECK(e["argv"] == json::array({"/nonexistent/procimage-untouched-literal", "first-arg"}));
}

namespace {
// The off-CPU reasons of the contend workload's thread, and its own switch counts.
struct contend_result {
	long tid = 0, vol = 0, invol = 0;
	std::map<std::string, size_t> reasons;
	size_t offcpu = 0;
};
contend_result run_contend(const t::temp_dir &d, const char *mode)
{
	auto r = t::run({t::procimage_bin(), "-q", "-k", "--cpu", "-o", "jsonl:" + d.file("out.jsonl"), "--",
			 t::build_dir() + "/procimage-workload", "contend", "1500", mode});
	INFO(r.err);
	REQUIRE(r.status == 0);
	contend_result c;
	std::istringstream out(r.out);
	out >> c.tid >> c.vol >> c.invol;
	REQUIRE(c.tid > 0);
	for (const auto &e : select(t::read_jsonl(d.file("out.jsonl")), "offcpu",
				    [&](const json &x) { return x["tid"] == c.tid; })) {
		c.reasons[e["reason"].get<std::string>()]++;
		c.offcpu++;
	}
	return c;
}
} // namespace

TEST_CASE("keytime: a preempted busy thread goes off CPU as preempted, as often as the kernel counts")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	auto c = run_contend(d, "spin");
	INFO("tid " << c.tid << ": nonvoluntary_ctxt_switches " << c.invol << ", voluntary " << c.vol << ", offcpu "
		    << c.offcpu << ", preempted " << c.reasons["preempted"] << ", yield " << c.reasons["yield"]);
	// 1.5 s beside a spinner on one CPU: preempted every few ms
	REQUIRE(c.invol >= 50);
	CHECK(c.reasons["yield"] == 0);
	CHECK(c.reasons["preempted"] * 10 >= c.offcpu * 9);
	// every involuntary switch the kernel counted, within 5% (the last ones may fall between
	// the thread's read of its counters and its end)
	CHECK(std::labs(static_cast<long>(c.reasons["preempted"]) - c.invol) * 20 <= c.invol);
}

TEST_CASE("keytime: a thread in a sched_yield loop goes off CPU as yield")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	auto c = run_contend(d, "yield");
	INFO("tid " << c.tid << ": nonvoluntary_ctxt_switches " << c.invol << ", offcpu " << c.offcpu << ", yield "
		    << c.reasons["yield"] << ", preempted " << c.reasons["preempted"]);
	REQUIRE(c.offcpu >= 50);
	// mostly yields: the spinner's slice ends now and then while the thread runs user code
	CHECK(c.reasons["yield"] * 10 >= c.offcpu * 8);
}

TEST_CASE("keytime: a thread outliving 70,000 others still exits with created_by thread")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	// 140,000 records in about a second: a ring buffer that holds them all (64 MiB), so that a
	// slower host (an instrumented build) loses none of what this test looks at
	auto r = t::run({t::procimage_bin(), "-q", "-k", "--set", "keytime.ringbuf_kb=65536", "-o",
			 "jsonl:" + d.file("out.jsonl"), "--", t::build_dir() + "/wl-births", "70000"});
	INFO(r.err);
	REQUIRE(r.status == 0);
	auto kv = r.out.find("long_tid=");
	REQUIRE(kv != std::string::npos);
	const long long long_tid = std::stoll(r.out.substr(kv + 9));
	size_t thread_exits = 0, lost = 0;
	std::string created_by;
	std::ifstream in(d.file("out.jsonl"));
	for (std::string line; std::getline(in, line);) {
		if (line.find("\"event\":\"exit\"") == std::string::npos && line.find("\"event\":\"lost\"") == std::string::npos)
			continue;
		json e = json::parse(line);
		lost += e["event"] == "lost";
		if (e["event"] != "exit")
			continue;
		if (e["tid"] == long_tid)
			created_by = e["created_by"];
		else if (e.value("created_by", "") == "thread")
			thread_exits++;
	}
	CHECK(lost == 0);
	CHECK(thread_exits == 70000); // every short thread's creator known too
	CHECK(created_by == "thread");
}
