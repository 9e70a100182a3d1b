// SPDX-License-Identifier: Apache-2.0
// resource: from the kernel's cumulative counters (canned rs_task records) to interval figures,
// the /proc parsers of the system figures, and the plugin's configuration and record checks.
#include "accounting.hpp"
#include "format.hpp"
#include "plugin_loader.hpp"
#include "resource.h"
#include "support.hpp"
#include "system_stats.hpp"

#include <catch2/catch.hpp>

#include <cstring>

using namespace procimage;
using namespace procimage::resource;
namespace t = procimage::test;

namespace {

constexpr uint64_t MS = 1000000ULL;
constexpr uint64_t S = 1000 * MS;

rs_task task(uint32_t pid, uint32_t tid, uint64_t ts, uint64_t start, uint32_t flags = RS_F_TARGET)
{
	rs_task r{};
	r.h.kind = RS_SAMPLE;
	r.h.size = sizeof r;
	r.h.cpu = 1;
	r.h.ts_boot_ns = ts;
	r.h.pid = pid;
	r.h.tid = tid;
	r.h.pid_start_ns = start;
	std::strncpy(r.h.comm, tid == pid ? "main" : "worker", sizeof r.h.comm);
	r.start_ns = start;
	r.flags = flags | (pid == tid ? RS_F_LEADER : 0);
	return r;
}

rs_task with_cpu(rs_task r, uint64_t runtime, uint64_t ut, uint64_t st)
{
	r.self.runtime_ns = runtime;
	r.self.utime_ns = ut;
	r.self.stime_ns = st;
	return r;
}

const thread_result *find_thread(const tick_result &res, uint32_t tid)
{
	for (const auto &t : res.threads)
		if (t.tid == tid)
			return &t;
	return nullptr;
}

} // namespace

TEST_CASE("resource accounting: the baseline reports nothing, the next tick the differences")
{
	accountant a(4096);
	auto t0 = with_cpu(task(100, 100, 10 * S, 1 * S), 2 * S, 1500 * MS, 500 * MS);
	t0.self.rchar = 1000;
	t0.self.wchar = 10;
	t0.self.nvcsw = 5;
	t0.rss_pages[RS_MM_ANON] = 256;
	t0.rss_pages[RS_MM_FILE] = 10;
	t0.flags |= RS_F_RSS;
	auto res = a.update(10 * S, {t0}, true, {});
	CHECK(res.threads.empty());
	CHECK(res.processes.empty());

	auto t1 = with_cpu(task(100, 100, 11 * S, 1 * S), 2 * S + 250 * MS, 1700 * MS, 500 * MS);
	t1.self.rchar = 5000;
	t1.self.wchar = 10 + 2048;
	t1.self.nvcsw = 9;
	t1.rss_pages[RS_MM_ANON] = 512;
	t1.rss_pages[RS_MM_FILE] = 10;
	t1.flags |= RS_F_RSS;
	res = a.update(11 * S, {t1}, true, {});
	REQUIRE(res.threads.size() == 1);
	REQUIRE(res.processes.size() == 1);
	const auto &t = res.threads[0];
	CHECK(t.interval_ns == 1 * S);
	CHECK(t.delta.runtime_ns == 250 * MS);
	CHECK(t.delta.rchar == 4000);
	CHECK(t.delta.wchar == 2048);
	CHECK(t.delta.nvcsw == 4);
	CHECK(t.total.runtime_ns == 2 * S + 250 * MS);
	CHECK(t.user_ns + t.system_ns == 250 * MS); // the exact runtime, split
	CHECK_FALSE(t.exited);
	const auto &p = res.processes[0];
	CHECK(p.pid == 100);
	CHECK(p.interval_ns == 1 * S);
	CHECK(p.delta.runtime_ns == 250 * MS);
	CHECK(p.mem.anon == 512 * 4096);
	CHECK(p.mem.rss() == (512 + 10) * 4096);
	CHECK(t.mem.rss() == p.mem.rss()); // a thread shows its process's memory
	CHECK(p.threads == 1);
}

TEST_CASE("resource accounting: user/system split the exact runtime and never go backwards")
{
	cputime_split s;
	s.update(100 * MS, 3, 1); // ticks: 3 user, 1 system
	CHECK(s.system == 25 * MS);
	CHECK(s.user == 75 * MS);
	// the tick proportions swing towards system: the user part may not shrink
	s.update(120 * MS, 3, 5);
	CHECK(s.user >= 75 * MS);
	CHECK(s.user + s.system == 120 * MS);
	// no ticks at all yet: all user (the kernel's rule)
	cputime_split z;
	z.update(3 * MS, 0, 0);
	CHECK(z.user == 3 * MS);
	CHECK(z.system == 0);
	// a runtime that did not grow changes nothing
	cputime_split k = s;
	k.update(110 * MS, 1, 1);
	CHECK(k.user == s.user);
	CHECK(k.system == s.system);
}

TEST_CASE("resource accounting: a thread born since the last tick counts from its start")
{
	accountant a;
	a.update(10 * S, {with_cpu(task(100, 100, 10 * S, 1 * S), 1 * S, 1, 0)}, true, {});
	// a new thread, started at 10.5 s, sampled at 11 s after 400 ms on CPU
	auto w = with_cpu(task(100, 101, 11 * S, 10 * S + 500 * MS), 400 * MS, 1, 0);
	w.h.pid_start_ns = 1 * S;
	auto res = a.update(11 * S, {with_cpu(task(100, 100, 11 * S, 1 * S), 1 * S, 1, 0), w}, true, {});
	const auto *t = find_thread(res, 101);
	REQUIRE(t);
	CHECK(t->interval_ns == 500 * MS);
	CHECK(t->delta.runtime_ns == 400 * MS);
	REQUIRE(res.processes.size() == 1);
	CHECK(res.processes[0].delta.runtime_ns == 400 * MS);
	CHECK(res.processes[0].threads == 2);
}

TEST_CASE("resource accounting: a thread seen first but not new only sets its baseline")
{
	accountant a;
	a.update(10 * S, {with_cpu(task(100, 100, 10 * S, 1 * S), 1 * S, 1, 0)}, true, {});
	// thread 102 started long ago (it just joined the target): no figure this tick
	auto old = with_cpu(task(100, 102, 11 * S, 2 * S), 7 * S, 1, 0);
	old.h.pid_start_ns = 1 * S;
	auto res = a.update(11 * S, {with_cpu(task(100, 100, 11 * S, 1 * S), 1 * S, 1, 0), old}, true, {});
	CHECK(find_thread(res, 102) == nullptr);
	auto old2 = with_cpu(task(100, 102, 12 * S, 2 * S), 7 * S + 100 * MS, 1, 0);
	old2.h.pid_start_ns = 1 * S;
	res = a.update(12 * S, {with_cpu(task(100, 100, 12 * S, 1 * S), 1 * S, 1, 0), old2}, true, {});
	const auto *t = find_thread(res, 102);
	REQUIRE(t);
	CHECK(t->delta.runtime_ns == 100 * MS);
}

TEST_CASE("resource accounting: exits give the last partial interval, the group's end the process's")
{
	accountant a;
	auto m = [](uint64_t ts, uint64_t rt) { return with_cpu(task(100, 100, ts, 1 * S), rt, 1, 0); };
	auto w = [](uint64_t ts, uint64_t rt) {
		auto r = with_cpu(task(100, 101, ts, 2 * S), rt, 1, 0);
		r.h.pid_start_ns = 1 * S;
		return r;
	};
	a.update(10 * S, {m(10 * S, 1 * S), w(10 * S, 3 * S)}, true, {});

	// the worker exits at 10.3 s after 300 ms more on CPU; the leader lives on
	auto wx = w(10 * S + 300 * MS, 3 * S + 300 * MS);
	wx.h.kind = RS_EXIT;
	// the process's released-thread sums now hold the worker's final runtime
	auto lead = m(11 * S, 1 * S + 100 * MS);
	lead.dead.runtime_ns = 3 * S + 300 * MS;
	auto res = a.update(11 * S, {lead}, true, {wx});
	const auto *t = find_thread(res, 101);
	REQUIRE(t);
	CHECK(t->exited);
	CHECK(t->interval_ns == 300 * MS);
	CHECK(t->delta.runtime_ns == 300 * MS);
	REQUIRE(res.processes.size() == 1);
	// the kernel's totals: released threads plus the live leader
	CHECK(res.processes[0].total.runtime_ns == 3 * S + 300 * MS + 1 * S + 100 * MS);
	CHECK(res.processes[0].delta.runtime_ns == 400 * MS);
	CHECK(res.processes[0].threads == 1);
	CHECK_FALSE(res.processes[0].exited);

	// the leader, last thread, exits at 11.5 s: the process ends with it
	auto lx = m(11 * S + 500 * MS, 1 * S + 350 * MS);
	lx.h.kind = RS_EXIT;
	lx.flags |= RS_F_GROUP_DEAD | RS_F_RSS;
	lx.rss_pages[RS_MM_ANON] = 100;
	res = a.update(12 * S, {}, true, {lx});
	REQUIRE(res.processes.size() == 1);
	const auto &p = res.processes[0];
	CHECK(p.exited);
	CHECK(p.threads == 0);
	CHECK(p.interval_ns == 500 * MS);
	CHECK(p.delta.runtime_ns == 250 * MS);
	CHECK(p.total.runtime_ns == 3 * S + 300 * MS + 1 * S + 350 * MS);
	CHECK(p.mem.anon == 100 * 4096);
	REQUIRE(find_thread(res, 100));
	CHECK(find_thread(res, 100)->exited);
}

TEST_CASE("resource accounting: a process born and ended between two ticks is reported whole")
{
	accountant a;
	a.update(10 * S, {}, true, {});
	auto x = with_cpu(task(300, 300, 10 * S + 800 * MS, 10 * S + 200 * MS), 450 * MS, 1, 1);
	x.h.kind = RS_EXIT;
	x.flags |= RS_F_GROUP_DEAD;
	x.self.wchar = 4096;
	auto res = a.update(11 * S, {}, true, {x});
	REQUIRE(res.threads.size() == 1);
	REQUIRE(res.processes.size() == 1);
	CHECK(res.threads[0].interval_ns == 600 * MS);
	CHECK(res.threads[0].delta.runtime_ns == 450 * MS);
	CHECK(res.processes[0].exited);
	CHECK(res.processes[0].interval_ns == 600 * MS);
	CHECK(res.processes[0].delta.runtime_ns == 450 * MS);
	CHECK(res.processes[0].delta.wchar == 4096);
}

TEST_CASE("resource accounting: zombies count in their process, not as threads; a process can pass 100%")
{
	accountant a;
	auto s = [](uint32_t tid, uint64_t ts, uint64_t rt, uint32_t extra = 0) {
		auto r = with_cpu(task(100, tid, ts, 1 * S, RS_F_TARGET | extra), rt, 1, 0);
		r.h.pid_start_ns = 1 * S;
		return r;
	};
	a.update(10 * S, {s(100, 10 * S, 1 * S), s(101, 10 * S, 1 * S), s(102, 10 * S, 1 * S)}, true, {});
	// two threads busy for the whole second on two CPUs; the leader is a zombie (it called
	// pthread_exit earlier) and its exit record was already reported
	auto res = a.update(11 * S,
			    {s(100, 11 * S, 1 * S, RS_F_ZOMBIE), s(101, 11 * S, 2 * S), s(102, 11 * S, 2 * S)},
			    true, {});
	CHECK(find_thread(res, 100) == nullptr);
	REQUIRE(find_thread(res, 101));
	REQUIRE(res.processes.size() == 1);
	const auto &p = res.processes[0];
	CHECK(p.threads == 2);
	CHECK(p.total.runtime_ns == 5 * S);
	CHECK(p.delta.runtime_ns == 2 * S);
	CHECK(p.interval_ns == 1 * S);
	CHECK(100.0 * p.delta.runtime_ns / p.interval_ns == Approx(200.0)); // two CPUs' worth
}

TEST_CASE("resource accounting: an ended process its parent has not reaped yet gives no more records")
{
	accountant a;
	a.update(10 * S, {with_cpu(task(200, 200, 10 * S, 1 * S), 1 * S, 1, 0)}, true, {});
	auto x = with_cpu(task(200, 200, 10 * S + 400 * MS, 1 * S), 1 * S + 100 * MS, 1, 0);
	x.h.kind = RS_EXIT;
	x.flags |= RS_F_GROUP_DEAD;
	auto zombie = with_cpu(task(200, 200, 11 * S, 1 * S, RS_F_TARGET | RS_F_ZOMBIE), 1 * S + 100 * MS, 1, 0);
	auto res = a.update(11 * S, {zombie}, true, {x});
	REQUIRE(res.processes.size() == 1);
	CHECK(res.processes[0].exited);
	REQUIRE(res.threads.size() == 1);
	CHECK(res.threads[0].exited);
	for (uint64_t tick : {12 * S, 13 * S, 14 * S}) {
		zombie.h.ts_boot_ns = tick;
		res = a.update(tick, {zombie}, true, {});
		CHECK(res.processes.empty());
		CHECK(res.threads.empty());
	}
}

TEST_CASE("resource accounting: a reaped child's I/O is in the parent's totals, not in its interval")
{
	accountant a;
	auto sh = [](uint64_t ts) {
		auto r = with_cpu(task(50, 50, ts, 1 * S), 10 * MS, 1, 0);
		r.self.rchar = 4000;
		return r;
	};
	a.update(10 * S, {sh(10 * S)}, true, {});
	// the shell reaped a child that had read 200 MiB: the kernel adds it to the shell's
	// signal_struct I/O (what /proc/<pid>/io shows), but the shell itself read nothing
	auto s1 = sh(11 * S);
	s1.dead.rchar = 200ULL << 20;
	auto res = a.update(11 * S, {s1}, true, {});
	REQUIRE(res.processes.size() == 1);
	CHECK(res.processes[0].delta.rchar == 0);
	CHECK(res.processes[0].total.rchar == (200ULL << 20) + 4000);
}

TEST_CASE("resource accounting: a reused thread id starts over")
{
	accountant a;
	a.update(10 * S, {with_cpu(task(100, 100, 10 * S, 1 * S), 5 * S, 1, 0)}, true, {});
	// pid 100 is now another process, started at 10.5 s
	auto n = with_cpu(task(100, 100, 11 * S, 10 * S + 500 * MS), 20 * MS, 1, 0);
	auto res = a.update(11 * S, {n}, true, {});
	const auto *t = find_thread(res, 100);
	REQUIRE(t);
	CHECK(t->delta.runtime_ns == 20 * MS); // not 20 ms - 5 s, nor 0
	CHECK(t->interval_ns == 500 * MS);
}

TEST_CASE("resource accounting: companion threads of a thread target are accounted, not reported")
{
	accountant a;
	auto s = [](uint32_t tid, uint64_t ts, uint64_t rt, bool target) {
		auto r = with_cpu(task(100, tid, ts, 1 * S, target ? RS_F_TARGET : 0), rt, 1, 0);
		r.h.pid_start_ns = 1 * S;
		return r;
	};
	a.update(10 * S, {s(100, 10 * S, 1 * S, false), s(101, 10 * S, 1 * S, true)}, true, {});
	auto res = a.update(11 * S, {s(100, 11 * S, 1200 * MS, false), s(101, 11 * S, 1500 * MS, true)}, true, {});
	REQUIRE(res.threads.size() == 2);
	CHECK_FALSE(find_thread(res, 100)->target);
	CHECK(find_thread(res, 101)->target);
	REQUIRE(res.processes.size() == 1);
	CHECK(res.processes[0].delta.runtime_ns == 700 * MS);
}

TEST_CASE("resource accounting: with no iteration, exits alone close threads but report no partial process")
{
	accountant a;
	auto m = with_cpu(task(100, 100, 10 * S, 1 * S), 1 * S, 1, 0);
	auto w = with_cpu(task(100, 101, 10 * S, 2 * S), 1 * S, 1, 0);
	w.h.pid_start_ns = 1 * S;
	a.update(10 * S, {m, w}, true, {});
	auto wx = with_cpu(task(100, 101, 10 * S + 100 * MS, 2 * S), 1 * S + 50 * MS, 1, 0);
	wx.h.pid_start_ns = 1 * S;
	wx.h.kind = RS_EXIT;
	auto res = a.update(10 * S + 200 * MS, {}, false, {wx});
	REQUIRE(res.threads.size() == 1);
	CHECK(res.threads[0].exited);
	CHECK(res.threads[0].delta.runtime_ns == 50 * MS);
	CHECK(res.processes.empty());
}

TEST_CASE("resource system figures: /proc/stat, /proc/meminfo and /proc/diskstats")
{
	auto st = parse_proc_stat("cpu  100 5 50 800 20 3 2 0 0 0\n"
				  "cpu0 60 5 30 380 10 2 1 0 0 0\n"
				  "cpu1 40 0 20 420 10 1 1 0 0 0\n"
				  "intr 12345 0 0\nctxt 999\nbtime 1700000000\n");
	CHECK(st.all.total() == 980);
	CHECK(st.all.idle_all() == 820);
	CHECK(st.all.busy() == 160);
	REQUIRE(st.cpus.size() == 2);
	CHECK(st.cpus.at(1).idle == 420);
	CHECK(st.cpus.at(0).user == 60);

	auto later = parse_proc_stat("cpu  150 5 60 880 20 3 2 0 0 0\ncpu0 100 5 35 380 10 2 1 0 0 0\n"
				     "cpu1 50 0 30 500 10 1 1 0 0 0\n");
	auto d = diff(later.all, st.all);
	CHECK(d.total() == 140);
	CHECK(pct(d.busy(), d.total()) == Approx(100.0 * 60 / 140));
	auto c1 = diff(later.cpus.at(1), st.cpus.at(1));
	CHECK(pct(c1.idle_all(), c1.total()) == Approx(80.0));

	auto mi = parse_meminfo("MemTotal:       16000000 kB\nMemFree:         1000000 kB\n"
				"MemAvailable:    4000000 kB\nBuffers:           1 kB\nHugePages_Total:       0\n");
	CHECK(mi.total == 16000000ULL * 1024);
	CHECK(mi.available == 4000000ULL * 1024);
	CHECK(mi.used() == 12000000ULL * 1024);

	const char *ds = " 254       0 vda 100 0 2000 0 50 0 4000 0 0 0 0 0 0 0 0 0 0\n"
			 " 254       1 vda1 90 0 1800 0 40 0 3000 0 0 0 0 0 0 0 0 0 0\n"
			 "   7       0 loop0 10 0 80 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
			 " 253       0 dm-0 7 0 70 0 7 0 70 0 0 0 0 0 0 0 0 0 0\n";
	auto disk = parse_diskstats(ds, {"vda"}); // whole physical disks only
	CHECK(disk.read == 2000 * 512);
	CHECK(disk.written == 4000 * 512);
}

TEST_CASE("resource configuration: typed keys, unknown keys refused, errors name the key")
{
	auto p = core::load_plugin(t::build_dir() + "/plugins/probe_resource.so");
	REQUIRE(p.ok());
	const auto &ops = *(*p)->desc->probe;
	char err[PI_ERRBUF_SIZE];
	auto check = [&](const char *cfg) {
		err[0] = 0;
		return ops.validate(cfg, err, sizeof err);
	};
	CHECK(check("{}") == PI_OK);
	CHECK(check(R"({"threads": false, "processes": true, "system": false, "active_only": true, "ringbuf_kb": 128})") == PI_OK);
	CHECK(check(R"({"threads": 1})") == PI_ERR);
	CHECK(std::string(err).rfind("threads:", 0) == 0);
	CHECK(check(R"({"ringbuf_kb": 1000})") == PI_ERR);
	CHECK(std::string(err).rfind("ringbuf_kb: expected a power of two", 0) == 0);
	CHECK(check(R"({"ringbuf_kb": 32})") == PI_ERR);
	CHECK(std::string(err).rfind("ringbuf_kb:", 0) == 0);
	CHECK(check(R"({"interval": 5})") == PI_ERR);
	CHECK(std::string(err) == "interval: unknown key");
}

TEST_CASE("resource records: short and unknown kernel records are refused, not misread")
{
	auto p = core::load_plugin(t::build_dir() + "/plugins/probe_resource.so");
	REQUIRE(p.ok());
	const auto &ops = *(*p)->desc->probe;
	pi_host host{};
	host.size = sizeof host;
	host.api_major = PI_API_MAJOR;
	host.api_minor = PI_API_MINOR;
	int emitted = 0;
	host.ctx = &emitted;
	host.emit = [](void *ctx, const pi_record *) { ++*static_cast<int *>(ctx); };
	char err[PI_ERRBUF_SIZE] = "";
	void *inst = ops.create(&host, "{}", err, sizeof err);
	REQUIRE(inst);
	rs_task r = task(1, 1, 1, 1);
	r.h.kind = RS_EXIT;
	CHECK(ops.on_data(inst, 0, &r, sizeof(pi_event_header)) == PI_ERR);
	r.h.kind = RS_SAMPLE; // samples come from the iterator, never from the ring buffer
	CHECK(ops.on_data(inst, 0, &r, sizeof r) == PI_ERR);
	r.h.kind = RS_EXIT;
	CHECK(ops.on_data(inst, 0, &r, sizeof r) == PI_OK);
	// not attached, no baseline: the exit cannot be turned into an interval, nothing is made up
	CHECK(ops.on_tick(inst, 5, 1) == PI_OK);
	CHECK(emitted == 0);
	ops.destroy(inst);
}
