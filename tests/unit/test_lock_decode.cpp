// SPDX-License-Identifier: Apache-2.0
// lock's user side: configuration checks, and canned kernel records decoded into the
// documented fields.
#include "lock.h"
#include "probe_harness.hpp"

#include <catch2/catch.hpp>

#include <cerrno>
#include <cstring>

using namespace procimage;
using nlohmann::json;
namespace t = procimage::test;

namespace {

std::string validate(const std::string &cfg) { return t::validate_probe("lock", cfg); }

struct lock_instance : t::probe_instance {
	explicit lock_instance(const std::string &cfg = "{}") : t::probe_instance("lock", cfg) {}
};

} // namespace

TEST_CASE("lock config: defaults, ranges and unknown keys name the key")
{
	CHECK(validate("{}") == "");
	CHECK(validate(R"({"mode": "contention", "system": false, "top": 0, "contention_min_us": 0})") == "");
	CHECK(validate(R"({"mode": "full", "acquisitions": true, "uprobe_attach": "single"})") == "");
	CHECK_THAT(validate(R"({"mode": "fast"})"), Catch::StartsWith("mode: expected one of auto, contention, full"));
	CHECK_THAT(validate(R"({"acquisitions": 1})"), Catch::StartsWith("acquisitions: expected true or false"));
	CHECK_THAT(validate(R"({"contention_min_us": -1})"),
		   Catch::StartsWith("contention_min_us: expected an integer in 0..60000000"));
	CHECK_THAT(validate(R"({"max_locks": 8})"), Catch::StartsWith("max_locks: expected an integer in 16.."));
	CHECK_THAT(validate(R"({"ringbuf_kb": 1000})"), Catch::StartsWith("ringbuf_kb: expected a power of two, got 1000"));
	CHECK_THAT(validate(R"({"uprobe_attach": "perf"})"), Catch::StartsWith("uprobe_attach: expected one of"));
	CHECK_THAT(validate(R"({"mode": "contention", "acquisitions": true})"),
		   Catch::StartsWith("acquisitions: needs hold tracking"));
	CHECK_THAT(validate(R"({"holders": true})"), Catch::StartsWith("holders: unknown key"));
	CHECK(validate(R"({"attach_after_ms": 0})") == "");
	CHECK(validate(R"({"attach_after_ms": 60000})") == "");
	CHECK_THAT(validate(R"({"attach_after_ms": -1})"), Catch::StartsWith("attach_after_ms: expected an integer in 0..60000"));
	CHECK_THAT(validate(R"({"attach_after_ms": "soon"})"), Catch::StartsWith("attach_after_ms: expected an integer"));
	CHECK(validate(R"({"lock_return": true})") == "");
	CHECK(validate(R"({"mode": "full", "lock_return": false})") == "");
	CHECK_THAT(validate(R"({"lock_return": "yes"})"), Catch::StartsWith("lock_return: expected true or false"));
	CHECK_THAT(validate(R"({"mode": "contention", "lock_return": true})"),
		   Catch::StartsWith("lock_return: return probes are uprobes"));
}

TEST_CASE("lock acquisition records: type, function, errno, wait and hold")
{
	lock_instance k;
	lk_acq e{};
	t::fill_header(e.h, LK_ACQ, sizeof e, 100, 101, "worker");
	e.lock_addr = 0x5555deadbe00ULL;
	e.request_ns = 4000000000ULL;
	e.acquired_ns = 4010000000ULL;
	e.wait_ns = 10000000;
	e.hold_ns = 990000000;
	e.futex_wait_ns = 9000000;
	e.op = LK_OP_RW_WRLOCK;
	e.type = LK_TYPE_RWLOCK_WRITE;
	e.ret = 0;
	e.depth = 2;
	e.contended = 1;
	REQUIRE(k.feed(&e, sizeof e) == PI_OK);

	lk_acq f{};
	t::fill_header(f.h, LK_ACQ, sizeof f, 100, 102, "other");
	f.lock_addr = 0x1000;
	f.request_ns = 4500000000ULL;
	f.wait_ns = 2000;
	f.op = LK_OP_MUTEX_TRYLOCK;
	f.type = LK_TYPE_MUTEX;
	f.ret = EBUSY;
	f.depth = 0;
	REQUIRE(k.feed(&f, sizeof f) == PI_OK);

	REQUIRE(k.c.records.size() == 2);
	const json &r = k.c.records[0];
	CHECK(r["probe"] == "lock");
	CHECK(r["event"] == "acquisition");
	CHECK(r["ts_ns"] == 1005000000000ULL);
	CHECK(r["pid"] == 100);
	CHECK(r["tid"] == 101);
	CHECK(r["comm"] == "worker");
	CHECK(r["lock_addr"] == 0x5555deadbe00ULL);
	CHECK(r["lock_type"] == "rwlock_write");
	CHECK(r["op"] == "pthread_rwlock_wrlock");
	CHECK(r["ret"] == 0);
	CHECK(r["acquired"] == true);
	CHECK(r["wait_ns"] == 10000000);
	CHECK(r["hold_ns"] == 990000000);
	CHECK(r["futex_wait_ns"] == 9000000);
	CHECK(r["contended"] == true);
	CHECK(r["depth"] == 2);
	CHECK(r["request_ts_ns"] == 1004000000000ULL);
	CHECK(r["acquired_ts_ns"] == 1004010000000ULL);

	const json &g = k.c.records[1];
	CHECK(g["op"] == "pthread_mutex_trylock");
	CHECK(g["lock_type"] == "mutex");
	CHECK(g["ret"] == -EBUSY); // shown as -EBUSY by the stdout sink
	CHECK(g["acquired"] == false);
	CHECK(g["acquired_ts_ns"] == 0);
	CHECK(g["hold_ns"] == 0);
	// one fixed field set per event type (the CSV sink's header comes from the first record)
	std::vector<std::string> ka, kb;
	for (auto it = r.begin(); it != r.end(); ++it)
		ka.push_back(it.key());
	for (auto it = g.begin(); it != g.end(); ++it)
		kb.push_back(it.key());
	CHECK(ka == kb);
}

TEST_CASE("lock contention records: futex word, lock, holder, waker")
{
	lock_instance k;
	lk_contention c{};
	t::fill_header(c.h, LK_CONTENTION, sizeof c, 200, 202, "waiter");
	c.futex_addr = 0x7000 + 8;
	c.lock_addr = 0x7000;
	c.wait_ns = 3000000;
	c.holder_held_ns = 1500000;
	c.holder_tid = 201;
	c.holder_readers = 2;
	c.lock_type = LK_TYPE_RWLOCK_READ;
	c.waker_tid = 203;
	c.ret = -ETIMEDOUT;
	c.futex_op = 9;
	std::strcpy(c.holder_comm, "reader");
	REQUIRE(k.feed(&c, sizeof c) == PI_OK);
	REQUIRE(k.c.records.size() == 1);
	const json &r = k.c.records[0];
	CHECK(r["event"] == "contention");
	CHECK(r["tid"] == 202);
	CHECK(r["futex_addr"] == 0x7008);
	CHECK(r["lock_addr"] == 0x7000);
	CHECK(r["lock_type"] == "rwlock_read");
	CHECK(r["futex_op"] == "FUTEX_WAIT_BITSET");
	CHECK(r["wait_ns"] == 3000000);
	CHECK(r["ret"] == -ETIMEDOUT);
	CHECK(r["holder_tid"] == 201);
	CHECK(r["holder_comm"] == "reader");
	CHECK(r["holder_held_ns"] == 1500000);
	CHECK(r["holder_readers"] == 2);
	CHECK(r["waker_tid"] == 203);
}

TEST_CASE("lock: short and unknown records are errors, not guesses")
{
	lock_instance k;
	lk_acq e{};
	t::fill_header(e.h, LK_ACQ, sizeof e, 1, 1, "x");
	CHECK(k.feed(&e, sizeof e - 8) == PI_ERR);
	CHECK(k.feed(&e, 4) == PI_ERR);
	t::fill_header(e.h, 99, sizeof e, 1, 1, "x");
	CHECK(k.feed(&e, sizeof e) == PI_ERR);
	// a new-process note before any activation attaches nothing and emits nothing
	lk_newproc n{};
	t::fill_header(n.h, LK_NEWPROC, sizeof n, 1, 1, "x");
	n.pid = 1;
	n.why = LK_NEW_EXEC;
	CHECK(k.feed(&n, sizeof n) == PI_OK);
	CHECK(k.c.records.empty());
}
