// SPDX-License-Identifier: Apache-2.0
// The filters (--comm, --failed, --min-duration, --syscall; docs/filters.md) on workloads that
// make both kinds of events: what is streamed is only what passes, and the aggregates still
// count everything.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <cerrno>
#include <fnmatch.h>

#include <map>
#include <set>
#include <string>

using nlohmann::json;
namespace t = procimage::test;

namespace {

struct filtered_run {
	t::temp_dir dir;
	std::vector<json> recs;
	std::map<std::string, long> truth;
};

// procimage ARGS -o jsonl:… -- WORKLOAD, the workload logging what it did.
void run_on(filtered_run &fr, const std::vector<std::string> &args, const std::vector<std::string> &cmd)
{
	std::vector<std::string> argv = {t::procimage_bin(), "-q"};
	argv.insert(argv.end(), args.begin(), args.end());
	argv.push_back("-o");
	argv.push_back("jsonl:" + fr.dir.file("out.jsonl"));
	argv.push_back("--");
	argv.insert(argv.end(), cmd.begin(), cmd.end());
	auto r = t::run(argv, {{"PROCIMAGE_WL_LOG", fr.dir.file("wl.log")}});
	INFO(r.err);
	REQUIRE(r.status == 0);
	fr.recs = t::read_jsonl(fr.dir.file("out.jsonl"));
	fr.truth = t::read_kv(fr.dir.file("wl.log"));
}

std::vector<json> probe_records(const std::vector<json> &recs, const std::string &probe)
{
	std::vector<json> out;
	for (const auto &r : recs)
		if (r["probe"] == probe)
			out.push_back(r);
	return out;
}

// Every call of one thread's sequence records: (name, errno, latency).
struct call {
	std::string name;
	uint64_t err;
	uint64_t lat_ns;
};
std::vector<call> calls_of(const std::vector<json> &recs, long tid)
{
	std::vector<call> out;
	for (const auto &b : t::select_records(recs, "syscall", "sequence", [&](const json &r) { return r["tid"] == tid; }))
		for (size_t i = 0; i < b["count"].get<size_t>(); i++)
			out.push_back({b["syscalls"][i].get<std::string>(), b["errno"][i].get<uint64_t>(),
				       b["lat_ns"][i].get<uint64_t>()});
	return out;
}

// Calls and errors of each syscall in one thread's interval rows (syscall.by thread).
std::map<std::string, std::pair<uint64_t, uint64_t>> counts_of(const std::vector<json> &recs, long tid)
{
	std::map<std::string, std::pair<uint64_t, uint64_t>> m;
	for (const auto &r : t::select_records(recs, "syscall", "syscall", [&](const json &r) {
		     return r["tid"] == tid && r["window"] == "interval";
	     })) {
		auto &c = m[r["syscall"].get<std::string>()];
		c.first += r["count"].get<uint64_t>();
		c.second += r["errors"].get<uint64_t>();
	}
	return m;
}

const std::string wl_filters() { return t::build_dir() + "/wl-filters"; }
const std::string wl_syscall() { return t::build_dir() + "/wl-syscall"; }

} // namespace

TEST_CASE("filters: --comm keeps one child's records, by exact name, prefix glob and other globs")
{
	REQUIRE_ROOT_OR_SKIP();
	// (pattern, the child it names): exact and prefix globs are checked in the kernel, the
	// others by the host on the records
	const std::vector<std::pair<std::string, std::string>> cases = {
		{"wlf-alpha", "alpha"}, {"wlf-al*", "alpha"}, {"*-alpha", "alpha"}, {"*beta", "beta"}, {"wlf-b?ta", "beta"}};
	for (const auto &[pattern, child] : cases) {
		INFO("--comm " << pattern);
		filtered_run fr;
		run_on(fr, {"-k", "-s", "--comm", pattern}, {wl_filters()});
		const long pid = fr.truth.at(child + "_pid");
		const int status = static_cast<int>(fr.truth.at(child + "_status"));
		REQUIRE(fr.truth.at("alpha_status") == 3);
		REQUIRE(fr.truth.at("beta_status") == 0);
		size_t threads = 0;
		for (const auto &probe : {"keytime", "syscall"})
			for (const auto &r : probe_records(fr.recs, probe)) {
				if (r["pid"] == 0)
					continue; // system-wide rows
				INFO(r.dump());
				CHECK(fnmatch(pattern.c_str(), r["comm"].get<std::string>().c_str(), 0) == 0);
				CHECK(r["pid"] == pid);
				threads++;
			}
		CHECK(threads > 0);
		// the child's exit, and its calls after the rename (every getppid of it)
		auto exits = t::select_records(fr.recs, "keytime", "exit", [&](const json &r) { return r["pid"] == pid; });
		REQUIRE(exits.size() == 1);
		CHECK(exits[0]["exit_code"] == status);
		size_t getppid = 0;
		for (const auto &c : calls_of(fr.recs, pid))
			getppid += c.name == "getppid";
		CHECK(getppid == static_cast<size_t>(fr.truth.at("getppid")));
	}
}

TEST_CASE("filters: keytime --failed streams the failed exec and the non-zero exit only")
{
	REQUIRE_ROOT_OR_SKIP();
	filtered_run fr;
	run_on(fr, {"-k", "--failed"}, {wl_filters()});
	const long alpha = fr.truth.at("alpha_pid");
	REQUIRE(fr.truth.at("alpha_status") == 3);
	REQUIRE(fr.truth.at("beta_status") == 0);
	REQUIRE(fr.truth.at("exec_errno") == ENOENT);
	auto kt = probe_records(fr.recs, "keytime");
	for (const auto &r : kt) {
		INFO(r.dump());
		CHECK((r["event"] == "exec" || r["event"] == "exit"));
		if (r["event"] == "exec")
			CHECK(r["ret"].get<int64_t>() < 0);
		if (r["event"] == "exit")
			CHECK((r["exit_code"] != 0 || r["signal"] != 0));
	}
	auto execs = t::select_records(fr.recs, "keytime", "exec", [&](const json &r) { return r["pid"] == alpha; });
	REQUIRE(execs.size() == 1);
	CHECK(execs[0]["ret"] == -fr.truth.at("exec_errno"));
	auto exits = t::select_records(fr.recs, "keytime", "exit");
	REQUIRE(exits.size() == 1);
	CHECK(exits[0]["pid"] == alpha);
	CHECK(exits[0]["exit_code"] == 3);
}

TEST_CASE("filters: syscall \"failed\" (pipeline) streams the failing calls; the counts keep all")
{
	REQUIRE_ROOT_OR_SKIP();
	filtered_run fr;
	json p = {{"version", 1},
		  {"probes", {{"syscall", {{"by", "thread"}, {"batch", 50}}}}},
		  {"sinks", {{"jsonl", {{"path", fr.dir.file("out.jsonl")}}}}},
		  {"filters", {{"failed", true}}},
		  {"command", {wl_syscall()}}};
	t::write_file(fr.dir.file("pipeline.json"), p.dump());
	auto r = t::run({t::procimage_bin(), "-q", "--pipeline", fr.dir.file("pipeline.json")},
			{{"PROCIMAGE_WL_LOG", fr.dir.file("wl.log")}});
	INFO(r.err);
	REQUIRE(r.status == 0);
	fr.recs = t::read_jsonl(fr.dir.file("out.jsonl"));
	fr.truth = t::read_kv(fr.dir.file("wl.log"));
	const long worker = fr.truth.at("worker_tid");
	const uint64_t bad_open = fr.truth.at("bad_open");
	REQUIRE(fr.truth.at("bad_open_errno") == ENOENT);
	for (const auto &b : t::select_records(fr.recs, "syscall", "sequence"))
		for (const auto &e : b["errno"]) {
			INFO(b.dump());
			CHECK(e.get<uint64_t>() != 0);
		}
	uint64_t failed_opens = 0;
	for (const auto &c : calls_of(fr.recs, worker)) {
		CHECK(c.err != 0);
		failed_opens += c.name == "openat" && c.err == ENOENT;
	}
	CHECK(failed_opens == bad_open);
	auto counts = counts_of(fr.recs, worker);
	CHECK(counts["openat"].first == 2 + bad_open);
	CHECK(counts["openat"].second == bad_open);
	CHECK(counts["getppid"].first == static_cast<uint64_t>(fr.truth.at("getppid")));
	CHECK(counts["read"].first == static_cast<uint64_t>(fr.truth.at("read")));
}

TEST_CASE("filters: syscall --min-duration streams the 100 ms sleep, not the fast calls; the counts keep all")
{
	REQUIRE_ROOT_OR_SKIP();
	filtered_run fr;
	const uint64_t min_ns = 20000000;
	run_on(fr, {"-s", "--set", "syscall.by=thread", "--min-duration", "20ms"}, {wl_syscall()});
	const long worker = fr.truth.at("worker_tid");
	for (const auto &b : t::select_records(fr.recs, "syscall", "sequence"))
		for (const auto &l : b["lat_ns"]) {
			INFO(b.dump());
			CHECK(l.get<uint64_t>() >= min_ns);
		}
	auto calls = calls_of(fr.recs, worker);
	size_t sleeps = 0;
	for (const auto &c : calls) {
		CHECK(c.name != "getppid");
		sleeps += c.name == "nanosleep";
	}
	CHECK(sleeps == 1);
	auto counts = counts_of(fr.recs, worker);
	CHECK(counts["getppid"].first == static_cast<uint64_t>(fr.truth.at("getppid")));
	CHECK(counts["nanosleep"].first == 1);
	CHECK(counts["write"].first == static_cast<uint64_t>(fr.truth.at("write")));
}

TEST_CASE("filters: --syscall traces only the listed calls, in records and in counts")
{
	REQUIRE_ROOT_OR_SKIP();
	filtered_run fr;
	run_on(fr, {"--syscall", "getppid,nanosleep", "--set", "syscall.by=thread"}, {wl_syscall()});
	const long worker = fr.truth.at("worker_tid");
	const std::set<std::string> listed = {"getppid", "nanosleep"};
	for (const auto &r : probe_records(fr.recs, "syscall")) {
		INFO(r.dump());
		if (r["event"] == "syscall")
			CHECK(listed.count(r["syscall"].get<std::string>()));
		if (r["event"] == "sequence")
			for (const auto &n : r["syscalls"])
				CHECK(listed.count(n.get<std::string>()));
	}
	auto counts = counts_of(fr.recs, worker);
	CHECK(counts.size() == 2);
	CHECK(counts["getppid"].first == static_cast<uint64_t>(fr.truth.at("getppid")));
	CHECK(counts["nanosleep"].first == 1);
	size_t getppid = 0;
	for (const auto &c : calls_of(fr.recs, worker))
		getppid += c.name == "getppid";
	CHECK(getppid == static_cast<size_t>(fr.truth.at("getppid")));
}

TEST_CASE("filters: lock --failed and --min-duration stream the failed attempts and the long waits")
{
	REQUIRE_ROOT_OR_SKIP();
	const std::string wl = t::build_dir() + "/wl-lock";
	// M (wl_lock.c): taken three times (A, B, the nested phase); B's trylock and timedlock fail
	auto m_rows = [](const std::vector<json> &recs, const char *key) {
		uint64_t n = 0;
		for (const auto &r : t::select_records(recs, "lock", "lock", [](const json &r) {
			     return r["lock_symbol"] == "M" && r["window"] == "interval" && r["scope"] == "process";
		     }))
			n += r[key].get<uint64_t>();
		return n;
	};
	SECTION("--failed")
	{
		t::temp_dir d;
		auto r = t::run({t::procimage_bin(), "-q", "-l", "--set", "lock.acquisitions=true", "--failed", "-o",
				 "jsonl:" + d.file("out.jsonl"), "--", wl, d.file("wl.log")});
		INFO(r.err);
		REQUIRE(r.status == 0);
		auto recs = t::read_jsonl(d.file("out.jsonl"));
		auto acq = t::select_records(recs, "lock", "acquisition");
		std::set<std::pair<std::string, int64_t>> seen;
		for (const auto &a : acq) {
			INFO(a.dump());
			CHECK(a["ret"].get<int64_t>() != 0);
			CHECK(a["acquired"] == false);
			seen.insert({a["op"].get<std::string>(), a["ret"].get<int64_t>()});
		}
		CHECK(seen.count({"pthread_mutex_trylock", -EBUSY}));
		CHECK(seen.count({"pthread_mutex_timedlock", -ETIMEDOUT}));
		for (const auto &c : t::select_records(recs, "lock", "contention"))
			CHECK(c["ret"] == -ETIMEDOUT);
		CHECK(m_rows(recs, "acquisitions") == 3);
		CHECK(m_rows(recs, "failed") == 2);
	}
	SECTION("--min-duration")
	{
		t::temp_dir d;
		const uint64_t min_ns = 1000000;
		auto r = t::run({t::procimage_bin(), "-q", "-l", "--set", "lock.acquisitions=true", "--min-duration", "1ms",
				 "-o", "jsonl:" + d.file("out.jsonl"), "--", wl, d.file("wl.log")});
		INFO(r.err);
		REQUIRE(r.status == 0);
		auto recs = t::read_jsonl(d.file("out.jsonl"));
		auto truth = t::read_kv(d.file("wl.log"));
		std::set<std::string> ops;
		for (const auto &a : t::select_records(recs, "lock", "acquisition")) {
			INFO(a.dump());
			CHECK(a["wait_ns"].get<uint64_t>() >= min_ns);
			ops.insert(a["op"].get<std::string>());
		}
		// the waits the workload measured at 5 ms or more are all there
		CHECK(truth.at("b_lock_wait_ns") >= 5000000);
		CHECK(ops.count("pthread_mutex_lock"));
		CHECK(ops.count("pthread_mutex_timedlock"));
		CHECK(ops.count("pthread_rwlock_wrlock"));
		CHECK(ops.count("pthread_spin_lock"));
		CHECK_FALSE(ops.count("pthread_mutex_trylock"));
		for (const auto &c : t::select_records(recs, "lock", "contention"))
			CHECK(c["wait_ns"].get<uint64_t>() >= min_ns);
		CHECK(m_rows(recs, "acquisitions") == 3);
		CHECK(m_rows(recs, "failed") == 2);
	}
}

TEST_CASE("filters: a probe built before filters (ABI 1.1) has its records filtered by comm in the host, and a warning")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	const std::string plugin = std::string(PROCIMAGE_TEST_PLUGIN_DIR) + "/probe_abi_1_1.so";
	json p = {{"version", 1},
		  {"probes", {{"old", {{"plugin", plugin}, {"emit", true}}}}},
		  {"sinks", {{"jsonl", {{"path", d.file("out.jsonl")}}}}},
		  {"target", {{"all", true}}},
		  {"interval_ms", 100},
		  {"duration_s", 1},
		  {"filters", {{"comm", {"wlf-*"}}, {"failed", true}}}};
	t::write_file(d.file("p.json"), p.dump());
	auto r = t::run({t::procimage_bin(), "--pipeline", d.file("p.json")});
	INFO(r.err);
	REQUIRE(r.status == 0);
	CHECK_THAT(r.err, Catch::Contains("was built for plugin ABI 1.1, before filters (1.3): --failed, --min-duration "
					  "and --syscall do not apply to it (--comm does, on its records)"));
	// the plugin emitted one record of wlf-alpha and one of "other": only the first passes
	auto ticks = t::select_records(t::read_jsonl(d.file("out.jsonl"), false), "old", "tick");
	REQUIRE(ticks.size() == 1);
	CHECK(ticks[0]["comm"] == "wlf-alpha");
}

TEST_CASE("filters: keytime --min-duration streams the off-CPU intervals that long (the 100 ms sleep), all on-CPU ones")
{
	REQUIRE_ROOT_OR_SKIP();
	filtered_run fr;
	const uint64_t min_ns = 20000000;
	run_on(fr, {"-k", "--cpu", "--min-duration", "20ms"}, {wl_syscall()});
	const long worker = fr.truth.at("worker_tid");
	auto off = t::select_records(fr.recs, "keytime", "offcpu");
	bool slept = false;
	for (const auto &r : off) {
		INFO(r.dump());
		CHECK(r["dur_ns"].get<uint64_t>() >= min_ns);
		// the worker's nanosleep: the workload measured it with its own clock
		slept |= r["tid"] == worker && r["reason"] == "sleeping" &&
			 r["dur_ns"].get<uint64_t>() + 1000000 >= static_cast<uint64_t>(fr.truth.at("sleep_ns"));
	}
	CHECK(slept);
	CHECK_FALSE(t::select_records(fr.recs, "keytime", "oncpu", [&](const json &r) { return r["tid"] == worker; }).empty());
}
