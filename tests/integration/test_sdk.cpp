// SPDX-License-Identifier: Apache-2.0
// A third-party probe plugin (examples/sigcount) builds out of tree against the installed
// plugin SDK only, and runs through procimage.
#include "support.hpp"

#include <catch2/catch.hpp>

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
	uint64_t usr1 = 0;
	for (const auto &rec : t::read_jsonl(d.file("out.jsonl")))
		if (rec["probe"] == "sigcount" && rec["event"] == "signals" && rec["pid"] == pid && rec["signal"] == 10)
			usr1 += rec["count"].get<uint64_t>();
	CHECK(usr1 == 25);

	r = t::run({prefix + "/bin/procimage", "--plugin-dir", d.file("b"), "--list-plugins"});
	CHECK_THAT(r.out, Catch::Contains("probe  sigcount"));
}
