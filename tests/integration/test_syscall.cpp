// SPDX-License-Identifier: Apache-2.0
// syscall probe against real workloads: exact per-syscall counts and errors of a workload that
// knows what it called, the same counts from strace -c on the same program, the latency of a
// known sleep, the order and completeness of the sequence batches, calls reported in progress,
// and a target that is another process than the one making the calls.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

using nlohmann::json;
namespace t = procimage::test;

namespace {

std::vector<json> select(const std::vector<json> &recs, const std::string &event,
			 const std::function<bool(const json &)> &pred = nullptr)
{
	return t::select_records(recs, "syscall", event, pred);
}

struct counts {
	uint64_t calls = 0;
	uint64_t errors = 0;
	uint64_t max_ns = 0;
	uint64_t last_total = 0; // count of the last total row
};

// A row of the target (a thread's or a process's), as opposed to the system's.
bool is_target(const json &r) { return r["scope"] == "thread" || r["scope"] == "process"; }
bool in_scope(const json &r, const std::string &scope) { return scope == "target" ? is_target(r) : r["scope"] == scope; }

// Sum the interval rows of one scope ("target": thread or process rows; "system"), by syscall
// name, for the records pred accepts; note the count of the last total row.
std::map<std::string, counts> per_syscall(const std::vector<json> &recs, const std::string &scope,
					  const std::function<bool(const json &)> &pred)
{
	std::map<std::string, counts> m;
	for (const auto &r : select(recs, "syscall", [&](const json &r) { return in_scope(r, scope) && pred(r); })) {
		auto &c = m[r["syscall"].get<std::string>()];
		if (r["window"] == "interval") {
			c.calls += r["count"].get<uint64_t>();
			c.errors += r["errors"].get<uint64_t>();
			c.max_ns = std::max(c.max_ns, r["max_ns"].get<uint64_t>());
			continue;
		}
		REQUIRE(r["window"] == "total");
		c.last_total = r["count"].get<uint64_t>();
		// the histogram of a total row holds every call counted so far (the target's calls are
		// always timed; the system's only in the default "latency" mode)
		if (scope == "target") {
			uint64_t in_hist = 0;
			for (const auto &b : r["hist_ns"])
				in_hist += b.get<uint64_t>();
			CHECK(in_hist == c.last_total);
		}
	}
	return m;
}

struct call {
	std::string name;
	uint64_t ret;
	uint64_t err;
	uint64_t lat_ns;
};

// One thread's calls from its sequence records, in order; checks that the batches chain.
std::vector<call> sequence_of(const std::vector<json> &recs, long tid)
{
	auto batches = select(recs, "sequence", [&](const json &r) { return r["tid"] == tid; });
	std::sort(batches.begin(), batches.end(),
		  [](const json &a, const json &b) { return a["first"].get<uint64_t>() < b["first"].get<uint64_t>(); });
	std::vector<call> out;
	for (const auto &b : batches) {
		INFO(b.dump());
		CHECK(b["first"].get<uint64_t>() == out.size()); // no gap, no overlap
		size_t n = b["count"].get<size_t>();
		REQUIRE(b["syscalls"].size() == n);
		REQUIRE(b["ret"].size() == n);
		REQUIRE(b["errno"].size() == n);
		REQUIRE(b["lat_ns"].size() == n);
		for (size_t i = 0; i < n; i++)
			out.push_back({b["syscalls"][i].get<std::string>(), b["ret"][i].get<uint64_t>(),
				       b["errno"][i].get<uint64_t>(), b["lat_ns"][i].get<uint64_t>()});
	}
	return out;
}

// strace -c's table: syscall -> (calls, errors)
std::map<std::string, std::pair<uint64_t, uint64_t>> parse_strace_summary(const std::string &text)
{
	std::map<std::string, std::pair<uint64_t, uint64_t>> m;
	std::istringstream in(text);
	std::string line;
	while (std::getline(in, line)) {
		std::istringstream ls(line);
		std::vector<std::string> tok;
		for (std::string s; ls >> s;)
			tok.push_back(s);
		// % time, seconds, usecs/call, calls, [errors], syscall
		if (tok.size() < 5 || tok[0] == "%" || tok[0].rfind("---", 0) == 0 || tok.back() == "total")
			continue;
		uint64_t calls = std::stoull(tok[3]);
		uint64_t errors = tok.size() >= 6 ? std::stoull(tok[4]) : 0;
		m[tok.back()] = {calls, errors};
	}
	return m;
}

std::string write_pipeline(const t::temp_dir &d, const json &probe_cfg, const json &extra)
{
	json p = {{"version", 1},
		  {"probes", {{"syscall", probe_cfg}}},
		  {"sinks", {{"jsonl", {{"path", d.file("out.jsonl")}}}}}};
	for (const auto &[k, v] : extra.items())
		p[k] = v;
	t::write_file(d.file("pipeline.json"), p.dump());
	return d.file("pipeline.json");
}

// A child process of the test: waits for a byte on `go`, makes `n` getppid calls, then blocks
// reading `hold` until it is closed, and exits.
struct getppid_child {
	pid_t pid = -1;
	int go = -1, hold = -1;

	explicit getppid_child(int n)
	{
		int g[2], h[2];
		REQUIRE(pipe(g) == 0);
		REQUIRE(pipe(h) == 0);
		pid = fork();
		if (pid == 0) {
			close(g[1]);
			close(h[1]);
			char c;
			if (syscall(SYS_read, g[0], &c, 1) != 1)
				_exit(1);
			for (int i = 0; i < n; i++)
				syscall(SYS_getppid);
			syscall(SYS_read, h[0], &c, 1);
			_exit(0);
		}
		close(g[0]);
		close(h[0]);
		go = g[1];
		hold = h[1];
	}
	void start() { REQUIRE(write(go, "g", 1) == 1); }
	int finish()
	{
		close(go);
		close(hold);
		int st = 0;
		waitpid(pid, &st, 0);
		return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	}
};

// procimage in the background until SIGINT; ready once it says it is collecting.
struct background_tool {
	pid_t pid = -1;
	std::string err_path;

	background_tool(const std::vector<std::string> &argv, const std::string &err,
			const std::string &ready = "collecting for")
		: err_path(err)
	{
		pid = fork();
		if (pid == 0) {
			int fd = open(err.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
			dup2(fd, 2);
			int null = open("/dev/null", O_WRONLY);
			dup2(null, 1);
			std::vector<char *> args;
			for (const auto &a : argv)
				args.push_back(const_cast<char *>(a.c_str()));
			args.push_back(nullptr);
			execv(args[0], args.data());
			_exit(127);
		}
		for (int i = 0; i < 400 && t::read_file(err).find(ready) == std::string::npos; i++)
			std::this_thread::sleep_for(std::chrono::milliseconds(25));
		REQUIRE_THAT(t::read_file(err), Catch::Contains(ready));
	}
	int stop()
	{
		kill(pid, SIGINT);
		int st = 0;
		waitpid(pid, &st, 0);
		return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	}
};

} // namespace

TEST_CASE("syscall: exact counts, errors and latency of a known workload, and strace -c agrees")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	const std::string wl = t::build_dir() + "/wl-syscall";
	auto pipe = write_pipeline(d, {{"by", "thread"}, {"batch", 50}, {"system_rows", "all"}}, {{"command", {wl}}});
	auto r = t::run({t::procimage_bin(), "-q", "--pipeline", pipe}, {{"PROCIMAGE_WL_LOG", d.file("wl.log")}});
	INFO(r.err);
	REQUIRE(r.status == 0);
	auto truth = t::read_kv(d.file("wl.log"));
	REQUIRE(truth.count("worker_tid"));
	const long pid = truth["pid"], worker = truth["worker_tid"];
	REQUIRE(truth["bad_read_ret"] == 0);
	REQUIRE(truth["bad_write_ret"] == 0);
	REQUIRE(truth["bad_open_errno"] == ENOENT);
	auto recs = t::read_jsonl(d.file("out.jsonl"));

	// Only the workload's threads are in the target rows, under the name they have after the
	// exec (procimage's child may make a few calls under procimage's name before it).
	for (const auto &rec : select(recs, "syscall", [](const json &r) { return is_target(r); })) {
		INFO(rec.dump());
		CHECK(rec["pid"] == pid);
		CHECK(rec["comm"] == "wl-syscall");
		CHECK(rec["scope"] == "thread"); // "by": "thread"
		CHECK(rec["tid"] != 0);
		for (const auto *k : {"cum_count", "cum_total_ns", "cum_hist_ns"})
			CHECK_FALSE(rec.contains(k));
	}

	// 1. The worker thread: exactly what it did.
	auto w = per_syscall(recs, "target", [&](const json &r) { return r["tid"] == worker; });
	CHECK(w["getppid"].calls == static_cast<uint64_t>(truth["getppid"]));
	CHECK(w["getppid"].errors == 0);
	CHECK(w["read"].calls == static_cast<uint64_t>(truth["read"]));
	CHECK(w["read"].errors == 0);
	CHECK(w["write"].calls == static_cast<uint64_t>(truth["write"]));
	CHECK(w["write"].errors == 0);
	CHECK(w["openat"].calls == 2 + static_cast<uint64_t>(truth["bad_open"]));
	CHECK(w["openat"].errors == static_cast<uint64_t>(truth["bad_open"]));
	CHECK(w["close"].calls == 2);
	CHECK(w["nanosleep"].calls == 1);
	for (const auto &[name, c] : w) {
		INFO(name);
		CHECK(c.last_total == c.calls); // the last total row's count is the sum of the intervals
	}
	// The 100 ms sleep: its latency, within 5 ms, and within what the workload measured
	// around it with its own clock.
	const uint64_t sleep_ns = w["nanosleep"].max_ns;
	CHECK(sleep_ns >= 100000000ULL);
	CHECK(sleep_ns <= 105000000ULL);
	CHECK(sleep_ns <= static_cast<uint64_t>(truth["sleep_ns"]) + 100000ULL);

	// 2. The worker's sequence: every call, in order, with its result.
	auto seq = sequence_of(recs, worker);
	uint64_t worker_total = 0;
	for (const auto &[name, c] : w)
		worker_total += c.calls;
	CHECK(seq.size() == worker_total); // nothing lost between rows and sequences
	auto first = std::find_if(seq.begin(), seq.end(), [](const call &c) { return c.name == "getppid"; });
	REQUIRE(first != seq.end());
	size_t i = static_cast<size_t>(first - seq.begin());
	REQUIRE(i >= 2);
	REQUIRE(seq.size() >= i + 1000 + 256 + 512 + 5 + 3);
	CHECK(seq[i - 2].name == "openat");
	CHECK(seq[i - 1].name == "openat");
	CHECK(seq[i - 2].err == 0);
	CHECK(seq[i - 1].err == 0);
	auto expect_run = [&](const char *name, int n, uint64_t ret, uint64_t err) {
		for (int k = 0; k < n; k++, i++) {
			INFO(name << " #" << k << " at " << i);
			REQUIRE(seq[i].name == name);
			CHECK(seq[i].ret == ret);
			CHECK(seq[i].err == err);
		}
	};
	expect_run("getppid", 1000, static_cast<uint64_t>(truth["ppid"]), 0);
	expect_run("read", 256, static_cast<uint64_t>(truth["read_size"]), 0);
	expect_run("write", 512, static_cast<uint64_t>(truth["write_size"]), 0);
	expect_run("openat", 5, 0, ENOENT);
	REQUIRE(seq[i].name == "nanosleep");
	CHECK(seq[i].lat_ns == sleep_ns);
	CHECK(seq[i + 1].name == "close");
	CHECK(seq[i + 2].name == "close");
	// batches: full ones have 50 calls; the last one went out when the thread exited
	auto batches = select(recs, "sequence", [&](const json &r) { return r["tid"] == worker; });
	for (const auto &b : batches) {
		INFO(b.dump());
		if (b["reason"] == "full")
			CHECK(b["count"] == 50);
		else
			CHECK((b["reason"] == "interval" || b["reason"] == "exit"));
	}
	CHECK(std::count_if(batches.begin(), batches.end(), [](const json &b) { return b["reason"] == "exit"; }) <= 1);

	// 3. The totals of the worker: its top 3 by count.
	auto totals = select(recs, "totals", [&](const json &r) {
		return is_target(r) && r["tid"] == worker && r["window"] == "total";
	});
	REQUIRE(!totals.empty());
	CHECK(totals.back()["top"] == json::array({"getppid", "write", "read"}));
	CHECK(totals.back()["top_count"] == json::array({1000, 512, 256}));

	// 4. The system figures contain the workload's.
	auto sys = per_syscall(recs, "system", [](const json &) { return true; });
	CHECK(sys["getppid"].calls >= 1000);
	CHECK(sys["openat"].errors >= 5);
	CHECK(sys["nanosleep"].max_ns >= sleep_ns);
	for (const auto &s : select(recs, "syscall", [](const json &r) { return r["scope"] == "system"; })) {
		CHECK(s["pid"] == 0);
		CHECK(s["tid"] == 0);
		CHECK(s["comm"] == "");
		CHECK_FALSE(s.contains("pid_start_ns"));
	}

	// 5. strace -c on the same program counts the same calls, for every syscall. Our -- CMD
	// start may see a few calls of the command's process before it execs (procimage's forked
	// child waiting for its release): strace starts at the exec, so add them to its figures.
	auto all = per_syscall(recs, "target", [&](const json &r) { return r["pid"] == pid; });
	auto main_seq = sequence_of(recs, pid);
	std::map<std::string, std::pair<uint64_t, uint64_t>> before_exec;
	for (const auto &c : main_seq) {
		if (c.name == "execve" && c.err == 0)
			break;
		before_exec[c.name].first++;
		before_exec[c.name].second += c.err ? 1 : 0;
	}
	auto sr = t::run({"strace", "-f", "-c", "-o", d.file("strace.txt"), wl}, {{"PROCIMAGE_WL_LOG", d.file("wl2.log")}});
	INFO(sr.err);
	REQUIRE(sr.status == 0);
	auto st = parse_strace_summary(t::read_file(d.file("strace.txt")));
	INFO(t::read_file(d.file("strace.txt")));
	REQUIRE(st.count("getppid"));
	CHECK(st["getppid"].first == 1000);
	std::set<std::string> names;
	for (const auto &[n, _] : st)
		names.insert(n);
	for (const auto &[n, _] : all)
		names.insert(n);
	for (const auto &n : names) {
		INFO("syscall " << n);
		CHECK(all[n].calls == st[n].first + before_exec[n].first);
		CHECK(all[n].errors == st[n].second + before_exec[n].second);
	}

	// 6. Nothing lost.
	CHECK(std::none_of(recs.begin(), recs.end(), [](const json &e) { return e["event"] == "lost"; }));
}

TEST_CASE("syscall: a blocked call is reported in progress, then counted when it completes")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	auto pipe = write_pipeline(d, {{"by", "thread"}, {"inprogress_ms", 300}},
				   {{"interval_ms", 100}, {"command", {t::build_dir() + "/wl-syscall", "block", "1200"}}});
	auto r = t::run({t::procimage_bin(), "-q", "--pipeline", pipe}, {{"PROCIMAGE_WL_LOG", d.file("wl.log")}});
	INFO(r.err);
	REQUIRE(r.status == 0);
	auto truth = t::read_kv(d.file("wl.log"));
	const long worker = truth["worker_tid"];
	const uint64_t blocked = static_cast<uint64_t>(truth["block_ns"]);
	// the main thread releases the worker 1.2 s after starting it; the worker's own clock
	// starts once it runs, a little later, and stops once it runs again (later still on a
	// busy machine)
	REQUIRE(blocked >= 1100000000ULL);
	REQUIRE(blocked <= 3000000000ULL);
	auto recs = t::read_jsonl(d.file("out.jsonl"));

	auto prog = select(recs, "inprogress", [&](const json &e) { return e["tid"] == worker; });
	REQUIRE(prog.size() >= 3); // every 100 ms from 300 ms to 1.2 s
	uint64_t last = 0;
	for (const auto &p : prog) {
		INFO(p.dump());
		CHECK(p["syscall"] == "read");
		CHECK(p["before_start"] == false);
		CHECK(p["elapsed_ns"].get<uint64_t>() >= 300000000ULL);
		CHECK(p["elapsed_ns"].get<uint64_t>() <= blocked);
		CHECK(p["elapsed_ns"].get<uint64_t>() > last);
		last = p["elapsed_ns"].get<uint64_t>();
	}
	// the same call, counted once, when it returned
	auto w = per_syscall(recs, "target", [&](const json &e) { return e["tid"] == worker; });
	CHECK(w["read"].calls == 1);
	// inside the workload's own measurement around the call (which also holds the time
	// between the call's return and the workload's clock read: 20 ms allows for a preemption
	// there on a busy machine)
	CHECK(w["read"].max_ns <= blocked + 100000ULL);
	CHECK(w["read"].max_ns + 20000000ULL >= blocked);
	CHECK(last < w["read"].max_ns);
}

TEST_CASE("syscall: partial batches at the end of collection, rows and sequences agree")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	getppid_child child(23);
	auto pipe = write_pipeline(d, {{"batch", 10}, {"inprogress_ms", 200}},
				   {{"interval_ms", 100}, {"target", {{"tgid", child.pid}}}});
	background_tool tool({t::procimage_bin(), "--pipeline", pipe}, d.file("err"));
	child.start();
	// the child's 23 calls are done and it blocks in its read once that read is reported in
	// progress (after inprogress_ms)
	CHECK(t::wait_for_record(d.file("out.jsonl"), [&](const json &e) {
		return e.value("event", "") == "inprogress" && e["pid"] == child.pid;
	}));
	CHECK(tool.stop() == 0);
	CHECK(child.finish() == 0);
	auto recs = t::read_jsonl(d.file("out.jsonl"));

	auto seq = select(recs, "sequence");
	REQUIRE(seq.size() == 3);
	std::sort(seq.begin(), seq.end(), [](const json &a, const json &b) { return a["first"] < b["first"]; });
	CHECK(seq[0]["first"] == 0);
	CHECK(seq[0]["count"] == 10);
	CHECK(seq[0]["reason"] == "full");
	CHECK(seq[1]["first"] == 10);
	CHECK(seq[1]["count"] == 10);
	CHECK(seq[1]["reason"] == "full");
	CHECK(seq[2]["first"] == 20);
	CHECK(seq[2]["count"] == 3);
	CHECK(seq[2]["reason"] == "end"); // sent when collection stopped, the thread still blocked
	for (const auto &b : seq) {
		CHECK(b["pid"] == child.pid);
		for (const auto &n : b["syscalls"])
			CHECK(n == "getppid");
		for (const auto &v : b["ret"])
			CHECK(v == getpid());
	}
	// rows: the 23 calls (by process: tid 0), and the read reported in progress meanwhile
	auto rows = per_syscall(recs, "target", [&](const json &e) { return e["pid"] == child.pid && e["tid"] == 0; });
	CHECK(rows.size() == 1);
	CHECK(rows["getppid"].calls == 23);
	auto prog = select(recs, "inprogress", [&](const json &e) { return e["pid"] == child.pid; });
	REQUIRE(!prog.empty());
	CHECK(prog.back()["syscall"] == "read");
	CHECK(prog.back()["before_start"] == false);
}

TEST_CASE("syscall: another process as target; the system figures still count the busy one")
{
	REQUIRE_ROOT_OR_SKIP();
	for (const std::string mode : {"latency", "counts", "off"}) {
		INFO("system: " << mode);
		t::temp_dir d;
		getppid_child idle(0); // blocked in a read that began before collection
		json cfg = {{"inprogress_ms", 200}, {"system", mode}};
		if (mode != "off")
			cfg["system_rows"] = "all";
		auto pipe = write_pipeline(d, cfg, {{"interval_ms", 100}, {"target", {{"tgid", idle.pid}}}});
		background_tool tool({t::procimage_bin(), "--pipeline", pipe}, d.file("err"));
		auto r = t::run({t::build_dir() + "/wl-syscall"}, {{"PROCIMAGE_WL_LOG", d.file("wl.log")}});
		REQUIRE(r.status == 0);
		// the idle target's read, begun before collection, reported in progress
		CHECK(t::wait_for_record(d.file("out.jsonl"), [&](const json &e) {
			return e.value("event", "") == "inprogress" && e["pid"] == idle.pid;
		}));
		CHECK(tool.stop() == 0);
		CHECK(idle.finish() == 1); // its read returned 0 (EOF), not the byte it waited for
		auto truth = t::read_kv(d.file("wl.log"));
		auto recs = t::read_jsonl(d.file("out.jsonl"));

		// nothing about the busy workload in the target's rows or sequences
		for (const auto &e : recs) {
			if (e.value("probe", "") != "syscall" || e.value("scope", "") == "system")
				continue;
			INFO(e.dump());
			CHECK(e["pid"] == idle.pid);
		}
		// the target's blocked read, begun before collection, is reported with a lower bound
		auto prog = select(recs, "inprogress");
		REQUIRE(!prog.empty());
		for (const auto &p : prog) {
			CHECK(p["pid"] == idle.pid);
			CHECK(p["syscall"] == "read");
			CHECK(p["before_start"] == true);
		}
		if (mode == "off") {
			for (const auto &e : recs)
				CHECK(e.value("scope", "") != "system");
			continue;
		}
		// the system saw the busy workload's calls, timed or only counted
		auto sys = per_syscall(recs, "system", [](const json &) { return true; });
		CHECK(sys["getppid"].calls >= static_cast<uint64_t>(truth["getppid"]));
		CHECK(sys["nanosleep"].calls >= 1);
		CHECK(sys["openat"].errors >= static_cast<uint64_t>(truth["bad_open"]));
		if (mode == "latency") {
			CHECK(sys["nanosleep"].max_ns >= 100000000ULL);
		} else {
			for (const auto &e : select(recs, "syscall", [](const json &e) { return e["scope"] == "system"; })) {
				INFO(e.dump());
				CHECK(e["total_ns"] == 0);
				if (e["window"] == "total")
					CHECK(e["max_ns"] == 0);
			}
		}
		auto sint = select(recs, "totals", [](const json &e) { return e["scope"] == "system" && e["window"] == "interval"; });
		auto stot = select(recs, "totals", [](const json &e) { return e["scope"] == "system" && e["window"] == "total"; });
		REQUIRE(!sint.empty());
		REQUIRE(!stot.empty());
		uint64_t sum = 0;
		for (const auto &s : sint)
			sum += s["count"].get<uint64_t>();
		CHECK(sum == stot.back()["count"].get<uint64_t>());
	}
}

TEST_CASE("syscall: procimage-ctl -s N sets the batch per activation, and each activation starts from zero")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	const std::string ch = "procimage-test-syscall-" + std::to_string(getpid());
	const std::string ctl = t::build_dir() + "/procimage-ctl";
	// A child that, for every byte N it reads on its pipe, makes N getppid calls.
	int g[2];
	REQUIRE(pipe(g) == 0);
	pid_t child = fork();
	if (child == 0) {
		close(g[1]);
		unsigned char n;
		while (syscall(SYS_read, g[0], &n, 1) == 1)
			for (int i = 0; i < n; i++)
				syscall(SYS_getppid);
		_exit(0);
	}
	close(g[0]);
	// The calls are made once the child blocks in its read again: it has switched out
	// voluntarily once more, and the kernel shows it inside read (number 0). No other call of
	// the child may enter the sequences, so this is watched from /proc, not answered.
	const std::string proc = "/proc/" + std::to_string(child);
	auto voluntary = [&] {
		std::string s = t::read_file(proc + "/status");
		auto at = s.find("\nvoluntary_ctxt_switches:");
		return at == std::string::npos ? -1L : std::atol(s.c_str() + at + 26);
	};
	auto poke = [&](unsigned char n) {
		long before = voluntary();
		REQUIRE(write(g[1], &n, 1) == 1);
		bool back = false;
		for (int i = 0; i < 500 && !back; i++) {
			back = voluntary() > before && t::read_file(proc + "/syscall").rfind("0 ", 0) == 0;
			if (!back)
				std::this_thread::sleep_for(std::chrono::milliseconds(10));
		}
		REQUIRE(back);
	};
	background_tool tool({t::procimage_bin(), "-s", "--start", "inactive", "--name", ch, "-o", "jsonl:" + d.file("out.jsonl")},
			     d.file("err"), "inactive");

	REQUIRE(t::run({ctl, "--name", ch, "-a", "-P", std::to_string(child), "-s", "7"}).status == 0);
	poke(16);
	REQUIRE(t::run({ctl, "--name", ch, "-d"}).status == 0);
	REQUIRE(t::run({ctl, "--name", ch, "-a", "-P", std::to_string(child), "-s", "5"}).status == 0);
	poke(6);
	REQUIRE(t::run({ctl, "--name", ch, "-d"}).status == 0);
	auto bad = t::run({ctl, "--name", ch, "-a", "-P", std::to_string(child), "-s", "51"});
	CHECK(bad.status != 0);
	CHECK(tool.stop() == 0);
	close(g[1]);
	int st = 0;
	waitpid(child, &st, 0);

	auto recs = t::read_jsonl(d.file("out.jsonl"));
	auto seq = select(recs, "sequence");
	std::vector<std::pair<uint64_t, std::string>> got;
	for (const auto &b : seq) {
		INFO(b.dump());
		CHECK(b["pid"] == child);
		for (const auto &n : b["syscalls"])
			CHECK(n == "getppid"); // the reads that woke the child began before each activation
		got.emplace_back(b["count"].get<uint64_t>(), b["reason"].get<std::string>());
	}
	// first activation: 16 calls in batches of 7; second: 6 in batches of 5, counted from 0
	std::vector<std::pair<uint64_t, std::string>> want = {
		{7, "full"}, {7, "full"}, {2, "end"}, {5, "full"}, {1, "end"}};
	CHECK(got == want);
	REQUIRE(seq.size() == 5);
	CHECK(seq[3]["first"] == 0);
	auto rows = select(recs, "syscall", [&](const json &e) {
		return is_target(e) && e["syscall"] == "getppid" && e["window"] == "interval";
	});
	auto runs = select(recs, "syscall", [&](const json &e) {
		return is_target(e) && e["syscall"] == "getppid" && e["window"] == "total";
	});
	REQUIRE(!rows.empty());
	REQUIRE(!runs.empty());
	CHECK(runs.back()["count"] == 6); // the second activation's figures only
	uint64_t total = 0;
	for (const auto &r : rows)
		total += r["count"].get<uint64_t>();
	CHECK(total == 16 + 6);
}
