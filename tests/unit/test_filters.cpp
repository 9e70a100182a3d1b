// SPDX-License-Identifier: Apache-2.0
// The filters' grammar (docs/filters.md): the flags and the pipeline's "filters" object say the
// same, durations read with their units, comm patterns matched as the host and the kernel do.
#include "filters.hpp"
#include "support.hpp"

#include <procimage/bpf.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#include <string>

namespace t = procimage::test;
using namespace procimage::core;

namespace {

// What pi_comm_match (procimage.bpf.h) does with the words set_common_rodata() writes.
bool kernel_match(const char *pattern, bool glob, const char *comm_bytes)
{
	uint64_t val[2], mask[2], w[2];
	procimage::sdk::comm_pattern_words(pattern, glob, val, mask);
	std::memcpy(w, comm_bytes, sizeof w);
	return ((w[0] ^ val[0]) & mask[0]) == 0 && ((w[1] ^ val[1]) & mask[1]) == 0;
}

} // namespace

TEST_CASE("filters: the flags build the pipeline's filters object, and it reads back the same")
{
	auto r = t::run({t::procimage_bin(), "-k", "--comm", "nginx", "--comm", "w*", "--failed", "--min-duration", "1.5ms",
			 "--syscall", "read,openat", "--print-pipeline"});
	INFO(r.err);
	REQUIRE(r.status == 0);
	auto p = nlohmann::json::parse(r.out);
	CHECK(p["filters"] == nlohmann::json::parse(
				     R"({"comm": ["nginx", "w*"], "failed": true, "min_duration": "1.5ms", "syscall": ["read", "openat"]})"));
	// --syscall NAMES selects the syscall probe, as -s and --syscall alone do
	CHECK(p["probes"].contains("syscall"));
	CHECK(p["probes"].contains("keytime"));
	t::temp_dir d;
	t::write_file(d.file("p.json"), r.out);
	auto again = t::run({t::procimage_bin(), "--pipeline", d.file("p.json"), "--print-pipeline"});
	INFO(again.err);
	REQUIRE(again.status == 0);
	CHECK(nlohmann::json::parse(again.out)["filters"] == p["filters"]);
	auto dur = parse_duration_ns("1.5ms", "x");
	REQUIRE(dur);
	CHECK(*dur == 1500000);
	CHECK(*parse_duration_ns("250ns", "x") == 250);
	CHECK(*parse_duration_ns("500us", "x") == 500000);
	CHECK(*parse_duration_ns("2s", "x") == 2000000000);
	filter_spec f;
	f.comm = {"nginx", "w*", "*d"};
	CHECK(f.comm_matches("nginx"));
	CHECK_FALSE(f.comm_matches("nginx2"));
	CHECK(f.comm_matches("worker"));
	CHECK(f.comm_matches("systemd"));
	CHECK_FALSE(f.comm_matches("bash"));
	CHECK(f.comm_needs_host());
	f.comm = {"nginx", "w*"};
	CHECK_FALSE(f.comm_needs_host());
}

TEST_CASE("filters: the kernel's comm words: exact names whole, globs by their literal prefix")
{
	// a thread name as the kernel may hold it: NUL-terminated, stale bytes after the NUL
	char nginx[16] = "nginx\0stale!!";
	char nginx2[16] = "nginx2";
	char worker[16] = "worker-15-chars";
	CHECK(kernel_match("nginx", false, nginx));
	CHECK_FALSE(kernel_match("nginx", false, nginx2));
	CHECK_FALSE(kernel_match("ngin", false, nginx));
	CHECK(kernel_match("ngin*", true, nginx));
	CHECK(kernel_match("ngin*", true, nginx2));
	CHECK_FALSE(kernel_match("ngin*", true, worker));
	CHECK(kernel_match("worker-15-chars", false, worker));
	// other globs: the kernel keeps every name with the literal prefix (the host decides)
	CHECK(kernel_match("*x", true, nginx));
	CHECK(kernel_match("ng?nx", true, nginx2));
	CHECK_FALSE(kernel_match("w?rker", true, nginx));
	CHECK(procimage::sdk::comm_glob_needs_host("*x"));
	CHECK(procimage::sdk::comm_glob_needs_host("a?c"));
	CHECK_FALSE(procimage::sdk::comm_glob_needs_host("abc*"));
	CHECK_FALSE(procimage::sdk::comm_glob_needs_host("abc"));
}
