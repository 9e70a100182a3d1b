// SPDX-License-Identifier: Apache-2.0
// Bad input never aborts: each is refused with one line naming what was wrong and exit 2.
#include "control.hpp"
#include "pipeline.hpp"
#include "support.hpp"

#include <catch2/catch.hpp>

#include <string>

#include <unistd.h>

namespace t = procimage::test;
using namespace procimage::core;

namespace {

std::string nested(size_t depth)
{
	return std::string(depth, '[') + std::string(depth, ']');
}

std::string ctl_bin() { return t::build_dir() + "/procimage-ctl"; }

} // namespace

TEST_CASE("bad input: a pipeline nested 100000 deep is refused naming its JSON path")
{
	std::string doc = R"({"version":1,"probes":{"keytime":{"config":{"x":)" + nested(100000) + "}}}}";
	auto r = parse_json_text(doc);
	REQUIRE(!r);
	CHECK(r.err().code == EXIT_USAGE);
	CHECK_THAT(r.err().msg, Catch::StartsWith("JSON nested deeper than 64 levels at probes.keytime.config.x[0][0]"));
	// the deepest accepted
	std::string ok = R"({"a":)" + nested(MAX_JSON_DEPTH - 1) + "}";
	CHECK(parse_json_text(ok));
	// the same through the program, from a file
	t::temp_dir d;
	t::write_file(d.file("deep.json"), doc);
	auto run = t::run({t::procimage_bin(), "--pipeline", d.file("deep.json"), "--check"});
	CHECK(run.status == 2);
	CHECK_THAT(run.err, Catch::Contains("deep.json: JSON nested deeper than 64 levels at probes.keytime.config.x[0]"));
}

TEST_CASE("bad input: bytes after the pipeline document (a NUL, garbage) are refused")
{
	auto nul = parse_json_text(std::string("{\"version\":1}\0garbage", 21));
	REQUIRE(!nul);
	CHECK(nul.err().msg == "a NUL byte at offset 13: a pipeline is one JSON document, nothing after it");
	auto trailing = parse_json_text("{\"version\":1} {}");
	REQUIRE(!trailing);
	CHECK_THAT(trailing.err().msg, Catch::StartsWith("invalid JSON: "));
	t::temp_dir d;
	t::write_file(d.file("nul.json"), std::string("{\"version\":1}\0garbage", 21));
	auto run = t::run({t::procimage_bin(), "--pipeline", d.file("nul.json"), "--check"});
	CHECK(run.status == 2);
	CHECK_THAT(run.err, Catch::Contains("nul.json: a NUL byte at offset 13"));
}

TEST_CASE("bad input: a directory given as the pipeline file is refused, not aborted")
{
	t::temp_dir d;
	auto run = t::run({t::procimage_bin(), "--pipeline", d.path(), "--check"});
	CHECK(run.status == 2);
	CHECK(run.err == "procimage: " + d.path() + ": a directory, not a pipeline file\n");
}

TEST_CASE("bad input: --set values nested too deep are refused; plain words stay strings")
{
	auto deep = parse_set_value(nested(100000));
	REQUIRE(!deep);
	CHECK_THAT(deep.err().msg, Catch::StartsWith("JSON nested deeper than 64 levels at [0][0]"));
	CHECK(*parse_set_value("contention") == "contention");
	CHECK(*parse_set_value("50") == 50);
	auto run = t::run({t::procimage_bin(), "-k", "--set", "keytime.x=" + nested(1000), "--print-pipeline"});
	CHECK(run.status == 2);
	CHECK_THAT(run.err, Catch::Contains("--set keytime.x="));
}

TEST_CASE("bad input: negative --interval and -p are refused with their own value")
{
	auto r = t::run({t::procimage_bin(), "--interval", "-5", "-k", "--check", "--", "/bin/true"});
	CHECK(r.status == 2);
	CHECK(r.err == "procimage: --interval: expected 10..3600000 ms, got -5\n");
	r = t::run({t::procimage_bin(), "-p", "-1", "-k", "--check"});
	CHECK(r.status == 2);
	CHECK(r.err == "procimage: --pid: expected 0..4294967295, got -1\n");
	r = t::run({ctl_bin(), "-a", "-P", "-1"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("--tgid: expected 0..4294967295, got -1"));
}

TEST_CASE("bad input: a --plugin-dir that does not exist is refused")
{
	auto r = t::run({t::procimage_bin(), "--plugin-dir", "/nonexistent", "-k", "--check", "--", "/bin/true"});
	CHECK(r.status == 2);
	CHECK(r.err == "procimage: --plugin-dir /nonexistent: No such file or directory\n");
	t::temp_dir d;
	t::write_file(d.file("f"), "x");
	r = t::run({t::procimage_bin(), "--plugin-dir", d.file("f"), "-k", "--check", "--", "/bin/true"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains(d.file("f") + ": not a directory"));
}

TEST_CASE("bad input: a plugin file that is no ELF object is named as such")
{
	t::temp_dir d;
	t::write_file(d.file("sink_text.so"), "not a shared object\n");
	auto r = t::run({t::procimage_bin(), "-k", "-o", d.file("sink_text.so"), "--check", "--", "/bin/true"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("plugin " + d.file("sink_text.so") + ": not an ELF shared object"));
	CHECK_THAT(r.err, !Catch::Contains("Bad file descriptor"));
}

TEST_CASE("bad input: a control channel name longer than the socket address is refused, never cut")
{
	// the longest name whose /run/procimage/NAME.sock fits a Unix socket address (107 bytes)
	std::string fits(87, 'n'), too_long(88, 'n');
	CHECK(check_control_name(fits));
	auto e = check_control_name(too_long);
	REQUIRE(!e);
	CHECK(e.err().msg == "--name: \"" + too_long + "\" is 88 bytes; a control channel name has at most 87");
	auto r = t::run({ctl_bin(), "--status", "--name", too_long});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("a control channel name has at most 87"));
	r = t::run({t::procimage_bin(), "-a", "--name", too_long, "--print-pipeline"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("a control channel name has at most 87"));
	// a name is a file name in /run/procimage: no directories
	for (const std::string bad : {"a/b", "..", "."}) {
		auto b = check_control_name(bad);
		REQUIRE(!b);
		CHECK(b.err().msg == "--name: \"" + bad + "\" is not a plain name (no '/', not . or ..)");
	}
}

TEST_CASE("bad input: procimage-ctl -a -k takes keytime without on/off-CPU intervals")
{
	// no host on this channel: the request is built (no usage error) and then finds nobody
	auto r = t::run({ctl_bin(), "-a", "-k", "--name", "unit-no-host-" + std::to_string(getpid())});
	CHECK(r.status == 1);
	CHECK_THAT(r.err, Catch::Contains("no procimage host is running"));
	r = t::run({ctl_bin(), "-a", "-k", "2"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("-k: expected 0 (without on/off-CPU) or 1 (with), got 2"));
}

TEST_CASE("bad input: --duration takes a positive number of seconds, and no command")
{
	for (const std::string bad : {"0", "-1", "abc", "1e3", "nan", "inf", "", "2.5.1", "604801"}) {
		auto r = t::run({t::procimage_bin(), "-k", "--duration", bad, "--check"});
		INFO(bad << ": " << r.err);
		CHECK(r.status == 2);
		CHECK(r.err == "procimage: --duration: expected a number of seconds more than 0 and at most 604800 "
			       "(decimals allowed, e.g. 2.5), got '" + bad + "'\n");
	}
	auto r = t::run({t::procimage_bin(), "-k", "--duration", "1", "--check", "--", "/bin/true"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::StartsWith("procimage: --duration cannot go with a command"));
	// decimals are kept as given, in the pipeline the flags build
	r = t::run({t::procimage_bin(), "-k", "-P", "1", "--duration", "2.5", "--print-pipeline"});
	REQUIRE(r.status == 0);
	CHECK(nlohmann::json::parse(r.out)["duration_s"] == 2.5);
	// the pipeline document says the same, with the same refusals
	t::temp_dir d;
	t::write_file(d.file("p.json"), R"({"version": 1, "probes": {"keytime": {}}, "duration_s": 0})");
	r = t::run({t::procimage_bin(), "--pipeline", d.file("p.json"), "--check"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("duration_s: expected a number of seconds, more than 0 and at most 604800"));
	t::write_file(d.file("p.json"),
		      R"({"version": 1, "probes": {"keytime": {}}, "duration_s": 1, "command": ["/bin/true"]})");
	r = t::run({t::procimage_bin(), "--pipeline", d.file("p.json"), "--check"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("duration_s: cannot go with a command"));
}

TEST_CASE("bad input: --follow goes with -P only")
{
	for (const std::vector<std::string> &args : std::vector<std::vector<std::string>>{
		     {"-k", "--follow"}, {"-k", "-p", "1", "--follow"}, {"-k", "--follow", "--", "/bin/true"}}) {
		std::vector<std::string> argv = {t::procimage_bin(), "--check"};
		argv.insert(argv.end(), args.begin(), args.end());
		auto r = t::run(argv);
		CHECK(r.status == 2);
		CHECK_THAT(r.err, Catch::StartsWith("procimage: --follow goes with -P TGID"));
	}
	auto r = t::run({t::procimage_bin(), "-k", "-P", "1", "--follow", "--print-pipeline"});
	REQUIRE(r.status == 0);
	CHECK(nlohmann::json::parse(r.out)["target"] == nlohmann::json{{"tgid", 1}, {"follow", true}});
}

TEST_CASE("bad input: -o stdout takes - or a file; with -- CMD the readable output goes to standard error")
{
	auto stdout_sink = [](const std::vector<std::string> &extra) {
		std::vector<std::string> argv = {t::procimage_bin(), "-k", "--print-pipeline"};
		argv.insert(argv.end(), extra.begin(), extra.end());
		auto r = t::run(argv);
		INFO(r.err);
		REQUIRE(r.status == 0);
		return nlohmann::json::parse(r.out)["sinks"]["stdout"];
	};
	CHECK(stdout_sink({"--", "/bin/true"}) == nlohmann::json{{"stream", "stderr"}});
	CHECK(stdout_sink({"-o", "stdout", "--", "/bin/true"}) == nlohmann::json{{"stream", "stderr"}});
	CHECK(stdout_sink({"-o", "stdout:-", "--", "/bin/true"}) == nlohmann::json{{"stream", "stdout"}});
	CHECK(stdout_sink({"-o", "stdout:/tmp/x.txt", "--", "/bin/true"}) == nlohmann::json{{"path", "/tmp/x.txt"}});
	CHECK(stdout_sink({"-P", "1"}) == nlohmann::json::object());
	auto r = t::run({t::procimage_bin(), "-k", "-o", "stdout:", "--check"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("--output stdout:: give a file after the colon, or - for standard output"));
	t::temp_dir d;
	t::write_file(d.file("p.json"),
		      R"({"version": 1, "probes": {"keytime": {}}, "sinks": {"stdout": {"stream": "stderr", "path": "x"}}})");
	r = t::run({t::procimage_bin(), "--pipeline", d.file("p.json"), "--check"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("give either \"stream\" or \"path\", not both"));
}

TEST_CASE("bad input: procimage-ctl -d -k deactivates keytime alone, without -k 0")
{
	auto r = t::run({ctl_bin(), "-d", "-k", "--check"});
	INFO(r.err);
	REQUIRE(r.status == 0);
	auto req = nlohmann::json::parse(r.out);
	CHECK(req["cmd"] == "deactivate");
	CHECK(req["images"] == nlohmann::json::array({"keytime"}));
	// and sent to no host, it fails as a missing host, not as a bad command line
	r = t::run({ctl_bin(), "-d", "-k", "--name", "unit-no-host-" + std::to_string(getpid())});
	CHECK(r.status == 1);
	CHECK_THAT(r.err, Catch::Contains("no procimage host is running"));
}

TEST_CASE("bad input: procimage-ctl --check refuses a target that does not exist")
{
	// a pid that cannot exist: above the kernel's pid_max
	long pid_max = std::stol(t::read_file("/proc/sys/kernel/pid_max"));
	std::string missing = std::to_string(pid_max + 1);
	auto r = t::run({ctl_bin(), "--check", "-a", "-k", "-P", missing});
	CHECK(r.status == 2);
	CHECK(r.out.empty());
	CHECK(r.err == "procimage-ctl: process " + missing + " does not exist (see procimage-ctl --help)\n");
	r = t::run({ctl_bin(), "--check", "-a", "-p", missing});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("thread " + missing + " does not exist"));
	// one that does: this test's own process, and its follow flag
	r = t::run({ctl_bin(), "--check", "-a", "-s", "5", "-P", std::to_string(getpid()), "--follow"});
	INFO(r.err);
	REQUIRE(r.status == 0);
	auto req = nlohmann::json::parse(r.out);
	CHECK(req["cmd"] == "activate");
	CHECK(req["target"] == nlohmann::json{{"tgid", getpid()}, {"follow", true}});
	CHECK(req["options"]["syscall"]["batch"] == 5);
}

TEST_CASE("bad input: each bad filter value is one line and exit 2")
{
	auto one_line = [](const std::string &err) {
		return !err.empty() && err.find('\n') == err.size() - 1;
	};
	const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
		{{"-k", "--min-duration", "5"}, "procimage: --min-duration: expected a duration with its unit"},
		{{"-k", "--min-duration", "2h"}, "procimage: --min-duration: expected a duration with its unit"},
		{{"-k", "--min-duration", "1.2.3ms"}, "procimage: --min-duration: expected a duration with its unit"},
		{{"-k", "--min-duration", "ms"}, "procimage: --min-duration: expected a duration with its unit"},
		{{"-k", "--min-duration", "900000s"}, "procimage: --min-duration: expected a duration with its unit"},
		{{"-k", "--comm", ""}, "procimage: --comm: expected a thread name or a pattern, got an empty one"},
		{{"-k", "--comm", "a-name-of-16-chr"}, "procimage: --comm: 'a-name-of-16-chr' is longer than a thread name"},
		{{"-k", "--comm", std::string(40, 'x') + "*"}, "procimage: --comm: '" + std::string(40, 'x') + "*' is longer than 31 bytes"},
		{{"-s", "--syscall", "read,nosuchcall"}, "procimage: --syscall: unknown system call 'nosuchcall'"},
		{{"-s", "--syscall", "read,,write"}, "procimage: --syscall: expected syscall names separated by commas"},
	};
	for (const auto &[args, want] : cases) {
		std::vector<std::string> argv = {t::procimage_bin()};
		argv.insert(argv.end(), args.begin(), args.end());
		argv.push_back("--print-pipeline");
		auto r = t::run(argv);
		INFO(args.back() << ": " << r.err);
		CHECK(r.status == 2);
		CHECK_THAT(r.err, Catch::StartsWith(want));
		CHECK(one_line(r.err));
		CHECK(r.out.empty());
	}
	// nine patterns: one more than the kernel checks
	std::vector<std::string> argv = {t::procimage_bin(), "-k"};
	for (int i = 0; i < 9; i++) {
		argv.push_back("--comm");
		argv.push_back("n" + std::to_string(i));
	}
	argv.push_back("--print-pipeline");
	auto r = t::run(argv);
	CHECK(r.status == 2);
	CHECK(r.err == "procimage: --comm: at most 8 names or patterns\n");

	// the pipeline's "filters" object: the same checks, and no key it does not know
	t::temp_dir d;
	const std::vector<std::pair<std::string, std::string>> docs = {
		{R"({"comm": ["ok"], "color": "red"})", "filters.color: unknown key (expected comm, failed, min_duration or syscall)"},
		{R"({"min_duration": 5})", "filters.min_duration: expected a duration with its unit, as a string"},
		{R"({"min_duration": "5"})", "filters.min_duration: expected a duration with its unit"},
		{R"({"failed": "yes"})", "filters.failed: expected true or false"},
		{R"({"comm": [1]})", "filters.comm[0]: expected a string"},
		{R"({"syscall": ["nosuchcall"]})", "filters.syscall: unknown system call 'nosuchcall'"},
		{R"({"syscall": ["read"]})", "filters.syscall: the syscall filter needs the syscall probe"},
		{R"([])", "filters: expected an object"},
	};
	for (const auto &[filters, want] : docs) {
		t::write_file(d.file("p.json"), R"({"version": 1, "probes": {"keytime": {}}, "filters": )" + filters + "}");
		auto pr = t::run({t::procimage_bin(), "--pipeline", d.file("p.json"), "--print-pipeline"});
		INFO(filters << ": " << pr.err);
		CHECK(pr.status == 2);
		CHECK_THAT(pr.err, Catch::Contains(want));
		CHECK(one_line(pr.err));
	}
	// --syscall NAMES with a pipeline that has no syscall probe
	t::write_file(d.file("p.json"), R"({"version": 1, "probes": {"keytime": {}}})");
	r = t::run({t::procimage_bin(), "--pipeline", d.file("p.json"), "--syscall", "read", "--print-pipeline"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::StartsWith("procimage: filters.syscall: the syscall filter needs the syscall probe"));
	CHECK(one_line(r.err));
}
