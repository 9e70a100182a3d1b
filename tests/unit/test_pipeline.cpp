// SPDX-License-Identifier: Apache-2.0
// Pipeline validation: every error names its JSON path; nothing is loaded.
#include "host.hpp"
#include "pipeline.hpp"
#include "support.hpp"

#include <catch2/catch.hpp>

#include <filesystem>

using namespace procimage::core;
using nlohmann::json;
namespace t = procimage::test;

static std::string parse_error(const json &doc)
{
	auto r = parse_pipeline(doc);
	REQUIRE_FALSE(r.ok());
	CHECK(r.err().code == EXIT_USAGE);
	return r.err().msg;
}

// Structural checks plus each plugin's own configuration check (plugins from the build tree).
static std::string prepare_error(const json &doc)
{
	auto p = parse_pipeline(doc);
	REQUIRE(p.ok());
	host h;
	host_options o;
	o.plugin_dirs = {t::build_dir() + "/plugins", PROCIMAGE_TEST_PLUGIN_DIR};
	auto r = h.prepare(*p, o);
	REQUIRE_FALSE(r.ok());
	CHECK(r.err().code == EXIT_USAGE);
	return r.err().msg;
}

TEST_CASE("a minimal pipeline gets a stdout sink and wires every probe to every sink")
{
	auto p = parse_pipeline(json::parse(R"({"version": 1, "probes": {"keytime": {}}})"));
	REQUIRE(p.ok());
	REQUIRE(p->probes.size() == 1);
	CHECK(p->probes[0].plugin == "keytime");
	REQUIRE(p->sinks.size() == 1);
	CHECK(p->sinks[0].id == "stdout");
	CHECK(p->sinks_of("keytime") == std::vector<size_t>{0});
	CHECK(p->target.kind == target_spec::kind_t::all);
	CHECK_FALSE(p->target_given);
	CHECK_FALSE(p->starts_active()); // no target: load and wait for procimage-ctl
	CHECK(p->interval_ms == 1000);
}

TEST_CASE("a pipeline starts active when it names a target, unless told otherwise")
{
	auto p = parse_pipeline(json::parse(R"({"version": 1, "probes": {"keytime": {}}, "target": {"all": true}})"));
	REQUIRE(p.ok());
	CHECK(p->starts_active());
	p = parse_pipeline(json::parse(R"({"version": 1, "probes": {"keytime": {}}, "target": {"tgid": 1}, "start": "inactive"})"));
	REQUIRE(p.ok());
	CHECK_FALSE(p->starts_active());
	p = parse_pipeline(json::parse(R"({"version": 1, "probes": {"keytime": {}}, "start": "active"})"));
	REQUIRE(p.ok());
	CHECK(p->starts_active());
	p = parse_pipeline(json::parse(R"({"version": 1, "probes": {"keytime": {}}, "command": ["true"]})"));
	REQUIRE(p.ok());
	CHECK(p->starts_active());
}

TEST_CASE("component ids name their plugin, OpenTelemetry style")
{
	auto p = parse_pipeline(json::parse(R"({"version": 1,
		"probes": {"keytime/cpu": {"cpu": true, "target": {"tgid": 42, "follow": true}}},
		"sinks": {"jsonl/all": {"path": "/tmp/a"}, "jsonl/b": {"plugin": "jsonl"}, "stdout": {}},
		"pipelines": [{"probes": ["keytime/cpu"], "sinks": ["jsonl/all", "stdout"]}]})"));
	REQUIRE(p.ok());
	CHECK(p->probes[0].plugin == "keytime");
	CHECK(p->probes[0].config == json::parse(R"({"cpu": true})"));
	REQUIRE(p->probes[0].target.has_value());
	CHECK(p->probes[0].target->kind == target_spec::kind_t::tgid);
	CHECK(p->probes[0].target->ids == std::vector<uint32_t>{42});
	CHECK(p->probes[0].target->follow);
	CHECK(p->sinks_of("keytime/cpu") == std::vector<size_t>{0, 2});
}

TEST_CASE("structural errors name the JSON path")
{
	CHECK(parse_error(json::parse(R"({"probes": {"keytime": {}}})")) ==
	      "version: required (this procimage reads version 1)");
	CHECK(parse_error(json::parse(R"({"version": 2, "probes": {"keytime": {}}})")) ==
	      "version: unsupported version 2 (this procimage reads version 1)");
	CHECK(parse_error(json::parse(R"({"version": "1", "probes": {}})")) == "version: expected an integer, got a string");
	CHECK(parse_error(json::parse(R"({"version": 1, "probes": {"keytime": {}}, "sink": {}})")) == "sink: unknown key");
	CHECK(parse_error(json::parse(R"({"version": 1})")) == "probes: required (at least one probe)");
	CHECK(parse_error(json::parse(R"({"version": 1, "probes": {}})")) == "probes: expected at least one probe");
	CHECK(parse_error(json::parse(R"({"version": 1, "probes": {"keytime": 3}})")) ==
	      "probes.keytime: expected an object, got an integer");
	CHECK(parse_error(json::parse(R"({"version": 1, "probes": {"keytime": {"plugin": 5}}})")) ==
	      "probes.keytime.plugin: expected a plugin name or a path to a .so");
	CHECK(parse_error(json::parse(R"({"version": 1, "probes": {"keytime": {}}, "interval_ms": 5})")) ==
	      "interval_ms: expected an integer in 10..3600000");
	CHECK(parse_error(json::parse(R"({"version": 1, "probes": {"keytime": {}}, "start": "later"})")) ==
	      "start: expected \"active\" or \"inactive\"");
	CHECK(parse_error(json::parse(R"({"version": 1, "probes": {"keytime": {}}, "command": "ls"})")) ==
	      "command: expected an array of names, got a string");
	CHECK(parse_error(json::parse(R"([1, 2])")) == "a pipeline must be a JSON object, got an array");
}

TEST_CASE("dangling references in pipelines are errors")
{
	CHECK(parse_error(json::parse(R"({"version": 1, "probes": {"keytime": {}}, "sinks": {"stdout": {}},
		"pipelines": [{"probes": ["keytime"], "sinks": ["nope"]}]})")) ==
	      "pipelines[0].sinks[0]: no sink named \"nope\" in \"sinks\"");
	CHECK(parse_error(json::parse(R"({"version": 1, "probes": {"keytime": {}}, "sinks": {"stdout": {}},
		"pipelines": [{"probes": ["keytime", "lock"], "sinks": ["stdout"]}]})")) ==
	      "pipelines[0].probes[1]: no probe named \"lock\" in \"probes\"");
	CHECK(parse_error(json::parse(R"({"version": 1, "probes": {"keytime": {}, "keytime/b": {}},
		"pipelines": [{"probes": ["keytime"], "sinks": ["stdout"]}]})")) ==
	      "probes.keytime/b: not wired to any sink in \"pipelines\"");
	CHECK(parse_error(json::parse(R"({"version": 1, "probes": {"keytime": {}},
		"pipelines": [{"probes": ["keytime"], "sinks": ["stdout"], "filter": 1}]})")) ==
	      "pipelines[0].filter: unknown key (expected probes or sinks)");
}

TEST_CASE("target errors name the JSON path")
{
	CHECK(parse_error(json::parse(R"({"version": 1, "probes": {"keytime": {}}, "target": {"tid": "x"}})")) ==
	      "target.tid: expected a non-negative integer, got a string");
	CHECK(parse_error(json::parse(R"({"version": 1, "probes": {"keytime": {}}, "target": {"tid": 1, "tgid": 2}})")) ==
	      "target: give exactly one of \"all\", \"tid\", \"tgid\", \"cgroup\", \"unit\", \"container\"");
	CHECK(parse_error(json::parse(R"({"version": 1, "probes": {"keytime": {}}, "target": {"tgid": 1, "cgroup": "a"}})")) ==
	      "target: give exactly one of \"all\", \"tid\", \"tgid\", \"cgroup\", \"unit\", \"container\"");
	CHECK(parse_error(json::parse(R"({"version": 1, "probes": {"keytime": {}}, "target": {"unit": 3}})")) ==
	      "target.unit: expected a systemd unit name, e.g. \"cron.service\"");
	CHECK(parse_error(json::parse(R"({"version": 1, "probes": {"keytime": {}}, "target": {"tid": 0}})")) ==
	      "target.cpu: required with \"tid\": 0 (which CPU's idle task)");
	CHECK(parse_error(json::parse(R"({"version": 1, "probes": {"keytime": {"target": {"pid": 3}}}})")) ==
	      "probes.keytime.target.pid: unknown key (expected all, tid, tgid, cgroup, unit, container, cpu, include_self or follow)");
	CHECK(parse_error(json::parse(R"({"version": 1, "probes": {"keytime": {}}, "target": {"tid": 5, "follow": true}})")) ==
	      "target.follow: only meaningful with \"tgid\"");
	auto ok = parse_pipeline(json::parse(R"({"version": 1, "probes": {"keytime": {}}, "target": {"tid": 0, "cpu": 1}})"));
	REQUIRE(ok.ok());
	CHECK(ok->target.idle_cpu == 1);
	// a cgroup target is kept as given (looked up on activation) and printed back the same way
	for (const char *k : {"cgroup", "unit", "container"}) {
		auto c = parse_pipeline(json::parse(std::string(R"({"version": 1, "probes": {"keytime": {}}, "target": {")") + k +
						   R"(": "x1"}})"));
		REQUIRE(c.ok());
		CHECK(c->target.kind == procimage::core::target_spec::kind_t::cgroup);
		CHECK(c->target.cgroup_query == "x1");
		CHECK(c->target.to_json() == json{{k, "x1"}});
	}
}

TEST_CASE("plugin configuration errors name the JSON path of the key")
{
	CHECK(prepare_error(json::parse(R"({"version": 1, "probes": {"keytime": {}}, "sinks": {"jsonl": {"path": 3}}})")) ==
	      "sinks.jsonl.path: expected a string");
	CHECK(prepare_error(json::parse(R"({"version": 1, "probes": {"keytime": {"argv_max": 99}}})")) ==
	      "probes.keytime.argv_max: expected an integer in 1..32, got 99");
	CHECK(prepare_error(json::parse(R"({"version": 1, "probes": {"keytime": {"bogus": true}}})")) ==
	      "probes.keytime.bogus: unknown key");
	CHECK(prepare_error(json::parse(R"({"version": 1, "probes": {"keytime": {"stacks": true}}})")) ==
	      "probes.keytime.stacks: needs \"cpu\": true (stacks are taken at off-CPU points)");
	CHECK(prepare_error(json::parse(R"({"version": 1, "probes": {"keytime": {}}, "sinks": {"csv": {}}})")) ==
	      "sinks.csv.dir: required (folder for one CSV file per record type)");
	CHECK(prepare_error(json::parse(R"({"version": 1, "probes": {"keytime": {}}, "sinks": {"stdout": {"time": "mars"}}})")) ==
	      "sinks.stdout.time: expected one of local, utc, got \"mars\"");
}

TEST_CASE("missing plugins are errors before anything is loaded")
{
	auto msg = prepare_error(json::parse(R"({"version": 1, "probes": {"nosuch": {}}})"));
	CHECK_THAT(msg, Catch::StartsWith("probes.nosuch: no probe plugin named \"nosuch\" (looked for probe_nosuch.so in "));
	msg = prepare_error(json::parse(R"({"version": 1, "probes": {"keytime": {}}, "sinks": {"x": {"plugin": "/no/such.so"}}})"));
	CHECK(msg == "sinks.x: no sink plugin file /no/such.so");
	msg = prepare_error(json::parse(R"({"version": 1, "probes": {"stdout": {}}})"));
	CHECK_THAT(msg, Catch::StartsWith("probes.stdout: no probe plugin named \"stdout\""));
}

TEST_CASE("the binary exits 2 on a bad pipeline and names the problem")
{
	t::temp_dir d;
	t::write_file(d.file("p.json"), R"({"version": 1, "probes": {"keytime": {}}, "sinks": {"jsonl": {"path": 3}}})");
	auto r = t::run({t::procimage_bin(), "--pipeline", d.file("p.json"), "--check"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("sinks.jsonl.path: expected a string"));

	t::write_file(d.file("bad.json"), "{\"version\": 1,");
	r = t::run({t::procimage_bin(), "--pipeline", d.file("bad.json")});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("bad.json: invalid JSON"));

	r = t::run({t::procimage_bin(), "--pipeline", d.file("missing.json")});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("missing.json: cannot open pipeline file"));

	r = t::run({t::procimage_bin(), "--bogus-flag"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("bogus-flag"));

	r = t::run({t::procimage_bin()});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("nothing to do"));

	r = t::run({t::procimage_bin(), "-p", "1", "-P", "1", "-k"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("give only one target"));
	r = t::run({t::procimage_bin(), "-P", "1", "--unit", "x", "-k"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("give only one target"));
}

TEST_CASE("every shipped example pipeline passes --check")
{
	for (const auto &name : {"keytime-stdout.json", "keytime-jsonl-csv.json", "keytime-cpu.json"}) {
		INFO(name);
		auto r = t::run({t::procimage_bin(), "--pipeline", t::source_dir() + "/examples/pipelines/" + name, "--check"});
		CHECK(r.err == "");
		CHECK(r.status == 0);
	}
}

TEST_CASE("the shorthand flags build the documented pipeline")
{
	auto r = t::run({t::procimage_bin(), "-k", "--cpu", "-P", "1234", "-o", "jsonl:/tmp/x.jsonl", "-o", "stdout",
			 "--print-pipeline"});
	REQUIRE(r.status == 0);
	auto j = json::parse(r.out);
	CHECK(j["probes"] == json::parse(R"({"keytime": {"cpu": true}})"));
	CHECK(j["target"] == json::parse(R"({"tgid": 1234})"));
	CHECK(j["sinks"] == json::parse(R"({"jsonl": {"path": "/tmp/x.jsonl"}, "stdout": {}})"));
	// and it reads back as the same pipeline
	auto p = parse_pipeline(j);
	REQUIRE(p.ok());
	CHECK(p->to_json() == j);
}

TEST_CASE("naming a probe that is not built is a clear error")
{
	// the first seed probe this build lacks (or a name no build has)
	std::string missing = "nosuchprobe", flag = "--nosuchprobe";
	for (const auto &[name, f] : std::vector<std::pair<std::string, std::string>>{
		     {"lock", "-l"}, {"resource", "-r"}, {"syscall", "-s"}, {"schedule", "-S"}})
		if (!std::filesystem::exists(t::build_dir() + "/plugins/probe_" + name + ".so")) {
			missing = name;
			flag = f;
			break;
		}
	if (missing == "nosuchprobe") {
		auto p = parse_pipeline(json::parse(R"({"version": 1, "probes": {"nosuchprobe": {}}})"));
		REQUIRE(p.ok());
		host h;
		host_options o;
		o.plugin_dirs = {t::build_dir() + "/plugins"};
		auto r = h.prepare(*p, o);
		REQUIRE_FALSE(r.ok());
		CHECK_THAT(r.err().msg, Catch::Contains("no probe plugin named \"nosuchprobe\""));
		return;
	}
	auto r = t::run({t::procimage_bin(), flag, "--check"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("probes." + missing + ": no probe plugin named \"" + missing + "\""));
}

TEST_CASE("--set and --batch write probe configuration keys, checked by the probe")
{
	auto r = t::run({t::procimage_bin(), "-s", "-k", "--batch", "20", "--set", "keytime.argv_max=4", "--set",
			 "keytime.cpu=true", "--print-pipeline"});
	REQUIRE(r.status == 0);
	auto j = json::parse(r.out);
	CHECK(j["probes"]["syscall"] == json::parse(R"({"batch": 20})"));
	CHECK(j["probes"]["keytime"] == json::parse(R"({"argv_max": 4, "cpu": true})"));
	r = t::run({t::procimage_bin(), "-k", "--set", "keytime.argv_max=99", "--check"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("probes.keytime.argv_max: expected an integer in 1..32, got 99"));
	r = t::run({t::procimage_bin(), "-k", "--set", "lock.mode=contention", "--check"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("--set lock.mode=contention: no probe lock on the command line"));
	r = t::run({t::procimage_bin(), "-k", "--set", "keytime", "--check"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("expected PROBE.KEY=VALUE"));
	r = t::run({t::procimage_bin(), "-k", "--batch", "5", "--check"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("--batch is a syscall option"));
}

TEST_CASE("a word that is no option is refused, not dropped")
{
	// a command without "--" would otherwise trace the whole system
	auto r = t::run({t::procimage_bin(), "-k", "sleep", "1", "--print-pipeline"});
	CHECK(r.status == 2);
	CHECK(r.out == "");
	CHECK_THAT(r.err, Catch::Contains("unexpected argument 'sleep'") && Catch::Contains("procimage -k -- sleep"));
	// the seed's "-k 1"
	r = t::run({t::procimage_bin(), "-k", "1", "--print-pipeline"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("unexpected argument '1'") && Catch::Contains("--cpu"));
	// the controller: a bare number is not a target
	r = t::run({t::build_dir() + "/procimage-ctl", "-a", "1234"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("unexpected argument '1234'") && Catch::Contains("-P TGID"));
	// after "--" the words are the command
	r = t::run({t::procimage_bin(), "-k", "--print-pipeline", "--", "sleep", "1"});
	REQUIRE(r.status == 0);
	CHECK(json::parse(r.out)["command"] == json::parse(R"(["sleep", "1"])"));
}
