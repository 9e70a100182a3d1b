// SPDX-License-Identifier: Apache-2.0
// schedule probe, user side without the kernel: configuration checks of the plugin, decoding of
// its kernel record, and the aggregator (plugins/schedule/report.hpp) turning canned cumulative
// snapshots into interval and total records.
#include "probe_harness.hpp"
#include "report.hpp"
#include "schedule.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>

using namespace procimage;
using nlohmann::json;
namespace t = procimage::test;
namespace sc = procimage::schedule;

namespace {

struct collector : t::record_collector {
	std::vector<json> select(const std::string &event, const std::string &window) const
	{
		std::vector<json> out;
		for (const auto &r : records)
			if (r["event"] == event && r["window"] == window)
				out.push_back(r);
		return out;
	}
};

struct harness {
	collector c;
	pi_host host = c.host();
};

// Add n delays of d ns to cumulative stats, as the BPF program does.
void add(sc_stats &s, uint64_t n, __u64 d)
{
	for (uint64_t i = 0; i < n; i++) {
		s.count++;
		s.sum_ns += d;
		s.max_ns = std::max(s.max_ns, d);
		s.min_ns = s.count == 1 ? d : std::min(s.min_ns, d);
		uint32_t slot = 0;
		while ((d >> (slot + 1)) && slot + 1 < SC_HIST_SLOTS)
			slot++;
		s.hist[slot]++;
	}
}

void window(sc_window *win, uint64_t epoch, uint64_t max, uint64_t min)
{
	win[epoch & 1] = sc_window{epoch, max, min};
}

sc_thread thread(uint32_t pid, uint32_t tid, uint64_t start_ns, const char *comm)
{
	sc_thread t{};
	t.pid = pid;
	t.tid = tid;
	t.start_ns = start_ns;
	t.pid_start_ns = 777;
	t.prio = 125;
	t.static_prio = 125;
	t.policy = 0;
	std::strncpy(t.comm, comm, sizeof t.comm);
	return t;
}

sc::aggregator::options opts(bool groups = false, uint32_t top = 20)
{
	sc::aggregator::options o;
	o.system = true;
	o.top = top;
	o.groups = groups;
	o.cpus = 2;
	return o;
}

} // namespace

TEST_CASE("schedule: configuration keys are checked and named in errors")
{
	auto p = core::load_plugin(t::build_dir() + "/plugins/probe_schedule.so");
	REQUIRE(p.ok());
	auto validate = [&](const char *cfg) {
		char err[PI_ERRBUF_SIZE] = "";
		int rc = (*p)->desc->probe->validate(cfg, err, sizeof err);
		return std::make_pair(rc, std::string(err));
	};
	CHECK(validate("{}").first == PI_OK);
	CHECK(validate(R"({"system": false, "top": 0, "max_threads": 1024, "ringbuf_kb": 64})").first == PI_OK);
	auto bad = validate(R"({"top": -1})");
	CHECK(bad.first == PI_ERR);
	CHECK_THAT(bad.second, Catch::StartsWith("top: expected an integer in 0..1000000"));
	CHECK_THAT(validate(R"({"system": "yes"})").second, Catch::StartsWith("system: expected true or false"));
	CHECK_THAT(validate(R"({"max_threads": 10})").second, Catch::StartsWith("max_threads: expected an integer in 64.."));
	CHECK_THAT(validate(R"({"ringbuf_kb": 100})").second, Catch::StartsWith("ringbuf_kb: expected a power of two"));
	CHECK_THAT(validate(R"({"interval": 5})").second, Catch::StartsWith("interval: unknown key"));
}

TEST_CASE("schedule: the kernel's thread_end record is decoded, malformed ones refused")
{
	auto p = core::load_plugin(t::build_dir() + "/plugins/probe_schedule.so");
	REQUIRE(p.ok());
	harness h;
	char err[PI_ERRBUF_SIZE] = "";
	void *inst = (*p)->desc->probe->create(&h.host, "{}", err, sizeof err);
	REQUIRE(inst);
	sc_thread_end e{};
	e.h.kind = SC_THREAD_END;
	e.h.size = sizeof e;
	e.t = thread(10, 11, 5, "worker");
	add(e.t.total, 3, 1000);
	CHECK((*p)->desc->probe->on_data(inst, 0, &e, sizeof e) == PI_OK);
	CHECK((*p)->desc->probe->on_data(inst, 0, &e, sizeof e - 8) == PI_ERR); // short
	e.h.kind = 99;
	CHECK((*p)->desc->probe->on_data(inst, 0, &e, sizeof e) == PI_ERR); // unknown kind
	// nothing is reported before an activation began
	CHECK((*p)->desc->probe->on_tick(inst, 2000000000ULL, 1) == PI_OK);
	CHECK(h.c.records.empty());
	(*p)->desc->probe->destroy(inst);
}

TEST_CASE("schedule: intervals are the differences of cumulative figures, max/min from the epoch window")
{
	harness h;
	sc::aggregator a(h.host, opts());
	a.start(1000000000ULL);
	REQUIRE(a.epoch() == 1);

	// interval 1: a thread waited 4 times (10 µs, 10 µs, 10 µs, 50 µs); two CPUs saw 10 delays
	sc_thread w = thread(100, 101, 42, "worker");
	add(w.total, 3, 10000);
	add(w.total, 1, 50000);
	window(w.win, 1, 50000, 10000);
	std::vector<sc_cpu> cpus(2);
	add(cpus[0].total, 6, 10000);
	add(cpus[1].total, 4, 50000);
	window(cpus[0].win, 1, 10000, 10000);
	window(cpus[1].win, 1, 50000, 50000);

	REQUIRE(a.advance() == 2);
	a.system(cpus);
	a.thread(w);
	a.report(2000000000ULL, false);

	auto sys = h.c.select("system", "interval");
	REQUIRE(sys.size() == 1);
	CHECK(sys[0]["count"] == 10);
	CHECK(sys[0]["total_ns"] == 6 * 10000 + 4 * 50000);
	CHECK(sys[0]["max_ns"] == 50000);
	CHECK(sys[0]["min_ns"] == 10000);
	CHECK(sys[0]["avg_ns"] == 26000);
	CHECK(sys[0]["interval_ns"] == 1000000000ULL);
	CHECK(sys[0]["cpus"] == 2);
	CHECK(sys[0]["ts_ns"] == 1000000000000ULL + 2000000000ULL);
	CHECK(sys[0]["waiting_avg"].get<double>() == Approx(260000.0 / 1e9));
	CHECK(sys[0]["scope"] == "system");
	CHECK(sys[0]["pid"] == 0);
	CHECK(sys[0]["tid"] == 0);
	CHECK(sys[0]["comm"] == "");
	CHECK_FALSE(sys[0].contains("pid_start_ns"));
	auto th = h.c.select("thread", "interval");
	REQUIRE(th.size() == 1);
	CHECK(th[0]["scope"] == "thread");
	CHECK(th[0]["pid"] == 100);
	CHECK(th[0]["tid"] == 101);
	CHECK(th[0]["comm"] == "worker");
	CHECK(th[0]["count"] == 4);
	CHECK(th[0]["total_ns"] == 80000);
	CHECK(th[0]["avg_ns"] == 20000);
	CHECK(th[0]["max_ns"] == 50000);
	CHECK(th[0]["min_ns"] == 10000);
	CHECK(th[0]["prio"] == 125);
	CHECK(th[0]["nice"] == 5);
	CHECK(th[0]["policy"] == "normal");
	CHECK(th[0]["sys_avg_ns"] == 26000); // the system's figures of the same window, beside
	CHECK(th[0]["sys_max_ns"] == 50000);
	// hist_ns: 10 µs in [2^13, 2^14), 50 µs in [2^15, 2^16)
	CHECK(th[0]["hist_ns"][13] == 3);
	CHECK(th[0]["hist_ns"][15] == 1);
	CHECK(th[0]["hist_ns"].size() == SC_HIST_SLOTS);
	CHECK(th[0]["wait_pct"].get<double>() == Approx(100.0 * 80000 / 1e9));
	for (const auto *k : {"cum_count", "cum_sum_ns", "window_ns", "sum_ns"})
		CHECK_FALSE(th[0].contains(k));
	// beside each interval row, the running total of the same thread and of the system
	auto run = h.c.select("thread", "total");
	REQUIRE(run.size() == 1);
	CHECK(run[0]["tid"] == 101);
	CHECK(run[0]["count"] == 4);
	CHECK(run[0]["total_ns"] == 80000);
	CHECK(run[0]["interval_ns"] == 1000000000ULL);
	REQUIRE(h.c.select("system", "total").size() == 1);
	CHECK(h.c.select("system", "total")[0]["count"] == 10);

	// interval 2: two more delays of 1 ms; the old window slot still says epoch 1 and must not
	// leak its 50 µs / 10 µs into interval 2
	h.c.records.clear();
	add(w.total, 2, 1000000);
	window(w.win, 2, 1000000, 1000000);
	REQUIRE(a.advance() == 3);
	a.system(cpus); // no new system delay
	a.thread(w);
	a.report(3000000000ULL, false);
	th = h.c.select("thread", "interval");
	REQUIRE(th.size() == 1);
	CHECK(th[0]["count"] == 2);
	CHECK(th[0]["total_ns"] == 2000000);
	CHECK(th[0]["max_ns"] == 1000000);
	CHECK(th[0]["min_ns"] == 1000000);
	CHECK(th[0]["hist_ns"][13] == 0);
	CHECK(th[0]["hist_ns"][19] == 2);
	sys = h.c.select("system", "interval");
	REQUIRE(sys.size() == 1);
	CHECK(sys[0]["count"] == 0);
	CHECK(sys[0]["max_ns"] == 0);
	run = h.c.select("thread", "total");
	REQUIRE(run.size() == 1);
	CHECK(run[0]["count"] == 6);
	CHECK(run[0]["total_ns"] == 80000 + 2000000);
	CHECK(run[0]["max_ns"] == 1000000);
	CHECK(run[0]["min_ns"] == 10000);
	CHECK(run[0]["interval_ns"] == 2000000000ULL);

	// interval 3: nothing new; the thread has no record, the totals cover everything
	h.c.records.clear();
	REQUIRE(a.advance() == 4);
	a.system(cpus);
	a.thread(w);
	a.report(3500000000ULL, true);
	CHECK(h.c.select("thread", "interval").empty());
	auto tot = h.c.select("thread", "total");
	REQUIRE(tot.size() == 1);
	CHECK(tot[0]["count"] == 6);
	CHECK(tot[0]["total_ns"] == 80000 + 2000000);
	CHECK(tot[0]["max_ns"] == 1000000);
	CHECK(tot[0]["min_ns"] == 10000);
	CHECK(tot[0]["interval_ns"] == 2500000000ULL);
	auto stot = h.c.select("system", "total");
	REQUIRE(stot.size() == 1);
	CHECK(stot[0]["count"] == 10);
	CHECK(stot[0]["max_ns"] == 50000);
	CHECK(stot[0]["min_ns"] == 10000);
	// after the totals the aggregator is stopped: nothing more
	h.c.records.clear();
	a.report(4000000000ULL, false);
	CHECK(h.c.records.empty());
}

TEST_CASE("schedule: ended threads, reused thread ids, untimed waits, process sums, top-N")
{
	harness h;
	sc::aggregator a(h.host, opts(true, 2));
	a.start(0);
	std::vector<sc_cpu> cpus(1);

	sc_thread main_t = thread(200, 200, 1, "app");
	add(main_t.total, 1, 1000);
	window(main_t.win, 1, 1000, 1000);
	sc_thread w1 = thread(200, 201, 2, "app-w1");
	add(w1.total, 10, 100000);
	window(w1.win, 1, 100000, 100000);
	sc_thread w2 = thread(200, 202, 3, "app-w2");
	add(w2.total, 5, 300000);
	w2.total.untimed = 2;
	w2.total.fallback = 1;
	window(w2.win, 1, 300000, 300000);

	a.advance();
	a.system(cpus);
	a.thread(main_t);
	a.thread(w1);
	a.thread(w2);
	a.report(1000000000ULL, false);
	// top 2 by delay sum in the interval: w2 (1.5 ms) and w1 (1 ms), not the main thread
	auto th = h.c.select("thread", "interval");
	REQUIRE(th.size() == 2);
	CHECK(th[0]["tid"] == 202);
	CHECK(th[0]["untimed"] == 2);
	CHECK(th[0]["fallback"] == 1);
	CHECK(th[1]["tid"] == 201);
	// the process record sums every thread, shown or not
	auto pr = h.c.select("process", "interval");
	REQUIRE(pr.size() == 1);
	CHECK(pr[0]["pid"] == 200);
	CHECK(pr[0]["tid"] == 0); // a process row
	CHECK(pr[0]["scope"] == "process");
	CHECK(pr[0]["comm"] == "app");
	CHECK(pr[0]["pid_start_ns"] == 777);
	CHECK(pr[0]["count"] == 16);
	CHECK(pr[0]["untimed"] == 2);
	CHECK(pr[0]["total_ns"] == 1000 + 1000000 + 1500000);
	CHECK(pr[0]["max_ns"] == 300000);
	CHECK(pr[0]["min_ns"] == 1000);
	CHECK(pr[0]["threads"] == 3);
	// running totals for the same process and the threads shown, not the main thread
	auto prun = h.c.select("process", "total");
	REQUIRE(prun.size() == 1);
	CHECK(prun[0]["count"] == 16);
	CHECK(prun[0]["tid"] == 0);
	auto trun = h.c.select("thread", "total");
	REQUIRE(trun.size() == 2);
	CHECK(trun[0]["tid"] == 202);
	CHECK(trun[1]["tid"] == 201);

	// w1 ends (its entry left the kernel map with 2 more delays); its tid is reused by a new
	// thread with another start time: two threads, not one
	h.c.records.clear();
	a.advance(); // epoch 3
	sc_thread w1_end = w1;
	add(w1_end.total, 2, 100000);
	window(w1_end.win, 2, 100000, 100000);
	a.thread_end(w1_end);
	sc_thread reuse = thread(200, 201, 99, "app-new");
	add(reuse.total, 1, 7000);
	window(reuse.win, 2, 7000, 7000);
	a.system(cpus);
	a.thread(reuse);
	a.report(2000000000ULL, false);
	th = h.c.select("thread", "interval");
	REQUIRE(th.size() == 2);
	CHECK(th[0]["comm"] == "app-w1");
	CHECK(th[0]["count"] == 2);
	CHECK(th[0]["max_ns"] == 100000);
	CHECK(th[1]["comm"] == "app-new");
	CHECK(th[1]["count"] == 1);
	CHECK(th[1]["total_ns"] == 7000);

	// totals: the ended thread is still there; the process counts all four threads
	h.c.records.clear();
	a.advance();
	a.system(cpus);
	a.report(2500000000ULL, true);
	CHECK(h.c.select("thread", "interval").empty()); // nothing new: no empty interval records
	CHECK(h.c.select("system", "interval").empty());
	auto tot = h.c.select("thread", "total");
	REQUIRE(tot.size() == 2);
	CHECK(tot[0]["tid"] == 202);
	CHECK(tot[1]["tid"] == 201);
	CHECK(tot[1]["comm"] == "app-w1");
	CHECK(tot[1]["count"] == 12);
	auto ptot = h.c.select("process", "total");
	REQUIRE(ptot.size() == 1);
	CHECK(ptot[0]["count"] == 1 + 12 + 5 + 1);
	CHECK(ptot[0]["total_ns"] == 1000 + 1200000 + 1500000 + 7000);
	CHECK(ptot[0]["threads"] == 3); // tids 200, 201 (two threads over time), 202
	CHECK(ptot[0]["max_ns"] == 300000);
	CHECK(ptot[0]["min_ns"] == 1000);
}

TEST_CASE("schedule: the idle task of a CPU is reported as tid 0 on that CPU")
{
	harness h;
	auto o = opts();
	o.idle_cpu = 1;
	o.system = false;
	sc::aggregator a(h.host, o);
	a.start(0);
	sc_thread idle = thread(0, 0, 0, "swapper/1");
	add(idle.total, 2, 5000000);
	window(idle.win, 1, 5000000, 5000000);
	a.advance();
	a.thread(idle);
	a.report(1000000000ULL, false);
	// system figures off: no system record, no sys_* fields; the interval and its running total
	REQUIRE(h.c.records.size() == 2);
	CHECK(h.c.records[1]["window"] == "total");
	const json &r = h.c.records[0];
	CHECK(r["event"] == "thread");
	CHECK(r["scope"] == "thread");
	CHECK(r["tid"] == 0);
	CHECK(r["cpu"] == 1);
	CHECK(r["comm"] == "swapper/1");
	CHECK(r["total_ns"] == 10000000);
	CHECK_FALSE(r.contains("sys_avg_ns"));
}

TEST_CASE("schedule: a thread that ends between ticks does not carry the last interval's extremes over")
{
	// The host drains ring buffers before each tick: a thread's end record arrives while the
	// interval after the last report is still under way.
	harness h;
	sc::aggregator a(h.host, opts());
	a.start(1000000000ULL);
	sc_thread w = thread(100, 101, 42, "worker");
	add(w.total, 1, 5000000); // interval 1: one 5 ms delay
	window(w.win, 1, 5000000, 5000000);
	std::vector<sc_cpu> cpus(1);
	REQUIRE(a.advance() == 2);
	a.system(cpus);
	a.thread(w);
	a.report(2000000000ULL, false);
	auto th = h.c.select("thread", "interval");
	REQUIRE(th.size() == 1);
	CHECK(th[0]["max_ns"] == 5000000);

	// interval 2: one 2 µs delay, then the thread ends before the next tick
	h.c.records.clear();
	sc_thread end = w;
	add(end.total, 1, 2000);
	window(end.win, 2, 2000, 2000);
	a.thread_end(end);
	REQUIRE(a.advance() == 3);
	a.system(cpus);
	a.report(3000000000ULL, false);
	th = h.c.select("thread", "interval");
	REQUIRE(th.size() == 1);
	CHECK(th[0]["count"] == 1);
	CHECK(th[0]["max_ns"] == 2000); // not interval 1's 5 ms
	CHECK(th[0]["min_ns"] == 2000);
}
