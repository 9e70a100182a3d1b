// SPDX-License-Identifier: Apache-2.0
//
// The portrait of a real run: the demo forks, vforks, execs, fails an exec, has a child killed
// and runs threads with locks and syscalls. The report, live and read back, must agree with
// what the demo wrote down itself and with the probes' own totals; the Chrome trace must be
// well formed; the HTML must render in headless Chromium and show every pid.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

using nlohmann::json;
namespace t = procimage::test;

namespace {

const json *process(const json &rep, long pid)
{
	for (auto &p : rep["processes"])
		if (p["pid"].get<long>() == pid)
			return &p;
	return nullptr;
}

} // namespace

TEST_CASE("report: the demo's portrait agrees with the demo and the probes", "[report]")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	auto r = t::run({t::procimage_bin(), "-q", "-a", "--cpu", "-n", "report-test", "-o", "jsonl:" + d.file("run.jsonl"),
			 "-o", "report:" + d.file("live.json"), "--", t::build_dir() + "/procimage-demo"},
			{{"PROCIMAGE_DEMO_LOG", d.file("demo.log")}});
	INFO(r.err);
	REQUIRE(r.status == 3);
	auto truth = t::read_kv(d.file("demo.log"));
	for (auto fmt : {"json", "text", "chrome-trace", "html"}) {
		auto g = t::run({t::procimage_bin(), "report", "--format", fmt, "-o", d.file(std::string("rep.") + fmt), d.file("run.jsonl")});
		INFO(g.err);
		REQUIRE(g.status == 0);
	}
	auto rep = json::parse(t::read_file(d.file("rep.json")));
	auto live = json::parse(t::read_file(d.file("live.json")));
	// the live sink saw the same records, less the summaries written after the sinks closed
	CHECK(live["processes"].size() == rep["processes"].size());

	std::map<long, std::pair<int, int>> ends = {{truth["pid"], {3, 0}},
						    {truth["fork_child"], {7, 0}},
						    {truth["vfork_child"], {0, 0}},
						    {truth["killed_child"], {0, 9}},
						    {truth["group_child"], {5, 0}}};
	REQUIRE(rep["processes"].size() == ends.size());
	for (auto &[pid, end] : ends) {
		INFO("pid " << pid);
		auto *p = process(rep, pid);
		REQUIRE(p);
		CHECK((*p)["ended"]["exit_code"].get<int>() == end.first);
		CHECK((*p)["ended"]["signal"].get<int>() == end.second);
	}
	auto *demo = process(rep, truth["pid"]);
	CHECK((*demo)["failed_execs"].size() == 1);
	CHECK((*demo)["threads"].size() == 3);
	CHECK((*process(rep, truth["vfork_child"]))["created_by"] == "vfork");
	CHECK((*process(rep, truth["vfork_child"]))["execs"][0] == "/bin/true");
	CHECK((*process(rep, truth["group_child"]))["threads"].size() == 2);
	std::vector<long> kids;
	for (auto &k : (*demo)["children"])
		kids.push_back(k);
	std::sort(kids.begin(), kids.end());
	CHECK(kids == std::vector<long>{truth["fork_child"], truth["vfork_child"], truth["killed_child"], truth["group_child"]});

	// figures equal the probes' own whole-run totals, exactly: a process's last `total` row
	std::map<long, json> syscall_totals;
	for (const auto &rec : t::read_jsonl(d.file("run.jsonl")))
		if (rec["probe"] == "syscall" && rec["event"] == "totals" && rec["scope"] == "process" &&
		    rec["window"] == "total")
			syscall_totals[rec["pid"].get<long>()] = rec;
	CHECK(!syscall_totals.empty());
	for (const auto &[pid, rec] : syscall_totals) {
		auto *p = process(rep, pid);
		REQUIRE(p);
		CHECK((*p)["syscalls"]["count"] == rec["count"]);
		CHECK((*p)["syscalls"]["errors"] == rec["errors"]);
	}
	for (const auto &rec : t::read_jsonl(d.file("run.jsonl"))) {
		if (rec["probe"] == "lock" && rec["event"] == "process" && rec["window"] == "total") {
			auto *p = process(rep, rec["pid"]);
			REQUIRE(p);
			auto &l = (*p)["locks"][rec["lock_type"].get<std::string>()];
			CHECK(l["acquisitions"] == rec["acquisitions"]);
			CHECK(l["hold_ns"] == rec["hold_total_ns"]);
		}
	}

	// the text names every process and how it ended
	auto text = t::read_file(d.file("rep.text"));
	CHECK(text.find("killed by signal 9") != std::string::npos);
	for (auto &[pid, _] : ends)
		CHECK(text.find(std::to_string(pid) + " ") != std::string::npos);

	// Chrome trace: every process and thread named, slices non-negative, no overlap per track
	auto tr = json::parse(t::read_file(d.file("rep.chrome-trace")));
	std::set<long> named_procs;
	std::set<std::pair<long, long>> named_threads;
	std::map<std::pair<long, long>, std::vector<std::pair<long long, long long>>> slices;
	for (auto &e : tr["traceEvents"]) {
		auto ph = e["ph"].get<std::string>();
		if (ph == "M" && e["name"] == "process_name")
			named_procs.insert(e["pid"].get<long>());
		else if (ph == "M" && e["name"] == "thread_name")
			named_threads.insert({e["pid"].get<long>(), e["tid"].get<long>()});
		else if (ph == "X") {
			CHECK(e["ts"].get<double>() >= 0);
			CHECK(e["dur"].get<double>() >= 0);
			slices[{e["pid"].get<long>(), e["tid"].get<long>()}].push_back(
				// the format's resolution is 1 ns (µs with 3 decimals): compare whole ns
				{std::llround(e["ts"].get<double>() * 1000),
				 std::llround((e["ts"].get<double>() + e["dur"].get<double>()) * 1000)});
		}
	}
	for (auto &[pid, _] : ends)
		CHECK(named_procs.count(pid));
	CHECK(named_threads.count({truth["pid"], truth["thread1_tid"]}));
	CHECK(named_threads.count({truth["group_child"], truth["group_thread_tid"]}));
	CHECK(!slices.empty());
	for (auto &[track, v] : slices) {
		INFO("track " << track.first << "/" << track.second);
		CHECK(named_threads.count(track));
		std::sort(v.begin(), v.end());
		for (size_t i = 1; i < v.size(); i++)
			CHECK(v[i].first >= v[i - 1].second);
	}

	// HTML in headless Chromium: rendered without a console error, every pid on the page
	auto chromium = t::sh("command -v chromium");
	if (chromium.status != 0) {
		WARN("chromium is not installed (scripts/install-deps.sh installs it): HTML not rendered");
		return;
	}
	std::vector<std::string> flags = {"chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
					  "--no-first-run", "--disable-background-networking", "--disable-component-update",
					  "--disable-sync", "--user-data-dir=" + d.file("chromium"), "--enable-logging=stderr",
					  "--window-size=1200,1400"};
	auto dom_argv = flags;
	dom_argv.push_back("--dump-dom");
	dom_argv.push_back("file://" + d.file("rep.html"));
	auto dom = t::run(dom_argv);
	REQUIRE(dom.status == 0);
	CHECK(dom.err.find("CONSOLE") == std::string::npos);
	CHECK(dom.out.find("procimage portrait") != std::string::npos);
	for (auto &[pid, _] : ends)
		CHECK(dom.out.find(std::to_string(pid)) != std::string::npos);
	auto shot_argv = flags;
	shot_argv.push_back("--screenshot=" + d.file("report.png"));
	shot_argv.push_back("file://" + d.file("rep.html"));
	auto shot = t::run(shot_argv);
	CHECK(shot.status == 0);
	CHECK(t::read_file(d.file("report.png")).size() > 10000);
	if (const char *keep = std::getenv("PROCIMAGE_REPORT_SCREENSHOT"))
		t::sh("cp " + d.file("report.png") + " '" + std::string(keep) + "'");
}
