// SPDX-License-Identifier: Apache-2.0
// The loss ledger: exact per-cause counts from successive readings of a probe's pi_lost keys,
// and warnings once per cause, then at most once per repeat period.
#include "losses.hpp"

#include <catch2/catch.hpp>

#include <procimage/bpf/common.h>

using namespace procimage::core;

namespace {
constexpr uint64_t S = 1'000'000'000ULL;

std::array<uint64_t, LOST_KEYS> reading(uint64_t ringbuf, uint64_t first, uint64_t unnamed)
{
	std::array<uint64_t, LOST_KEYS> c{};
	c[PI_LOST_RINGBUF] = ringbuf;
	c[PI_LOST_PROBE] = first;
	c[PI_LOST_ANY] = ringbuf + first + unnamed; // key 0 counts every loss
	return c;
}
} // namespace

TEST_CASE("losses: causes are named from the probe's texts and the ring buffer's setting")
{
	const char *names[LOST_KEYS] = {};
	names[PI_LOST_PROBE] = "sc_target: a row found the map full (raise syscall.max_keys)";
	names[PI_LOST_PROBE + 1] = "no map named here";
	loss_ledger l("sys1", names, LOST_KEYS);
	CHECK(l.cause(PI_LOST_PROBE).id == "sc_target");
	CHECK(l.cause(PI_LOST_PROBE).text == "a row found the map full (raise syscall.max_keys)");
	CHECK(l.cause(PI_LOST_PROBE + 1).id == "key3");
	CHECK(l.cause(PI_LOST_RINGBUF).id == "ringbuf");
	CHECK(l.cause(PI_LOST_RINGBUF).text.find("raise sys1.ringbuf_kb") != std::string::npos);
	CHECK(l.cause(PI_LOST_PROBE + 2).id == "other"); // not used by the probe
}

TEST_CASE("losses: exact counts per cause; one warning per cause, then at most one per period")
{
	const char *names[LOST_KEYS] = {};
	names[PI_LOST_PROBE] = "sc_target: full";
	loss_ledger l("syscall", names, LOST_KEYS, 10 * S);

	// nothing lost: nothing to say
	CHECK(l.update(reading(0, 0, 0), 1 * S).empty());

	// first losses: each cause reported and said at once
	auto d = l.update(reading(3, 100, 2), 2 * S);
	REQUIRE(d.size() == 3);
	CHECK(d[0].cause->id == "other");
	CHECK(d[0].lost == 2);
	CHECK(d[1].cause->id == "ringbuf");
	CHECK(d[1].lost == 3);
	CHECK(d[2].cause->id == "sc_target");
	CHECK(d[2].lost == 100);
	for (const auto &x : d) {
		CHECK(x.warn);
		CHECK(x.unwarned == x.lost);
		CHECK(x.cause_total == x.lost);
	}
	CHECK(l.total() == 105);

	// more of one cause 1 s later: in the records, not said again ...
	d = l.update(reading(3, 150, 2), 3 * S);
	REQUIRE(d.size() == 1);
	CHECK(d[0].lost == 50);
	CHECK(d[0].cause_total == 150);
	CHECK_FALSE(d[0].warn);
	d = l.update(reading(3, 170, 2), 5 * S);
	REQUIRE(d.size() == 1);
	CHECK_FALSE(d[0].warn);
	// ... until 10 s after the first warning, with everything since it
	d = l.update(reading(3, 171, 2), 12 * S);
	REQUIRE(d.size() == 1);
	CHECK(d[0].warn);
	CHECK(d[0].unwarned == 71);
	CHECK(d[0].cause_total == 171);
	CHECK(l.total() == 176);

	// a reader's race (a smaller reading) is ignored, never negative
	CHECK(l.update(reading(3, 160, 2), 13 * S).empty());
	CHECK(l.total() == 176);

	auto by = l.by_cause();
	REQUIRE(by.size() == 3);
	CHECK(by[0] == std::pair<std::string, uint64_t>{"other", 2});
	CHECK(by[1] == std::pair<std::string, uint64_t>{"ringbuf", 3});
	CHECK(by[2] == std::pair<std::string, uint64_t>{"sc_target", 171});
}
