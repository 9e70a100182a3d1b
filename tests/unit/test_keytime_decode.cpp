// SPDX-License-Identifier: Apache-2.0
// keytime's user side decodes canned kernel records into the documented fields.
#include "format.hpp"
#include "keytime.h"
#include "plugin_loader.hpp"
#include "support.hpp"

#include <catch2/catch.hpp>

#include <cstring>

using namespace procimage;
using nlohmann::json;
namespace t = procimage::test;

namespace {

struct collector {
	std::vector<json> records;
	static void emit(void *ctx, const pi_record *r)
	{
		static_cast<collector *>(ctx)->records.push_back(json::parse(sinks::record_json(*r)));
	}
};

struct keytime_instance {
	core::plugin_ptr plugin;
	collector c;
	pi_host host{};
	void *inst = nullptr;

	explicit keytime_instance(const std::string &cfg = "{}")
	{
		auto p = core::load_plugin(t::build_dir() + "/plugins/probe_keytime.so");
		REQUIRE(p.ok());
		plugin = *p;
		host.size = sizeof host;
		host.api_major = PI_API_MAJOR;
		host.api_minor = PI_API_MINOR;
		host.ctx = &c;
		host.emit = collector::emit;
		host.boot_to_epoch_ns = 1000000000000ULL;
		char err[PI_ERRBUF_SIZE] = "";
		inst = plugin->desc->probe->create(&host, cfg.c_str(), err, sizeof err);
		REQUIRE(inst);
	}
	~keytime_instance() { plugin->desc->probe->destroy(inst); }
	int feed(const void *rec, size_t len) { return plugin->desc->probe->on_data(inst, 0, rec, len); }
};

void header(pi_event_header &h, uint16_t kind, uint16_t size, uint32_t pid, uint32_t tid, const char *comm)
{
	h.kind = kind;
	h.size = size;
	h.cpu = 1;
	h.ts_boot_ns = 5000000000ULL;
	h.pid = pid;
	h.tid = tid;
	h.pid_start_ns = 4000000000ULL;
	std::strncpy(h.comm, comm, sizeof h.comm);
}

} // namespace

TEST_CASE("exec records: filename, argv split at NULs, errno, previous comm")
{
	keytime_instance k(R"({"argv_max": 3})");
	kt_exec e{};
	header(e.h, KT_EXEC, sizeof e, 100, 100, "ls");
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

TEST_CASE("exit records: status, signal, lifetimes, and how the thread was born")
{
	keytime_instance k;
	kt_newtask n{};
	header(n.h, KT_NEWTASK, sizeof n, 100, 100, "demo");
	n.clone_flags = 0x3d0f00;
	n.child_pid = 100;
	n.child_tid = 101;
	n.clone_kind = KT_CLONE_THREAD;
	std::strcpy(n.child_comm, "demo");
	REQUIRE(k.feed(&n, sizeof n) == PI_OK);

	kt_exit x{};
	header(x.h, KT_EXIT, sizeof x, 100, 101, "demo");
	x.exit_code = 5 << 8;
	x.group_dead = 0;
	x.thread_start_ns = 4500000000ULL;
	x.process_start_ns = 4000000000ULL;
	x.ppid = 1;
	REQUIRE(k.feed(&x, sizeof x) == PI_OK);

	kt_exit killed{};
	header(killed.h, KT_EXIT, sizeof killed, 200, 200, "victim");
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
	header(c.h, KT_OFFCPU, sizeof c, 7, 8, "w");
	c.start_ns = 4990000000ULL;
	c.reason = KT_OFF_DISK;
	c.state = 2;
	c.stack_id = -1;
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
	header(x.h, KT_EXIT, sizeof x, 1, 1, "a");
	CHECK(k.feed(&x, sizeof(pi_event_header)) == PI_ERR);
	x.h.kind = 99;
	CHECK(k.feed(&x, sizeof x) == PI_ERR);
	CHECK(k.c.records.empty());
}
