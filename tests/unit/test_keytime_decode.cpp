// SPDX-License-Identifier: Apache-2.0
// keytime's user side decodes canned kernel records into the documented fields.
#include "keytime.h"
#include "probe_harness.hpp"

#include <catch2/catch.hpp>

#include <cstring>

using namespace procimage;
using nlohmann::json;
namespace t = procimage::test;

namespace {

struct keytime_instance : t::probe_instance {
	explicit keytime_instance(const std::string &cfg = "{}") : t::probe_instance("keytime", cfg) {}
};

} // namespace

TEST_CASE("exec records: filename, argv split at NULs, errno, previous comm")
{
	keytime_instance k(R"({"argv_max": 3})");
	kt_exec e{};
	t::fill_header(e.h, KT_EXEC, sizeof e, 100, 100, "ls");
	e.ret = -13;
	e.old_tid = 100;
	std::strcpy(e.old_comm, "bash");
	std::strcpy(e.filename, "/usr/bin/ls");
	const char args[] = "ls\0-l\0/tmp\0/var";
	std::memcpy(e.args, args, sizeof args);
	e.args_size = sizeof args;
	e.argc = 4;
	REQUIRE(k.feed(&e, sizeof e) == PI_OK);
	REQUIRE(k.c.records.size() == 1);
	const json &r = k.c.records[0];
	CHECK(r["event"] == "exec");
	CHECK(r["ts_ns"] == 1000000000000ULL + 5000000000ULL);
	CHECK(r["pid"] == 100);
	CHECK(r["filename"] == "/usr/bin/ls");
	CHECK(r["argv"] == json::parse(R"(["ls", "-l", "/tmp"])"));
	CHECK(r["argv_truncated"] == true); // four arguments, three kept
	CHECK(r["ret"] == -13);
	CHECK(r["old_comm"] == "bash");
	CHECK(r["comm"] == "ls");
}

TEST_CASE("exit records: status, signal, lifetimes, and how the thread was born (from the kernel's record)")
{
	keytime_instance k;
	kt_newtask n{};
	t::fill_header(n.h, KT_NEWTASK, sizeof n, 100, 100, "demo");
	n.clone_flags = 0x3d0f00;
	n.child_pid = 100;
	n.child_tid = 101;
	n.clone_kind = KT_CLONE_THREAD;
	std::strcpy(n.child_comm, "demo");
	REQUIRE(k.feed(&n, sizeof n) == PI_OK);

	kt_exit x{};
	t::fill_header(x.h, KT_EXIT, sizeof x, 100, 101, "demo");
	x.exit_code = 5 << 8;
	x.group_dead = 0;
	x.thread_start_ns = 4500000000ULL;
	x.process_start_ns = 4000000000ULL;
	x.ppid = 1;
	x.created_by = KT_CLONE_THREAD; // the kernel side keeps it from the birth to the exit
	REQUIRE(k.feed(&x, sizeof x) == PI_OK);

	kt_exit killed{};
	t::fill_header(killed.h, KT_EXIT, sizeof killed, 200, 200, "victim");
	killed.exit_code = 9 | 0x80; // SIGKILL, core flag
	killed.group_dead = 1;
	killed.thread_start_ns = killed.process_start_ns = 3000000000ULL;
	REQUIRE(k.feed(&killed, sizeof killed) == PI_OK);

	REQUIRE(k.c.records.size() == 3);
	CHECK(k.c.records[0]["event"] == "thread");
	CHECK(k.c.records[0]["child_tid"] == 101);
	CHECK(k.c.records[0]["clone_flags"] == 0x3d0f00);
	const json &e = k.c.records[1];
	CHECK(e["event"] == "exit");
	CHECK(e["exit_code"] == 5);
	CHECK(e["signal"] == 0);
	CHECK(e["group_dead"] == false);
	CHECK(e["thread_lifetime_ns"] == 500000000ULL);
	CHECK_FALSE(e.contains("process_lifetime_ns"));
	CHECK(e["created_by"] == "thread");
	const json &kx = k.c.records[2];
	CHECK(kx["signal"] == 9);
	CHECK(kx["core_dumped"] == true);
	CHECK(kx["exit_code"] == 0);
	CHECK(kx["process_lifetime_ns"] == 2000000000ULL);
	CHECK(kx["created_by"] == "unknown");
}

TEST_CASE("off-CPU records carry duration and reason")
{
	keytime_instance k(R"({"cpu": true})");
	kt_cpu c{};
	t::fill_header(c.h, KT_OFFCPU, sizeof c, 7, 8, "w");
	c.start_ns = 4990000000ULL;
	c.reason = KT_OFF_DISK;
	c.state = 2;
	c.stack_nr = 0;
	c.prev_cpu = 0;
	REQUIRE(k.feed(&c, sizeof c) == PI_OK);
	REQUIRE(k.c.records.size() == 1);
	CHECK(k.c.records[0]["event"] == "offcpu");
	CHECK(k.c.records[0]["dur_ns"] == 10000000ULL);
	CHECK(k.c.records[0]["reason"] == "disk_wait");
	CHECK(k.c.records[0]["prev_cpu"] == 0);
	CHECK(k.c.records[0]["cpu"] == 1);
}

TEST_CASE("short or unknown records are rejected, not misread")
{
	keytime_instance k;
	kt_exit x{};
	t::fill_header(x.h, KT_EXIT, sizeof x, 1, 1, "a");
	CHECK(k.feed(&x, sizeof(pi_event_header)) == PI_ERR);
	x.h.kind = 99;
	CHECK(k.feed(&x, sizeof x) == PI_ERR);
	CHECK(k.c.records.empty());
}
