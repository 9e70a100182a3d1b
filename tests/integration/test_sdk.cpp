// SPDX-License-Identifier: Apache-2.0
// A third-party probe plugin (examples/sigcount) builds out of tree against the installed
// plugin SDK only, and runs through procimage.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <filesystem>
#include <map>
#include <sstream>

using nlohmann::json;
namespace t = procimage::test;

TEST_CASE("sdk: examples/sigcount builds against the installed SDK and counts signals")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	const std::string prefix = d.file("prefix");
	auto r = t::run({"cmake", "--install", t::build_dir(), "--prefix", prefix});
	INFO(r.out << r.err);
	REQUIRE(r.status == 0);
	// only the installed headers and CMake package: the example's build sees no source tree
	r = t::run({"cmake", "-S", t::source_dir() + "/examples/sigcount", "-B", d.file("b"),
		    "-DCMAKE_PREFIX_PATH=" + prefix});
	INFO(r.out << r.err);
	REQUIRE(r.status == 0);
	r = t::run({"cmake", "--build", d.file("b")});
	INFO(r.out << r.err);
	REQUIRE(r.status == 0);

	t::write_file(d.file("p.json"), R"({"version": 1,
		"probes": {"sigcount": {}},
		"sinks": {"jsonl": {"path": ")" + d.file("out.jsonl") + R"("}}})");
	r = t::run({prefix + "/bin/procimage", "--plugin-dir", d.file("b"), "--pipeline", d.file("p.json"), "--",
		    t::build_dir() + "/procimage-workload", "signals", "25", "10"});
	INFO(r.err);
	REQUIRE(r.status == 0);
	long pid = std::stol(r.out);
	// the plugin's own record schema joins the host's: its records validate against it
	r = t::run({prefix + "/bin/procimage", "--plugin-dir", d.file("b"), "--print-schema"});
	REQUIRE(r.status == 0);
	auto schema = nlohmann::json::parse(r.out);
	REQUIRE(schema["$defs"].contains("sigcount.signals"));
	CHECK(schema["$defs"]["sigcount.signals"]["x-metrics"][0]["name"] == "procimage_sigcount_signals_total");
	t::write_file(d.file("schema.json"), r.out);
	r = t::run({"/usr/bin/python3", t::source_dir() + "/tests/tools/validate_records.py", d.file("schema.json"),
		    d.file("out.jsonl")});
	INFO(r.out << r.err);
	CHECK(r.status == 0);
	// and the installed copy of the built-in schema is there
	CHECK(std::filesystem::exists(prefix + "/share/procimage/records.schema.json"));
	uint64_t usr1 = 0;
	for (const auto &rec : t::read_jsonl(d.file("out.jsonl"), false))
		if (rec["probe"] == "sigcount" && rec["event"] == "signals" && rec["pid"] == pid && rec["signal"] == 10)
			usr1 += rec["count"].get<uint64_t>();
	CHECK(usr1 == 25);

	r = t::run({prefix + "/bin/procimage", "--plugin-dir", d.file("b"), "--list-plugins"});
	CHECK_THAT(r.out, Catch::Contains("probe  sigcount"));

	// its metric declaration gives the Prometheus sink a family of its own: scraped while the
	// run goes on, after the workload's signals and one more interval
	const int port = t::free_port();
	json pm = {{"version", 1},
		   {"interval_ms", 200},
		   {"probes", {{"sigcount", json::object()}}},
		   {"sinks", {{"prometheus", {{"listen", "127.0.0.1:" + std::to_string(port)}}}}}};
	t::write_file(d.file("pm.json"), pm.dump());
	const std::string scrape = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
				   "'http://127.0.0.1:" + std::to_string(port) + "/metrics').read().decode())";
	r = t::run({prefix + "/bin/procimage", "--plugin-dir", d.file("b"), "--pipeline", d.file("pm.json"), "--", "/bin/sh",
		    "-c",
		    // (a new counter is exposed at 0 by the first scrape that sees it: the second shows it)
		    "\"$1\" signals 25 10 > \"$2\" && sleep 1 && /usr/bin/python3 -c \"$3\" > /dev/null && "
		    "/usr/bin/python3 -c \"$3\" > \"$4\"",
		    "sh",
		    t::build_dir() + "/procimage-workload", d.file("pm.pid"), scrape, d.file("metrics.txt")});
	INFO(r.err);
	REQUIRE(r.status == 0);
	const std::string wl = std::to_string(std::stol(t::read_file(d.file("pm.pid")))); // its first word
	const std::string metrics = t::read_file(d.file("metrics.txt"));
	INFO(metrics);
	CHECK_THAT(metrics, Catch::Contains("# TYPE procimage_sigcount_signals_total counter\n"));
	CHECK_THAT(metrics, Catch::Contains("procimage_sigcount_signals_total{pid=\"" + wl + "\",signal=\"SIGUSR1\"} 25\n"));

	// a fatal signal is counted as the signal that was sent, not as the SIGKILL it becomes
	t::write_file(d.file("p2.json"), R"({"version": 1,
		"probes": {"sigcount": {}},
		"sinks": {"jsonl": {"path": ")" + d.file("term.jsonl") + R"("}}})");
	r = t::run({prefix + "/bin/procimage", "--plugin-dir", d.file("b"), "--pipeline", d.file("p2.json"), "--",
		    "/bin/sh", "-c", "kill -TERM $$; sleep 5"});
	INFO(r.err);
	CHECK(r.status == 128 + SIGTERM);
	std::map<long, uint64_t> by_signal;
	for (const auto &rec : t::read_jsonl(d.file("term.jsonl"), false))
		if (rec["probe"] == "sigcount" && rec["event"] == "signals")
			by_signal[rec["signal"].get<long>()] += rec["count"].get<uint64_t>();
	CHECK(by_signal[SIGTERM] == 1);
	CHECK(by_signal.count(SIGKILL) == 0);
}

TEST_CASE("sdk: the installed pkg-config file names the install prefix and the one version")
{
	REQUIRE_ROOT_OR_SKIP(); // cmake --install of the build tree writes into it as root
	t::temp_dir d;
	const std::string prefix = d.file("elsewhere");
	auto r = t::run({"cmake", "--install", t::build_dir(), "--prefix", prefix});
	INFO(r.out << r.err);
	REQUIRE(r.status == 0);
	r = t::run({"pkg-config", "--variable=prefix", "procimage-plugin"}, {{"PKG_CONFIG_PATH", prefix + "/lib/pkgconfig"}});
	if (r.status != 0) // a multiarch libdir
		r = t::run({"sh", "-c", "PKG_CONFIG_PATH=$(dirname $(find '" + prefix +
					       "' -name procimage-plugin.pc)) pkg-config --variable=prefix procimage-plugin"});
	INFO(r.err);
	REQUIRE(r.status == 0);
	CHECK(r.out == prefix + "\n");
	// one version everywhere: the package's and each installed plugin's
	r = t::run({"sh", "-c", "PKG_CONFIG_PATH=$(dirname $(find '" + prefix +
				       "' -name procimage-plugin.pc)) pkg-config --modversion procimage-plugin"});
	REQUIRE(r.status == 0);
	std::string version = r.out.substr(0, r.out.find('\n'));
	r = t::run({prefix + "/bin/procimage", "--list-plugins"});
	REQUIRE(r.status == 0);
	std::istringstream rows(r.out);
	std::string line;
	int plugins = 0;
	while (std::getline(rows, line)) {
		std::istringstream f(line);
		std::string kind, name, v;
		f >> kind >> name >> v;
		if (kind != "probe" && kind != "sink")
			continue;
		plugins++;
		CHECK(v == version);
	}
	CHECK(plugins >= 9);
	// the demo workload is no command of its own
	CHECK(t::run({"test", "-e", prefix + "/bin/procimage-demo"}).status != 0);
	CHECK(t::run({"test", "-x", prefix + "/libexec/procimage/procimage-demo"}).status == 0);
}
