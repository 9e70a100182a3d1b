// SPDX-License-Identifier: Apache-2.0
// The record schema: declarations are checked, joined strictly, and a record that differs from
// its declaration does not validate (tests/tools/validate_records.py, python3-jsonschema).
#include "support.hpp"

#include "schema.hpp"

#include <catch2/catch.hpp>

namespace t = procimage::test;
namespace schema = procimage::core::schema;

namespace {

std::string refusal(const char *text)
{
	auto r = schema::parse_declaration("demo", text);
	return r.ok() ? std::string("accepted") : r.err().msg;
}

// Validate JSON lines against the schema of the plugins built here; the validator's exit status.
t::run_result validate(const std::string &lines)
{
	t::temp_dir d;
	auto s = t::run({t::procimage_bin(), "--print-schema"});
	REQUIRE(s.status == 0);
	t::write_file(d.file("schema.json"), s.out);
	t::write_file(d.file("r.jsonl"), lines);
	return t::run({"/usr/bin/python3", t::source_dir() + "/tests/tools/validate_records.py", "--whole",
		       d.file("schema.json"), d.file("r.jsonl")});
}

const std::string exit_record =
	R"({"ts_ns":1795639501123456789,"probe":"keytime","event":"exit","pid":42,"tid":42,"comm":"sh","cpu":1,)"
	R"("pid_start_ns":777,"exit_code":0,"signal":0,"core_dumped":false,"group_dead":true,"ppid":1,)"
	R"("thread_lifetime_ns":5,"process_lifetime_ns":5,"created_by":"fork"})";

} // namespace

TEST_CASE("schema: a declaration is refused, naming the plugin, record and problem")
{
	CHECK_THAT(refusal("{"), Catch::StartsWith("plugin 'demo': record schema: not JSON"));
	CHECK_THAT(refusal(R"({"records": {}})"), Catch::Contains("non-empty \"records\""));
	CHECK_THAT(refusal(R"({"records": {"e": {"description": "d", "about": "task",
		"properties": {"pid": {"type": "integer", "description": "x"}}}}})"),
		   Catch::Contains("records.e: field 'pid' has the name of a header key"));
	CHECK_THAT(refusal(R"({"records": {"e": {"description": "d", "about": "sometimes"}}})"),
		   Catch::Contains("records.e: about: expected"));
	CHECK_THAT(refusal(R"({"records": {"e": {"description": "d", "about": "scoped"}}})"),
		   Catch::Contains("records.e: scopes:"));
	CHECK_THAT(refusal(R"({"records": {"e": {"description": "d", "about": "task", "colour": 1}}})"),
		   Catch::Contains("records.e: unknown key 'colour'"));
	CHECK_THAT(refusal(R"({"records": {"e": {"description": "d", "about": "task",
		"properties": {"n": {"type": "integer", "description": "x"}},
		"metrics": [{"name": "demo_total", "type": "counter", "value": "m", "help": "h"}]}}})"),
		   Catch::Contains("records.e.metrics[0]: value:"));
	CHECK(refusal(R"({"records": {"e": {"description": "d", "about": "task",
		"properties": {"n": {"type": "integer", "description": "x"}},
		"metrics": [{"name": "demo_total", "type": "counter", "value": "n", "labels": {"pid": "pid"}, "help": "h"}]}}})") ==
	      "accepted");
}

TEST_CASE("schema: the joined document is strict, versioned, and every declared record type closes its properties")
{
	auto joined = schema::join({{"keytime", nullptr}});
	REQUIRE(joined.ok());
	const auto &doc = *joined;
	CHECK(doc["$schema"] == "https://json-schema.org/draft/2020-12/schema");
	CHECK(doc["x-schema-version"] == schema::version);
	CHECK(doc["$defs"]["procimage.activated"]["additionalProperties"] == false);
	CHECK(doc["$defs"]["keytime.*"]["x-undeclared"] == true);
	// a declaration that is refused makes the join fail
	auto bad = schema::join({{"demo", "{"}});
	REQUIRE(!bad.ok());
	CHECK_THAT(bad.err().msg, Catch::StartsWith("plugin 'demo'"));
}

TEST_CASE("schema: a record validates only as declared (unknown key, missing header field, wrong type)")
{
	REQUIRE(validate(exit_record + "\n").status == 0);
	auto unknown = exit_record;
	unknown.insert(unknown.size() - 1, R"(,"colour":"red")");
	auto r = validate(unknown + "\n");
	CHECK(r.status == 1);
	CHECK_THAT(r.out, Catch::Contains("keytime.exit") && Catch::Contains("colour"));
	auto no_start = exit_record;
	no_start.erase(no_start.find(R"("pid_start_ns":777,)"), std::string(R"("pid_start_ns":777,)").size());
	r = validate(no_start + "\n");
	CHECK(r.status == 1);
	CHECK_THAT(r.out, Catch::Contains("pid_start_ns"));
	auto text_code = exit_record;
	text_code.replace(text_code.find(R"("exit_code":0)"), 13, R"("exit_code":"0")");
	CHECK(validate(text_code + "\n").status == 1);
	// an event the probe does not declare
	CHECK(validate(R"({"ts_ns":1,"probe":"keytime","event":"reborn","pid":1,"tid":1,"comm":"x","pid_start_ns":1})"
		       "\n")
		      .status == 1);
}

TEST_CASE("schema: the idle task of a CPU is named by pid 0, tid 0 and its cpu, without pid_start_ns")
{
	// keytime's oncpu of CPU 1's idle task (a task record), profile's stack row of it (a thread row)
	const std::string oncpu =
		R"({"ts_ns":1795639501123456789,"probe":"keytime","event":"oncpu","pid":0,"tid":0,"comm":"swapper/1","cpu":1,"dur_ns":5})";
	const std::string stack =
		R"({"ts_ns":1795639501123456789,"probe":"profile","event":"stack","pid":0,"tid":0,"comm":"swapper/1","cpu":1,)"
		R"("scope":"thread","window":"interval","interval_ns":1000000000,"samples":3,"ustack":[],"kstack":["x+0x1"]})";
	for (const auto &idle : {oncpu, stack}) {
		INFO(idle);
		CHECK(validate(idle + "\n").status == 0);
		// the idle task belongs to no process: a pid_start_ns is wrong
		auto with_start = idle;
		with_start.insert(with_start.find(R"("cpu":1,)") + 8, R"("pid_start_ns":777,)");
		CHECK(validate(with_start + "\n").status == 1);
		// which CPU's idle task it is must be said
		auto no_cpu = idle;
		no_cpu.erase(no_cpu.find(R"("cpu":1,)"), 8);
		CHECK(validate(no_cpu + "\n").status == 1);
		// pid 0 with a thread id is no task at all
		auto tid = idle;
		tid.replace(tid.find(R"("tid":0)"), 7, R"("tid":5)");
		CHECK(validate(tid + "\n").status == 1);
		// any other task must carry its process's start
		auto other = idle;
		other.replace(other.find(R"("pid":0,"tid":0)"), 15, R"("pid":42,"tid":42)");
		CHECK(validate(other + "\n").status == 1);
		other.insert(other.find(R"("cpu":1,)") + 8, R"("pid_start_ns":777,)");
		CHECK(validate(other + "\n").status == 0);
	}
}
