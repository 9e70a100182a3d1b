// SPDX-License-Identifier: Apache-2.0
// syscall probe without the kernel: configuration checks, decoding of canned sequence records,
// and the arithmetic that turns per-CPU cumulative counters into interval figures.
#include "probe_harness.hpp"
#include "syscall_records.h"
#include "syscall_report.hpp"

#include <procimage/sdk.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#include <numeric>

using namespace procimage;
using nlohmann::json;
namespace t = procimage::test;
namespace sc = procimage::syscalls;

namespace {

std::string validate(const std::string &cfg) { return t::validate_probe("syscall", cfg); }

struct instance : t::probe_instance {
	instance() : t::probe_instance("syscall") {}
};

sc_batch canned_batch()
{
	sc_batch b{};
	b.h.kind = SC_BATCH;
	b.h.cpu = 1;
	b.h.ts_boot_ns = 5000000000ULL;
	b.h.pid = 300;
	b.h.tid = 301;
	b.h.pid_start_ns = 4000000000ULL;
	std::strncpy(b.h.comm, "worker", sizeof b.h.comm);
	b.first = 40;
	b.reason = SC_FLUSH_FULL;
	b.n = 3;
	b.calls[0] = {250, 1234, 110, 0};      // getppid() = 1234
	b.calls[1] = {3100, -2, 257, 0};       // openat() = -ENOENT
	b.calls[2] = {100200300, 16, 0, 0};    // read() = 16, 100.2 ms
	b.h.size = static_cast<uint16_t>(offsetof(sc_batch, calls) + 3 * sizeof(sc_call));
	return b;
}

sc_stats stats(uint64_t count, uint64_t errors, uint64_t total, uint64_t max, uint64_t min)
{
	sc_stats s{};
	s.count = count;
	s.errors = errors;
	s.total_ns = total;
	s.max_ns = max;
	s.min_ns = min;
	return s;
}

} // namespace

TEST_CASE("syscall config: each bad key is named")
{
	CHECK(validate("{}") == "");
	CHECK(validate(R"({"batch": 50, "by": "thread", "inprogress_ms": 0, "system_rows": "all"})") == "");
	CHECK_THAT(validate(R"({"batch": 0})"), Catch::StartsWith("batch: expected an integer in 1..50"));
	CHECK_THAT(validate(R"({"batch": 51})"), Catch::StartsWith("batch: expected an integer in 1..50, got 51"));
	CHECK_THAT(validate(R"({"batch": "10"})"), Catch::StartsWith("batch: expected an integer"));
	CHECK_THAT(validate(R"({"by": "cpu"})"), Catch::StartsWith("by: expected one of auto, none, process, thread"));
	CHECK_THAT(validate(R"({"sequence": 1})"), Catch::StartsWith("sequence: expected true or false"));
	CHECK_THAT(validate(R"({"inprogress_ms": -1})"), Catch::StartsWith("inprogress_ms: expected an integer in 0..3600000"));
	CHECK_THAT(validate(R"({"max_keys": 10})"), Catch::StartsWith("max_keys: expected an integer in 64.."));
	CHECK_THAT(validate(R"({"ringbuf_kb": 1000})"), Catch::StartsWith("ringbuf_kb: expected a power of two, got 1000"));
	CHECK(validate(R"({"system": "counts", "system_rows": "all"})") == "");
	CHECK_THAT(validate(R"({"system": "off", "system_rows": "all"})"), Catch::StartsWith("system_rows: needs"));
	CHECK_THAT(validate(R"({"system": false})"), Catch::StartsWith("system: expected a string"));
	CHECK_THAT(validate(R"({"system": "all"})"), Catch::StartsWith("system: expected one of counts, latency, off"));
	CHECK_THAT(validate(R"({"system_rows": "some"})"), Catch::StartsWith("system_rows: expected one of all, auto, none, target"));
	CHECK_THAT(validate(R"({"sample": 3})"), Catch::StartsWith("sample: unknown key"));
}

TEST_CASE("syscall sequence records: names, results split into value and errno, latencies")
{
	instance k;
	sc_batch b = canned_batch();
	REQUIRE(k.feed(&b, b.h.size) == PI_OK);
	REQUIRE(k.c.records.size() == 1);
	const json &r = k.c.records[0];
	CHECK(r["probe"] == "syscall");
	CHECK(r["event"] == "sequence");
	CHECK(r["pid"] == 300);
	CHECK(r["tid"] == 301);
	CHECK(r["comm"] == "worker");
	CHECK(r["ts_ns"] == 1005000000000ULL);
	CHECK(r["first"] == 40);
	CHECK(r["count"] == 3);
	CHECK(r["reason"] == "full");
	CHECK(r["syscalls"] == json::array({"getppid", "openat", "read"}));
	CHECK(r["nr"] == json::array({110, 257, 0}));
	CHECK(r["ret"] == json::array({1234, 0, 16}));
	CHECK(r["errno"] == json::array({0, 2, 0}));
	CHECK(r["lat_ns"] == json::array({250, 3100, 100200300}));
	CHECK_FALSE(r.contains("calls"));
}

TEST_CASE("syscall sequence records: truncated, unknown and unnamed input")
{
	instance k;
	sc_batch b = canned_batch();
	// a record cut after two calls: only those two are decoded
	REQUIRE(k.feed(&b, offsetof(sc_batch, calls) + 2 * sizeof(sc_call)) == PI_OK);
	REQUIRE(k.c.records.size() == 1);
	CHECK(k.c.records[0]["count"] == 2);
	// shorter than its fixed part, or of an unknown kind: an error, nothing emitted
	CHECK(k.feed(&b, offsetof(sc_batch, calls) - 1) == PI_ERR);
	sc_batch u = b;
	u.h.kind = 99;
	CHECK(k.feed(&u, u.h.size) == PI_ERR);
	CHECK(k.c.records.size() == 1);
	// numbers without an x86_64 name; a reason the decoder does not know
	sc_batch odd = canned_batch();
	odd.n = 1;
	odd.calls[0] = {10, -1, 4000, 0};
	odd.reason = SC_FLUSH_END;
	REQUIRE(k.feed(&odd, odd.h.size) == PI_OK);
	CHECK(k.c.records[1]["syscalls"] == json::array({"nr_4000"}));
	CHECK(k.c.records[1]["errno"] == json::array({1}));
	CHECK(k.c.records[1]["reason"] == "end");
}

TEST_CASE("syscall figures: per-CPU copies merge, the interval is the difference of two snapshots")
{
	// two CPUs; the interval that just ended is 5 (slot 1); CPU 1's slot 1 is from interval 3
	sc_stats cpu[2] = {stats(3, 1, 600, 400, 50), stats(2, 0, 300, 250, 20)};
	cpu[0].iepoch[1] = 5;
	cpu[0].imax_ns[1] = 400;
	cpu[0].imin_ns[1] = 100;
	cpu[1].iepoch[1] = 3;
	cpu[1].imax_ns[1] = 250;
	cpu[1].imin_ns[1] = 20;
	cpu[0].hist[5] = 1; // 50
	cpu[0].hist[6] = 1; // 100..127
	cpu[0].hist[8] = 1; // 400
	cpu[1].hist[4] = 1; // 20
	cpu[1].hist[7] = 1; // 250
	sc::figures f = sc::merge(cpu, 2, 5);
	CHECK(f.count == 5);
	CHECK(f.errors == 1);
	CHECK(f.total_ns == 900);
	CHECK(f.max_ns == 400);
	CHECK(f.min_ns == 20);
	CHECK(f.have_interval);
	CHECK(f.imax_ns == 400); // CPU 1's stale slot is ignored
	CHECK(f.imin_ns == 100);

	// the previous snapshot had CPU 0's first call (50 ns) and CPU 1's two
	sc_stats before_cpu[2] = {stats(1, 0, 50, 50, 50), stats(2, 0, 300, 250, 20)};
	before_cpu[0].hist[5] = 1;
	before_cpu[1].hist[4] = 1;
	before_cpu[1].hist[7] = 1;
	sc::figures before = sc::merge(before_cpu, 2, 4);
	sc::interval d = sc::since(f, before);
	CHECK(d.count == 2);
	CHECK(d.errors == 1);
	CHECK(d.total_ns == 550);
	CHECK(d.avg_ns() == 275);
	CHECK(d.max_ns == 400);
	CHECK(d.min_ns == 100);
	CHECK(d.hist[6] == 1);
	CHECK(d.hist[8] == 1);
	CHECK(std::accumulate(d.hist.begin(), d.hist.end(), uint64_t{0}) == 2);

	// no change: an empty interval
	CHECK(sc::since(f, f).count == 0);
	// counters older than the snapshot (a reset in between): nothing
	CHECK(sc::since(before, f).count == 0);
}

TEST_CASE("syscall figures: calls counted after their interval was read are bounded by the histogram")
{
	sc_stats now = stats(2, 0, 3000, 2000, 1000);
	now.hist[9] = 1;  // 1000 ns
	now.hist[10] = 1; // 2000 ns
	sc::figures f = sc::merge(&now, 1, 7); // no slot holds interval 7
	CHECK_FALSE(f.have_interval);
	sc::interval d = sc::since(f, sc::figures{});
	CHECK(d.count == 2);
	CHECK(d.min_ns == 1000); // 2^9 = 512, raised to the cumulative minimum
	CHECK(d.max_ns == 2000); // 2^11 - 1 = 2047, lowered to the cumulative maximum
}

TEST_CASE("syscall figures: the top 3 by count, ties by number, zeros left out")
{
	std::map<uint32_t, uint64_t> c = {{0, 256}, {1, 512}, {110, 1000}, {257, 7}, {3, 512}, {9, 0}};
	auto top = sc::top(c, 3);
	REQUIRE(top.size() == 3);
	CHECK(top[0] == std::make_pair(110u, uint64_t{1000}));
	CHECK(top[1] == std::make_pair(1u, uint64_t{512}));
	CHECK(top[2] == std::make_pair(3u, uint64_t{512}));
	CHECK(sc::top({{9, 0}}, 3).empty());
	CHECK(sc::top({{4, 1}}, 3).size() == 1);
	CHECK(sc::is_error(-1));
	CHECK(sc::is_error(-4095));
	CHECK_FALSE(sc::is_error(-4096));
	CHECK_FALSE(sc::is_error(0));
}

TEST_CASE("syscall sequence records read as a chain of calls on the stdout sink; JSON keeps the arrays")
{
	// the syscall plugin decodes a kernel batch; the readable form is taken from the record it
	// emits (its fields live only during the emit call)
	struct collector {
		std::vector<std::string> text;
		std::vector<std::string> json;
		static void emit(void *ctx, const pi_record *r)
		{
			auto *c = static_cast<collector *>(ctx);
			c->text.push_back(sinks::human_syscall_sequence(*r));
			c->json.push_back(sinks::record_json(*r));
		}
	} c;
	auto plugin = t::probe_plugin("syscall");
	pi_host h{};
	h.size = sizeof h;
	h.api_major = PI_API_MAJOR;
	h.api_minor = PI_API_MINOR;
	h.ctx = &c;
	h.emit = collector::emit;
	h.control_map_fd = h.targets_map_fd = -1;
	char err[PI_ERRBUF_SIZE] = "";
	void *inst = plugin->desc->probe->create(&h, "{}", err, sizeof err);
	INFO(err);
	REQUIRE(inst);
	sc_batch b = canned_batch();
	REQUIRE(plugin->desc->probe->on_data(inst, 0, &b, b.h.size) == PI_OK);
	// a failed call with a number the decoder has no name for, an address-sized result
	sc_batch odd = canned_batch();
	odd.n = 2;
	odd.calls[0] = {10, -13, 4000, 0};
	odd.calls[1] = {900, 0x7f0012345000LL, 9, 0};
	REQUIRE(plugin->desc->probe->on_data(inst, 0, &odd, odd.h.size) == PI_OK);
	plugin->desc->probe->destroy(inst);

	REQUIRE(c.text.size() == 2);
	CHECK(c.text[0] == "first=40 count=3 reason=full  getppid = 1234 <250ns> → openat = -1 ENOENT <3.100µs> → "
			   "read = 16 <100.2ms>");
	CHECK(c.text[1] == "first=40 count=2 reason=full  nr_4000 = -1 EACCES <10ns> → mmap = 0x7f0012345000 <900ns>");
	// the machine-readable forms keep the parallel arrays
	auto j = json::parse(c.json[0]);
	CHECK(j["syscalls"] == json::array({"getppid", "openat", "read"}));
	CHECK(j["errno"] == json::array({0, 2, 0}));

	// any other record, or arrays of different lengths: no chain (the sink prints the fields)
	procimage::sdk::record other("syscall", "syscall");
	other.str("syscall", "read").u64("count", 3);
	CHECK(sinks::human_syscall_sequence(other.view()).empty());
	procimage::sdk::record bad("syscall", "sequence");
	bad.strv("syscalls", {"read", "write"}).u64v("ret", {1}).u64v("errno", {0, 0});
	CHECK(sinks::human_syscall_sequence(bad.view()).empty());
}

TEST_CASE("syscall sequence records: one recorded from ls, as the stdout sink shows it")
{
	// the fields of a sequence record that procimage -s -o jsonl:… -- ls /nonexistent wrote
	procimage::sdk::record r("syscall", "sequence");
	r.ids(1716, 1716).comm("ls");
	r.u64("first", 10)
		.u64("count", 10)
		.str("reason", "full")
		.strv("syscalls", {"brk", "mmap", "access", "openat", "newfstatat", "mmap", "close", "openat", "read",
				   "newfstatat"})
		.u64v("nr", {12, 9, 21, 257, 262, 9, 3, 257, 0, 262})
		.u64v("lat_ns", {621, 3236, 7194, 2975, 6393, 4147, 470, 11662, 1643, 1142})
		.u64v("ret", {94866384666624ULL, 139726704054272ULL, 0, 3, 0, 139726704005120ULL, 0, 3, 832, 0})
		.u64v("errno", {0, 0, 2, 0, 0, 0, 0, 0, 0, 0});
	CHECK(sinks::human_syscall_sequence(r.view()) ==
	      "first=10 count=10 reason=full  brk = 0x5647cd28c000 <621ns> → mmap = 0x7f14a88f9000 <3.236µs> → "
	      "access = -1 ENOENT <7.194µs> → openat = 3 <2.975µs> → newfstatat = 0 <6.393µs> → "
	      "mmap = 0x7f14a88ed000 <4.147µs> → close = 0 <470ns> → openat = 3 <11.66µs> → read = 832 <1.643µs> → "
	      "newfstatat = 0 <1.142µs>");
}
