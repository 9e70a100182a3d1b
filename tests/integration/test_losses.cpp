// SPDX-License-Identifier: Apache-2.0
// Nothing lost on ordinary work: a shell loop of short processes as the target, and the whole
// system while processes are spawned, with every probe and its default settings. Each run's
// JSON-lines output is read line by line (it holds hundreds of thousands of rows).
#include "support.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

using nlohmann::json;
namespace t = procimage::test;

namespace {

// What a run's output says about losses and about the work that was traced.
struct tally {
	size_t lines = 0;
	size_t lost_records = 0;              // "lost" records of the host
	std::map<std::string, uint64_t> lost; // probe -> lost_total of its summary
	std::set<std::string> summaries;      // probes that sent a summary
	size_t true_execs = 0;                // keytime: successful execs of /bin/true
	std::set<uint32_t> true_pids;         // their pids
	uint64_t execve_calls = 0;            // syscall: execve calls in target rows
	std::set<uint32_t> execve_pids;       // pids with an execve row
	uint64_t system_execve = 0;           // syscall: execve calls in system rows
	size_t target_rows = 0;               // syscall rows of the target (scope "thread" or "process")
};

tally read_run(const std::string &path)
{
	tally t;
	std::ifstream in(path);
	std::string line;
	while (std::getline(in, line)) {
		t.lines++;
		// parse only the lines that matter here
		bool host = line.find("\"probe\":\"procimage\"") != std::string::npos;
		bool exec = line.find("\"event\":\"exec\"") != std::string::npos;
		bool execve = line.find("\"syscall\":\"execve\"") != std::string::npos;
		bool target_row = line.find("\"probe\":\"syscall\"") != std::string::npos &&
				  (line.find("\"scope\":\"process\"") != std::string::npos ||
				   line.find("\"scope\":\"thread\"") != std::string::npos);
		if (!host && !exec && !execve && !target_row)
			continue;
		json r = json::parse(line);
		if (host && r["event"] == "lost")
			t.lost_records++;
		if (host && r["event"] == "summary") {
			t.summaries.insert(r["source"].get<std::string>());
			t.lost[r["source"].get<std::string>()] = r["lost_total"].get<uint64_t>();
		}
		if (r["probe"] == "keytime" && exec && r.value("filename", "") == "/bin/true" && r.value("ret", -1) == 0) {
			t.true_execs++;
			t.true_pids.insert(r["pid"].get<uint32_t>());
		}
		if (r["probe"] == "syscall" && r["event"] == "syscall") {
			const bool target = r["scope"] == "process" || r["scope"] == "thread";
			if (target)
				t.target_rows++;
			if (r["window"] != "interval")
				continue; // the total rows repeat the intervals' calls
			if (execve && target) {
				t.execve_calls += r["count"].get<uint64_t>();
				t.execve_pids.insert(r["pid"].get<uint32_t>());
			} else if (execve && r["scope"] == "system") {
				t.system_execve += r["count"].get<uint64_t>();
			}
		}
	}
	return t;
}

} // namespace

TEST_CASE("losses: a shell loop of 10,000 short processes under -a loses nothing with default settings")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	const int N = 10000;
	auto r = t::run({t::procimage_bin(), "-a", "-o", "jsonl:" + d.file("out.jsonl"), "--", "/bin/sh", "-c",
			 "i=0; while [ $i -lt " + std::to_string(N) + " ]; do /bin/true; i=$((i+1)); done"});
	INFO(r.err.substr(r.err.size() > 3000 ? r.err.size() - 3000 : 0));
	REQUIRE(r.status == 0);
	tally t = read_run(d.file("out.jsonl"));
	// every probe ran and lost nothing, and no loss was reported on the way
	CHECK(t.summaries == std::set<std::string>{"keytime", "lock", "resource", "schedule", "syscall"});
	for (const auto &[probe, lost] : t.lost) {
		INFO(probe);
		CHECK(lost == 0);
	}
	CHECK(t.lost_records == 0);
	CHECK(r.err.find(" lost ") == std::string::npos);
	// what the loop did, seen by keytime and by the syscall probe: N execs of /bin/true, each
	// by its own process, and each of those processes has its execve in the syscall figures
	CHECK(t.true_execs == static_cast<size_t>(N));
	CHECK(t.true_pids.size() == static_cast<size_t>(N));
	size_t missing = 0;
	for (uint32_t pid : t.true_pids)
		missing += !t.execve_pids.count(pid);
	CHECK(missing == 0);
	CHECK(t.execve_calls >= static_cast<uint64_t>(N) + 1); // and the shell's own exec
}

TEST_CASE("losses: every probe system-wide while 20,000 processes are spawned loses nothing with default settings")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	// every probe, no target: the whole system
	pid_t tool = fork();
	if (tool == 0) {
		int fd = open(d.file("err").c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
		dup2(fd, 2);
		const std::string name = "procimage-test-losses-" + std::to_string(getpid());
		execl(t::procimage_bin().c_str(), "procimage", "-k", "-l", "-r", "-s", "-S", "--name", name.c_str(), "-o",
		      ("jsonl:" + d.file("out.jsonl")).c_str(), static_cast<char *>(nullptr));
		_exit(127);
	}
	for (int i = 0; i < 400 && t::read_file(d.file("err")).find("collecting for") == std::string::npos; i++)
		std::this_thread::sleep_for(std::chrono::milliseconds(25));
	REQUIRE_THAT(t::read_file(d.file("err")), Catch::Contains("collecting for"));
	// two loops of 10,000 /bin/true side by side
	auto load = t::sh("for j in 1 2; do (i=0; while [ $i -lt 10000 ]; do /bin/true; i=$((i+1)); done) & done; wait");
	CHECK(load.status == 0);
	kill(tool, SIGINT);
	int st = 0;
	waitpid(tool, &st, 0);
	std::string err = t::read_file(d.file("err"));
	INFO(err.substr(err.size() > 3000 ? err.size() - 3000 : 0));
	REQUIRE(WIFEXITED(st));
	CHECK(WEXITSTATUS(st) == 0);
	tally t = read_run(d.file("out.jsonl"));
	CHECK(t.summaries == std::set<std::string>{"keytime", "lock", "resource", "schedule", "syscall"});
	for (const auto &[probe, lost] : t.lost) {
		INFO(probe);
		CHECK(lost == 0);
	}
	CHECK(t.lost_records == 0);
	// keytime saw each of the 20,000 execs; the syscall probe kept the system's figures
	// (per syscall, every call of the machine) and no per-process rows by default
	CHECK(t.true_execs >= 20000);
	CHECK(t.system_execve >= 20000);
	CHECK(t.target_rows == 0);
}
