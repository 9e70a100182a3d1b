// SPDX-License-Identifier: Apache-2.0
// The host end to end: privileges, clean shutdown on signals, failing plugins, several sinks.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <map>

#include <csignal>
#include <set>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using nlohmann::json;
namespace t = procimage::test;

TEST_CASE("host: without root or CAP_BPF+CAP_PERFMON+CAP_DAC_READ_SEARCH it says so and exits 3")
{
	REQUIRE_ROOT_OR_SKIP(); // needs root to drop to an unprivileged user
	// a copy the unprivileged user can run, wherever the checkout is
	t::temp_dir copy;
	const std::string bin = t::world_readable_build(copy) + "/procimage";
	auto r = t::run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
			 "--bounding-set=-all", bin, "-k", "--", "/bin/true"});
	CHECK(r.status == 3);
	CHECK_THAT(r.err, Catch::Contains("procimage needs root, or the capabilities CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH"));
	CHECK_THAT(r.err, Catch::Contains("lacks CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH"));
	// with those three capabilities (and tracefs mounted: only root can mount it) an
	// unprivileged user traces a command
	REQUIRE(t::sh("mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing").status == 0);
	r = t::run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		    "--inh-caps=+bpf,+perfmon,+dac_read_search", "--ambient-caps=+bpf,+perfmon,+dac_read_search",
		    bin, "-k", "-o", "jsonl:/dev/null", "--", "/bin/true"});
	INFO(r.err);
	CHECK(r.status == 0);
	CHECK_THAT(r.err, Catch::Contains("command exited with status 0"));
}

TEST_CASE("host: unprivileged, with a plugin directory it cannot read, it exits 3 (not an abort)")
{
	REQUIRE_ROOT_OR_SKIP(); // needs root to drop to an unprivileged user
	t::temp_dir copy;
	const std::string bin = t::world_readable_build(copy);
	REQUIRE(chmod((bin + "/plugins").c_str(), 0700) == 0); // root's, closed to uid 65534
	for (const std::vector<std::string> &args : {std::vector<std::string>{"-k", "--", "/bin/true"},
						     std::vector<std::string>{"-a"}}) {
		std::vector<std::string> argv = {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
						 "--inh-caps=-all", "--bounding-set=-all", bin + "/procimage"};
		argv.insert(argv.end(), args.begin(), args.end());
		auto r = t::run(argv);
		INFO(args.front() << ": " << r.err);
		CHECK(r.status == 3);
		CHECK_THAT(r.err, Catch::StartsWith("procimage: procimage needs root"));
		CHECK_THAT(r.err, !Catch::Contains("terminate called"));
	}
	// checking only needs no privileges: the unreadable directory is named, exit 2
	auto r = t::run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin + "/procimage", "--check",
			 "-k", "--", "/bin/true"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("cannot look for " + bin + "/plugins/sink_stdout.so: Permission denied"));
}

TEST_CASE("host: SIGTERM flushes every sink and detaches; the summary is written")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	pid_t tool = fork();
	if (tool == 0) {
		int fd = open(d.file("err").c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
		dup2(fd, 2);
		execl(t::procimage_bin().c_str(), "procimage", "-k", "-o", ("jsonl:" + d.file("out.jsonl")).c_str(), "-o",
		      ("csv:" + d.file("csv")).c_str(), (char *)nullptr);
		_exit(127);
	}
	for (int i = 0; i < 200 && t::read_file(d.file("err")).find("collecting for") == std::string::npos; i++)
		std::this_thread::sleep_for(std::chrono::milliseconds(25));
	REQUIRE_THAT(t::read_file(d.file("err")), Catch::Contains("collecting for all threads"));
	// the BPF programs this host holds (each prog or link fd says its prog_id in fdinfo)
	std::set<uint64_t> progs;
	auto ids = t::sh("cat /proc/" + std::to_string(tool) + "/fdinfo/* 2>/dev/null | awk '/^prog_id:/ {print $2}'");
	std::istringstream idstream(ids.out);
	for (uint64_t id; idstream >> id;)
		progs.insert(id);
	auto listing = t::run({"bpftool", "prog", "show", "--json"});
	REQUIRE(listing.status == 0);
	size_t live = 0;
	for (const auto &p : json::parse(listing.out))
		live += progs.count(p["id"].get<uint64_t>());
	CHECK(live == progs.size());
	CHECK(progs.size() >= 5); // keytime's programs and the host's own
	auto w = t::run({"/bin/sh", "-c", "/bin/true; echo $$"});
	REQUIRE(w.status == 0);
	long shell = std::stol(w.out);
	kill(tool, SIGTERM); // (it drains every record the kernel holds before it exits)
	int st = 0;
	waitpid(tool, &st, 0);
	REQUIRE(WIFEXITED(st));
	CHECK(WEXITSTATUS(st) == 0);
	auto recs = t::read_jsonl(d.file("out.jsonl"));
	// the system-wide target saw the shell's exit, and procimage's own threads were excluded
	bool shell_exit = false;
	for (const auto &r : recs) {
		if (r["probe"] != "keytime")
			continue;
		CHECK(r["pid"] != tool);
		shell_exit |= r["event"] == "exit" && r["pid"] == shell;
	}
	CHECK(shell_exit);
	CHECK(recs.back()["event"] == "summary");
	// the CSV sink got the same exits
	std::string csv = t::read_file(d.file("csv/keytime_exit.csv"));
	CHECK_THAT(csv, Catch::StartsWith("ts_ns,probe,plugin,event,pid,tid,comm,cpu,pid_start_ns,cgroup,exit_code,signal"));
	CHECK_THAT(csv, Catch::Contains(",keytime,,exit," + std::to_string(shell) + "," + std::to_string(shell) + ","));
	// and none of its programs survives it
	// (the kernel frees programs after an RCU grace period: allow it a moment)
	size_t left = progs.size();
	for (int i = 0; i < 100 && left; i++) {
		std::this_thread::sleep_for(std::chrono::milliseconds(50));
		listing = t::run({"bpftool", "prog", "show", "--json"});
		left = 0;
		for (const auto &p : json::parse(listing.out))
			left += progs.count(p["id"].get<uint64_t>());
	}
	CHECK(left == 0);
}

TEST_CASE("host: a sink that throws is reported by name; the others keep their records")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	t::write_file(d.file("p.json"), R"({"version": 1,
		"probes": {"keytime": {}},
		"sinks": {"bad": {"plugin": ")" + std::string(PROCIMAGE_TEST_PLUGIN_DIR) + R"(/sink_throwing.so"},
		          "jsonl": {"path": ")" + d.file("out.jsonl") + R"("}}})");
	auto r = t::run({t::procimage_bin(), "--pipeline", d.file("p.json"), "--", "/bin/sh", "-c", "exit 6"});
	// the output is incomplete: the run fails, and says what the command's status was
	CHECK(r.status == 1);
	CHECK_THAT(r.err, Catch::Contains("sink 'bad' (throwing 0.0.1) failed to write a "));
	CHECK_THAT(r.err, Catch::Contains("the output is incomplete: sink 'bad' failed; the command exited with status 6"));
	CHECK_THAT(r.err, !Catch::Contains("no sink is left")); // jsonl still works
	auto recs = t::read_jsonl(d.file("out.jsonl"));
	bool exit6 = false;
	for (const auto &rec : recs)
		exit6 |= rec["event"] == "exit" && rec["exit_code"] == 6;
	CHECK(exit6);
}

TEST_CASE("host: a probe that throws is reported by name and the host exits cleanly")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	t::write_file(d.file("p.json"), R"({"version": 1,
		"probes": {"boom": {"plugin": ")" + std::string(PROCIMAGE_TEST_PLUGIN_DIR) + R"(/probe_throwing.so"}}})");
	auto r = t::run({t::procimage_bin(), "--pipeline", d.file("p.json"), "--", "/bin/true"});
	CHECK(r.status == 1);
	CHECK_THAT(r.err, Catch::Contains("probe 'boom' (throwing 0.0.1) failed to start: create threw an exception"));
}

TEST_CASE("host: probes of ABI 1.4 load at the same time and share the host's kernel BTF; an older one loads alone on the host's thread")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	const std::string dir = PROCIMAGE_TEST_PLUGIN_DIR;
	const std::string out = d.file("out.jsonl");
	// two instances of one 1.4 plugin and one 1.3 plugin; each load sleeps 300 ms
	t::write_file(d.file("p.json"), R"({"version": 1, "interval_ms": 100, "probes": {
		"a": {"plugin": ")" + dir + R"(/probe_loads.so"},
		"b": {"plugin": ")" + dir + R"(/probe_loads.so"},
		"old": {"plugin": ")" + dir + R"(/probe_loads_1_3.so"}},
		"sinks": {"jsonl": {"path": ")" + out + R"("}}})");
	auto r = t::run({t::procimage_bin(), "--pipeline", d.file("p.json"), "--", "/bin/sleep", "0.3"});
	INFO(r.err);
	REQUIRE(r.status == 0);
	std::map<std::string, json> loaded;
	// a test plugin's records: not in the built-in probes' schema
	for (const auto &e : t::read_jsonl(out, false))
		if (e.value("event", "") == "loaded")
			loaded[e["probe"].get<std::string>()] = e;
	REQUIRE(loaded.count("a") == 1);
	REQUIRE(loaded.count("b") == 1);
	REQUIRE(loaded.count("old") == 1);
	const json &a = loaded["a"], &b = loaded["b"], &old = loaded["old"];
	const uint64_t host_pid = old["pid"];
	// the host's thread is the process's first one: its tid is the pid
	CHECK(old["load_tid"] == host_pid);
	// one parse of the kernel's BTF, lent to both instances of the 1.4 plugin for their load,
	// and taken back once they are loaded
	CHECK(a["kernel_btf"].get<uint64_t>() != 0);
	CHECK(a["kernel_btf"] == b["kernel_btf"]);
	CHECK(old["kernel_btf"] == 0);
	CHECK(a["kernel_btf_after"] == 0);
	CHECK(b["kernel_btf_after"] == 0);
	// the 1.3 plugin's load ran before the others began
	CHECK(old["load_end_ns"].get<uint64_t>() <= std::min(a["load_begin_ns"].get<uint64_t>(), b["load_begin_ns"].get<uint64_t>()));
	if (std::thread::hardware_concurrency() < 2)
		SKIP_TEST("one CPU: the host loads the probes in turn");
	// with two CPUs the two 300 ms loads overlap, one on a thread of its own
	uint64_t begin = std::max(a["load_begin_ns"].get<uint64_t>(), b["load_begin_ns"].get<uint64_t>());
	uint64_t end = std::min(a["load_end_ns"].get<uint64_t>(), b["load_end_ns"].get<uint64_t>());
	CHECK(begin < end);
	CHECK(a["load_tid"] != b["load_tid"]);
}

TEST_CASE("host: a command that cannot be run gives 127 and a message")
{
	REQUIRE_ROOT_OR_SKIP();
	auto r = t::run({t::procimage_bin(), "-q", "-k", "-o", "jsonl:/dev/null", "--", "/nonexistent/cmd"});
	CHECK(r.status == 127);
	CHECK_THAT(r.err, Catch::Contains("cannot run /nonexistent/cmd: No such file or directory"));
}

TEST_CASE("host: the stdout sink prints the portrait with readable values")
{
	REQUIRE_ROOT_OR_SKIP();
	// with -- CMD the readable lines go to standard error (CMD's standard output is its own)
	auto r = t::run({t::procimage_bin(), "-q", "-k", "--", "/bin/sh", "-c", "/nonexistent/x; kill -9 $$"});
	CHECK(r.status == 128 + 9);
	CHECK_THAT(r.err, Catch::Contains("TIME "));
	CHECK_THAT(r.err, Catch::Contains("filename=/nonexistent/x"));
	CHECK_THAT(r.err, Catch::Contains("ret=-ENOENT"));
	CHECK_THAT(r.err, Catch::Contains("signal=SIGKILL"));
}

TEST_CASE("host: a ring buffer that overflows is counted, reported as it happens, and summed at the end")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	// a target that switches on and off CPU about a thousand times a second
	pid_t busy = fork();
	if (busy == 0) {
		execl("/bin/sh", "sh", "-c", "while :; do sleep 0.001; done", (char *)nullptr);
		_exit(127);
	}
	pid_t tool = fork();
	if (tool == 0) {
		int fd = open(d.file("err").c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
		dup2(fd, 2);
		execl(t::procimage_bin().c_str(), "procimage", "-k", "--cpu", "-P", std::to_string(busy).c_str(), "--set",
		      "keytime.ringbuf_kb=64", "-o", ("jsonl:" + d.file("out.jsonl")).c_str(), (char *)nullptr);
		_exit(127);
	}
	for (int i = 0; i < 200 && t::read_file(d.file("err")).find("collecting for") == std::string::npos; i++)
		std::this_thread::sleep_for(std::chrono::milliseconds(25));
	REQUIRE_THAT(t::read_file(d.file("err")), Catch::Contains("collecting for"));
	// the host stops reading while the target switches 1,500 times (3,000 records or more, far
	// beyond what 64 KiB hold): the ring buffer fills and the kernel counts the rest. (Counted
	// from /proc, not timed: a loaded machine runs the shell loop slower.)
	auto switches = [&] {
		std::string st = t::read_file("/proc/" + std::to_string(busy) + "/status");
		auto at = st.find("\nvoluntary_ctxt_switches:");
		return at == std::string::npos ? -1L : std::atol(st.c_str() + at + 26);
	};
	kill(tool, SIGSTOP);
	const long from = switches();
	for (int i = 0; i < 3000 && switches() < from + 1500; i++)
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	CHECK(switches() >= from + 1500);
	kill(tool, SIGCONT);
	// reported while the host runs on (well before its end)
	bool reported = false;
	for (int i = 0; i < 100 && !reported; i++) {
		std::this_thread::sleep_for(std::chrono::milliseconds(20));
		reported = t::read_file(d.file("err")).find("lost") != std::string::npos;
	}
	CHECK(reported);
	kill(tool, SIGINT);
	int st = 0;
	waitpid(tool, &st, 0);
	kill(busy, SIGKILL);
	waitpid(busy, nullptr, 0);
	CHECK(WIFEXITED(st));
	auto recs = t::read_jsonl(d.file("out.jsonl"));
	uint64_t lost_sum = 0, lost_total = 0, summary_lost = 0;
	size_t lost_records = 0, summaries = 0;
	for (const auto &e : recs) {
		if (e["probe"] != "procimage" || e["source"] != "keytime")
			continue;
		if (e["event"] == "lost") {
			lost_records++;
			lost_sum += e["lost"].get<uint64_t>();
			lost_total = e["lost_total"].get<uint64_t>();
		} else if (e["event"] == "summary") {
			summaries++;
			summary_lost = e["lost_total"].get<uint64_t>();
		}
	}
	CHECK(lost_records >= 1);
	CHECK(lost_sum > 0);
	CHECK(lost_sum == lost_total); // each record the loss since the previous one
	REQUIRE(summaries == 1);
	CHECK(summary_lost == lost_total);
	// said once, naming the cause and the setting that avoids it
	std::string err = t::read_file(d.file("err"));
	CHECK_THAT(err, Catch::Contains("records: ringbuf: the ring buffer was full") && Catch::Contains("raise keytime.ringbuf_kb"));
	size_t warnings = 0;
	for (size_t at = 0; (at = err.find("records: ringbuf:", at)) != std::string::npos; at++)
		warnings++;
	CHECK(warnings <= 2); // the first, and at most one more 10 s later
	for (const auto &e : recs)
		if (e["probe"] == "procimage" && e["event"] == "lost" && e["source"] == "keytime")
			CHECK(e["cause"] == "ringbuf");
}

TEST_CASE("host: a JSON-lines file on a full disk ends with its last whole record, and the run says it is incomplete")
{
	REQUIRE_ROOT_OR_SKIP(); // mounts a small tmpfs
	t::temp_dir d;
	const std::string mnt = d.file("full");
	REQUIRE(mkdir(mnt.c_str(), 0755) == 0);
	REQUIRE(t::run({"mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt}).status == 0);
	struct unmount {
		std::string path;
		~unmount() { t::run({"umount", path}); }
	} u{mnt};
	// 300 short commands: about 600 keytime records, far more than 64 KiB of JSON lines
	auto r = t::run({t::procimage_bin(), "-k", "-o", "jsonl:" + mnt + "/out.jsonl", "--", "/bin/sh", "-c",
			 "for i in $(seq 300); do /bin/true; done; echo 300 > " + t::quote(d.file("done"))});
	INFO(r.err);
	CHECK_THAT(r.err, Catch::Contains("No space left on device"));
	// no sink left: collection stops, the command runs on to its end, and the run fails
	// (exit 1) saying its output is incomplete and what the command's status was
	CHECK_THAT(r.err, Catch::Contains("no sink is left to write to: collection stops (the command runs on to its end)"));
	CHECK_THAT(r.err, Catch::Contains("the output is incomplete: sink 'jsonl' failed; the command exited with status 0"));
	CHECK(r.status == 1);
	CHECK(t::read_file(d.file("done")) == "300\n");
	std::string text = t::read_file(mnt + "/out.jsonl");
	REQUIRE(text.size() > 1000);
	CHECK(text.back() == '\n');
	std::istringstream lines(text);
	std::string line;
	size_t whole = 0, broken = 0;
	while (std::getline(lines, line)) {
		auto rec = nlohmann::json::parse(line, nullptr, false);
		(rec.is_discarded() ? broken : whole)++;
	}
	INFO(whole << " whole lines, " << broken << " broken, " << text.size() << " bytes");
	CHECK(broken == 0);
	CHECK(whole > 50);

	// the CSV sink too: every file it had open ends with a whole row
	REQUIRE(t::run({"umount", mnt}).status == 0);
	REQUIRE(t::run({"mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt}).status == 0);
	r = t::run({t::procimage_bin(), "-k", "-o", "csv:" + mnt + "/csv", "--", "/bin/sh", "-c",
		    "for i in $(seq 300); do /bin/true; done"});
	INFO(r.err);
	CHECK(r.status == 1);
	CHECK_THAT(r.err, Catch::Contains("No space left on device"));
	size_t files = 0;
	for (const auto &e : std::filesystem::directory_iterator(mnt + "/csv")) {
		std::string csv = t::read_file(e.path());
		INFO(e.path() << ": " << csv.size() << " bytes, ends with " << csv.substr(csv.size() > 40 ? csv.size() - 40 : 0));
		REQUIRE(csv.size() >= 2);
		CHECK(csv.substr(csv.size() - 2) == "\r\n");
		// each row has the header's number of cells (these records hold no quoted commas)
		std::istringstream rows(csv);
		std::string header, row;
		std::getline(rows, header);
		auto cells = [](const std::string &l) { return std::count(l.begin(), l.end(), ','); };
		while (std::getline(rows, row))
			if (row.find('"') == std::string::npos)
				CHECK(cells(row) == cells(header));
		files++;
	}
	CHECK(files >= 4);
}

TEST_CASE("csv: each file's columns are its record type's properties in the record schema, in order")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	auto r = t::run({t::procimage_bin(), "-k", "--cpu", "--profile", "-r", "-s", "-S", "--interval", "200", "-o",
			 "csv:" + d.file("csv"), "-o", "jsonl:" + d.file("out.jsonl"), "--", "/bin/sh", "-c",
			 "ls /nonexistent; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"});
	REQUIRE(r.status == 0);
	auto schema = t::run({t::procimage_bin(), "--print-schema"});
	REQUIRE(schema.status == 0);
	auto doc = nlohmann::ordered_json::parse(schema.out);
	// every type written, from the JSON lines of the same run
	std::set<std::string> types;
	size_t rows = 0;
	for (const auto &rec : t::read_jsonl(d.file("out.jsonl"))) {
		types.insert(rec["probe"].get<std::string>() + "." + rec["event"].get<std::string>());
		rows++;
	}
	CHECK(types.count("keytime.exec"));
	CHECK(types.count("keytime.oncpu"));
	CHECK(types.count("resource.process"));
	CHECK(types.count("syscall.sequence"));
	CHECK(types.count("syscall.totals"));
	CHECK(types.count("schedule.system"));
	CHECK(types.count("procimage.summary"));
	size_t csv_rows = 0;
	for (const auto &type : types) {
		INFO(type);
		const auto &def = doc["$defs"][type];
		REQUIRE(def.is_object());
		std::string want;
		for (const auto &[key, _] : def["properties"].items())
			want += (want.empty() ? "" : ",") + key;
		std::string name = type;
		name[name.find('.')] = '_';
		std::string csv = t::read_file(d.file("csv/" + name + ".csv"));
		auto eol = csv.find("\r\n");
		REQUIRE(eol != std::string::npos);
		CHECK(csv.substr(0, eol) == want);
		// one line per record (no field here holds a line break)
		for (size_t at = eol + 2; (at = csv.find("\r\n", at)) != std::string::npos; at += 2)
			csv_rows++;
	}
	CHECK(csv_rows == rows);
}
