// SPDX-License-Identifier: Apache-2.0
// prometheus sink: the exact exposition for given records (text format and OpenMetrics), the
// conversion of log2 slots into cumulative buckets, the series cap, the expiry of the series
// of ended processes, and the sink plugin itself served over HTTP on loopback.
#include "../../sinks/prometheus/exporter.hpp"

#include "plugin_loader.hpp"
#include "support.hpp"

#include <procimage/sdk.hpp>

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <regex>
#include <set>

using namespace procimage;
namespace prom = procimage::sinks::prom;
namespace t = procimage::test;

namespace {

constexpr uint64_t TS = 1795639501000000000ULL; // a Unix epoch time, ns
constexpr uint64_t S = 1000000000ULL;

// The bucket bounds, 2^8 .. 2^34 ns in seconds, as the exposition must write them.
const std::vector<std::string> LES = {
	"2.56e-07",    "5.12e-07",    "1.024e-06",   "2.048e-06",   "4.096e-06",   "8.192e-06",   "1.6384e-05",
	"3.2768e-05",  "6.5536e-05",  "0.000131072", "0.000262144", "0.000524288", "0.001048576", "0.002097152",
	"0.004194304", "0.008388608", "0.016777216", "0.033554432", "0.067108864", "0.134217728", "0.268435456",
	"0.536870912", "1.073741824", "2.147483648", "4.294967296", "8.589934592", "17.179869184"};

prom::options opts(size_t max_series = 10000)
{
	prom::options o;
	o.max_series = max_series;
	o.expire_ns = 60 * S;
	o.ncpus = 2;
	o.schema = t::record_schema(); // the probes' metric declarations
	return o;
}

std::vector<uint64_t> slots(std::initializer_list<std::pair<size_t, uint64_t>> v, size_t n = 40)
{
	std::vector<uint64_t> h(n, 0);
	for (auto [i, c] : v)
		h.at(i) = c;
	return h;
}

// A schedule record of event system, process or thread (the event is its scope).
sdk::record sched(const char *event, uint32_t pid, const char *comm, const char *window, std::vector<uint64_t> hist,
		  uint64_t total_ns, uint64_t untimed = 0)
{
	sdk::record r("schedule", event);
	const std::string scope = event;
	r.ts(TS).ids(pid, scope == "thread" ? pid : 0).comm(comm).pid_start(pid ? 5000 : 0);
	r.str("scope", scope).str("window", window).u64("interval_ns", S).u64("count", 0).u64("total_ns", total_ns)
		.u64("untimed", untimed)
		.u64v("hist_ns", std::move(hist), PI_FMT_LOG2_HIST);
	return r;
}

sdk::record exec_rec(const char *comm, int64_t ret)
{
	sdk::record r("keytime", "exec");
	r.ts(TS).ids(42, 42).comm(comm).pid_start(5000);
	r.str("filename", "/bin/x").i64("ret", ret, PI_FMT_ERRNO);
	return r;
}

sdk::record exit_rec(uint32_t pid, const char *comm, uint64_t ts, uint64_t start, uint64_t sig = 0, uint64_t code = 0)
{
	sdk::record r("keytime", "exit");
	r.ts(ts).ids(pid, pid).comm(comm).pid_start(start);
	r.u64("exit_code", code).u64("signal", sig, PI_FMT_SIGNAL).boolean("group_dead", true).u64("process_lifetime_ns", 3 * S);
	return r;
}

sdk::record oncpu(uint32_t pid, const char *comm, uint64_t start, uint64_t dur)
{
	sdk::record r("keytime", "oncpu");
	r.ts(TS).ids(pid, pid).comm(comm).pid_start(start);
	r.u64("dur_ns", dur, PI_FMT_DURATION_NS);
	return r;
}

// A syscall row: scope process (pid set, tid 0) or system; window interval or total.
sdk::record sys_row(const char *scope, const char *window, uint32_t pid, const char *name, uint64_t nr, uint64_t count,
		    uint64_t errors, uint64_t total_ns)
{
	sdk::record r("syscall", "syscall");
	r.ts(TS).ids(pid, 0).comm(pid ? "wl" : "").pid_start(pid ? 5000 : 0);
	r.str("scope", scope).str("window", window).u64("interval_ns", S).str("syscall", name).u64("nr", nr)
		.u64("count", count)
		.u64("errors", errors)
		.u64("total_ns", total_ns)
		.u64v("hist_ns", slots({}), PI_FMT_LOG2_HIST);
	return r;
}

void feed(prom::exporter &e, sdk::record &r) { e.record(r.view()); }

// The exposition once new series show their values: a new counter or histogram is exposed at
// 0 by the first scrape (tested on its own below).
std::string settled(prom::exporter &e, bool openmetrics = false)
{
	e.scrape(openmetrics);
	return e.scrape(openmetrics);
}
void feed(prom::exporter &e, sdk::record &&r) { e.record(r.view()); }

// The lines of one family's samples (name prefix) in a text exposition.
std::vector<std::string> lines_of(const std::string &text, const std::string &prefix)
{
	std::vector<std::string> out;
	size_t pos = 0;
	while (pos < text.size()) {
		size_t nl = text.find('\n', pos);
		std::string line = text.substr(pos, nl - pos);
		pos = nl == std::string::npos ? text.size() : nl + 1;
		if (line.rfind(prefix, 0) == 0)
			out.push_back(line);
	}
	return out;
}

// The value of the sample line starting with `series ` ("name{labels}"), NaN if absent.
double value_of(const std::string &text, const std::string &series)
{
	for (const auto &l : lines_of(text, series + " "))
		return std::stod(l.substr(series.size() + 1));
	return std::nan("");
}

std::string bucket_lines(const std::string &name, const std::string &labels, const std::vector<uint64_t> &cum, uint64_t inf)
{
	std::string out;
	for (size_t j = 0; j < LES.size(); j++)
		out += name + "_bucket{" + labels + ",le=\"" + LES[j] + "\"} " + std::to_string(cum.at(j)) + "\n";
	out += name + "_bucket{" + labels + ",le=\"+Inf\"} " + std::to_string(inf) + "\n";
	return out;
}

} // namespace

TEST_CASE("prometheus: exact text exposition, with escaping and histogram buckets")
{
	prom::exporter e(opts());
	// slot 9 (512..1023 ns) x2, slot 12 (4096..8191 ns) x1, slot 39 (beyond 17 s) x1
	feed(e, sched("system", 0, "", "interval", slots({{9, 2}, {12, 1}, {39, 1}}), 600000006200ULL, 3));
	feed(e, sched("system", 0, "", "total", slots({{9, 50}}), 999)); // totals repeat intervals: ignored
	// a comm with a double quote, a backslash, a line feed and an invalid UTF-8 byte
	feed(e, exec_rec("a\"b\\c\nd\xff", -2));

	std::vector<uint64_t> cum(LES.size(), 0);
	for (size_t j = 0; j < cum.size(); j++)
		cum[j] = j < 2 ? 0 : j < 5 ? 2 : 3;
	const std::string want =
		"# HELP procimage_execs_total exec calls of target processes, by comm after the call and result (ok, error).\n"
		"# TYPE procimage_execs_total counter\n"
		"procimage_execs_total{comm=\"a\\\"b\\\\c\\nd\xef\xbf\xbd\",result=\"error\"} 1\n"
		"# HELP procimage_exporter_expired_series_total Series removed because their process ended expire_s earlier.\n"
		"# TYPE procimage_exporter_expired_series_total counter\n"
		"procimage_exporter_expired_series_total 0\n"
		"# HELP procimage_exporter_max_series The series cap (config max_series).\n"
		"# TYPE procimage_exporter_max_series gauge\n"
		"procimage_exporter_max_series 10000\n"
		"# HELP procimage_exporter_records_total Records this sink received, by emitting probe and event.\n"
		"# TYPE procimage_exporter_records_total counter\n"
		"procimage_exporter_records_total{probe=\"keytime\",event=\"exec\"} 1\n"
		"procimage_exporter_records_total{probe=\"schedule\",event=\"system\"} 2\n"
		"# HELP procimage_exporter_series Series this exporter holds, counted as Prometheus does (a histogram is its "
		"buckets, _sum and _count); self-metrics excluded.\n"
		"# TYPE procimage_exporter_series gauge\n"
		"procimage_exporter_series 32\n"
		"# HELP procimage_sched_delay_seconds Scheduling delay (runnable, waiting for a CPU) of the target's threads and "
		"of every thread of the system.\n"
		"# TYPE procimage_sched_delay_seconds histogram\n" +
		bucket_lines("procimage_sched_delay_seconds", "scope=\"system\"", cum, 4) +
		"procimage_sched_delay_seconds_sum{scope=\"system\"} 600.0000062\n"
		"procimage_sched_delay_seconds_count{scope=\"system\"} 4\n"
		"# HELP procimage_sched_untimed_delays_total Switch-ins after a wait whose start was not seen (not in the "
		"histogram).\n"
		"# TYPE procimage_sched_untimed_delays_total counter\n"
		"procimage_sched_untimed_delays_total{scope=\"system\"} 3\n";
	CHECK(settled(e) == want);
}

TEST_CASE("prometheus: exact OpenMetrics exposition")
{
	prom::exporter e(opts());
	feed(e, sched("process", 42, "wl", "interval", slots({{7, 1}}), 200));
	sdk::record lost("procimage", "lost");
	lost.ts(TS).ids(1, 1).comm("procimage").str("source", "keytime").u64("lost", 5).u64("lost_total", 7);
	feed(e, lost);

	std::vector<uint64_t> cum(LES.size(), 1); // slot 7 (128..255 ns) is under the first bound
	const std::string want =
		"# TYPE procimage_exporter_expired_series counter\n"
		"# HELP procimage_exporter_expired_series Series removed because their process ended expire_s earlier.\n"
		"procimage_exporter_expired_series_total 0\n"
		"# TYPE procimage_exporter_max_series gauge\n"
		"# HELP procimage_exporter_max_series The series cap (config max_series).\n"
		"procimage_exporter_max_series 10000\n"
		"# TYPE procimage_exporter_records counter\n"
		"# HELP procimage_exporter_records Records this sink received, by emitting probe and event.\n"
		"procimage_exporter_records_total{probe=\"procimage\",event=\"lost\"} 1\n"
		"procimage_exporter_records_total{probe=\"schedule\",event=\"process\"} 1\n"
		"# TYPE procimage_exporter_series gauge\n"
		"# HELP procimage_exporter_series Series this exporter holds, counted as Prometheus does (a histogram is its "
		"buckets, _sum and _count); self-metrics excluded.\n"
		"procimage_exporter_series 31\n"
		"# TYPE procimage_lost_records counter\n"
		"# HELP procimage_lost_records Records a probe's kernel side could not queue (full ring buffer or map), by "
		"probe instance; probe=targets: processes the target map could not hold.\n"
		"procimage_lost_records_total{probe=\"keytime\"} 7\n"
		"# TYPE procimage_sched_delay_seconds histogram\n"
		"# UNIT procimage_sched_delay_seconds seconds\n"
		"# HELP procimage_sched_delay_seconds Scheduling delay (runnable, waiting for a CPU) of the target's threads and "
		"of every thread of the system.\n" +
		bucket_lines("procimage_sched_delay_seconds", "scope=\"target\",pid=\"42\",comm=\"wl\"", cum, 1) +
		"procimage_sched_delay_seconds_sum{scope=\"target\",pid=\"42\",comm=\"wl\"} 2e-07\n"
		"procimage_sched_delay_seconds_count{scope=\"target\",pid=\"42\",comm=\"wl\"} 1\n"
		"# TYPE procimage_sched_untimed_delays counter\n"
		"# HELP procimage_sched_untimed_delays Switch-ins after a wait whose start was not seen (not in the "
		"histogram).\n"
		"procimage_sched_untimed_delays_total{scope=\"target\",pid=\"42\",comm=\"wl\"} 0\n"
		"# EOF\n";
	CHECK(settled(e, true) == want);
}

TEST_CASE("prometheus: a new count is exposed at 0 once, so that increase() sees all of it")
{
	prom::exporter e(opts());
	feed(e, exec_rec("wl", 0));
	feed(e, sched("process", 42, "wl", "interval", slots({{9, 5}}), 3000));
	sdk::record p("resource", "process");
	p.ts(TS).ids(42, 0).comm("wl").pid_start(5000).str("scope", "process").str("window", "interval")
		.u64("cpu_total_ns", 7 * S).u64("threads", 3);
	feed(e, p);
	std::string first = e.scrape(false);
	CHECK(value_of(first, "procimage_execs_total{comm=\"wl\",result=\"ok\"}") == 0);
	CHECK(value_of(first, "procimage_sched_delay_seconds_count{scope=\"target\",pid=\"42\",comm=\"wl\"}") == 0);
	CHECK(value_of(first, "procimage_sched_delay_seconds_bucket{scope=\"target\",pid=\"42\",comm=\"wl\",le=\"+Inf\"}") == 0);
	CHECK(value_of(first, "procimage_sched_delay_seconds_sum{scope=\"target\",pid=\"42\",comm=\"wl\"}") == 0);
	// gauges, and counters that mirror what the kernel counted before procimage looked, at once
	CHECK(value_of(first, "procimage_threads{pid=\"42\",comm=\"wl\"}") == 3);
	CHECK(value_of(first, "procimage_cpu_seconds_total{scope=\"target\",pid=\"42\",comm=\"wl\"}") == 7);
	feed(e, exec_rec("wl", 0));
	feed(e, exec_rec("wl", -2)); // a new series while the others are exposed
	std::string second = e.scrape(false);
	CHECK(value_of(second, "procimage_execs_total{comm=\"wl\",result=\"ok\"}") == 2);
	CHECK(value_of(second, "procimage_execs_total{comm=\"wl\",result=\"error\"}") == 0);
	CHECK(value_of(second, "procimage_sched_delay_seconds_count{scope=\"target\",pid=\"42\",comm=\"wl\"}") == 5);
	CHECK(value_of(e.scrape(false), "procimage_execs_total{comm=\"wl\",result=\"error\"}") == 1);
}

TEST_CASE("prometheus: log2 slots land under the right bucket bound")
{
	// slot i holds [2^i, 2^(i+1)) ns: its values are below 2^(i+1), the bound of bucket i+1-8
	CHECK(prom::bucket_of_slot(0) == 0);
	CHECK(prom::bucket_of_slot(7) == 0);  // 128..255 ns  -> le 256 ns
	CHECK(prom::bucket_of_slot(8) == 1);  // 256..511 ns  -> le 512 ns
	CHECK(prom::bucket_of_slot(33) == 26); // 2^33.. -> le 2^34 ns, the last bound
	CHECK(prom::bucket_of_slot(34) == prom::n_le); // beyond: only +Inf
	CHECK(prom::bucket_of_slot(63) == prom::n_le);
	CHECK(prom::slot_of_value(0) == 0);
	CHECK(prom::slot_of_value(1) == 0);
	CHECK(prom::slot_of_value(255) == 7);
	CHECK(prom::slot_of_value(256) == 8);

	prom::exporter e(opts());
	// a lock process record with a 36-slot histogram: buckets are cumulative, +Inf holds
	// everything
	sdk::record r("lock", "process");
	r.ts(TS).ids(42, 0).comm("wl");
	r.str("window", "interval").str("lock_type", "mutex").u64("acquisitions", 6).u64("contended", 2).u64("failed", 1)
		.u64("wait_total_ns", 1000).u64("hold_total_ns", 3000000000ULL)
		.u64v("wait_hist_ns", slots({{0, 1}, {8, 2}, {20, 3}}, 36), PI_FMT_LOG2_HIST)
		.u64v("hold_hist_ns", slots({{31, 1}, {35, 5}}, 36), PI_FMT_LOG2_HIST);
	feed(e, r);
	std::string text = settled(e);
	const std::string w = "procimage_lock_wait_seconds_bucket{pid=\"42\",comm=\"wl\",lock_type=\"mutex\",le=";
	CHECK(value_of(text, w + "\"2.56e-07\"}") == 1);
	CHECK(value_of(text, w + "\"5.12e-07\"}") == 3);
	CHECK(value_of(text, w + "\"0.001048576\"}") == 3);  // 2^20 ns bound: slot 20 not yet
	CHECK(value_of(text, w + "\"0.002097152\"}") == 6);  // 2^21 ns: slot 20 included
	CHECK(value_of(text, w + "\"+Inf\"}") == 6);
	const std::string h = "procimage_lock_hold_seconds_bucket{pid=\"42\",comm=\"wl\",lock_type=\"mutex\",le=";
	CHECK(value_of(text, h + "\"4.294967296\"}") == 1); // slot 31 under 2^32 ns
	CHECK(value_of(text, h + "\"17.179869184\"}") == 1);
	CHECK(value_of(text, h + "\"+Inf\"}") == 6);
	CHECK(value_of(text, "procimage_lock_hold_seconds_sum{pid=\"42\",comm=\"wl\",lock_type=\"mutex\"}") == 3);
	CHECK(value_of(text, "procimage_lock_hold_seconds_count{pid=\"42\",comm=\"wl\",lock_type=\"mutex\"}") == 6);
	CHECK(value_of(text, "procimage_lock_acquisitions_total{pid=\"42\",comm=\"wl\",lock_type=\"mutex\"}") == 6);
	CHECK(value_of(text, "procimage_lock_failed_total{pid=\"42\",comm=\"wl\",lock_type=\"mutex\"}") == 1);
	// a second interval adds up
	feed(e, r);
	text = settled(e);
	CHECK(value_of(text, w + "\"+Inf\"}") == 12);
	CHECK(value_of(text, "procimage_lock_contended_total{pid=\"42\",comm=\"wl\",lock_type=\"mutex\"}") == 4);
	// the per-lock records (the top N locks only) are not counted again
	sdk::record per_lock("lock", "lock");
	per_lock.ts(TS).ids(42, 0).comm("wl");
	per_lock.str("window", "interval").str("lock_type", "mutex").u64("lock_addr", 0x1000).u64("acquisitions", 6);
	feed(e, per_lock);
	text = settled(e);
	CHECK(value_of(text, "procimage_lock_acquisitions_total{pid=\"42\",comm=\"wl\",lock_type=\"mutex\"}") == 12);
}

TEST_CASE("prometheus: OpenMetrics only when the scraper asks for it")
{
	CHECK(prom::wants_openmetrics("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
				      "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"));
	CHECK(prom::wants_openmetrics("Application/OpenMetrics-Text"));
	CHECK_FALSE(prom::wants_openmetrics(""));
	CHECK_FALSE(prom::wants_openmetrics("text/plain;version=0.0.4"));
	CHECK_FALSE(prom::wants_openmetrics("*/*"));
	CHECK_FALSE(prom::wants_openmetrics("application/openmetrics-text;q=0, text/plain"));
	CHECK(prom::wants_openmetrics("text/plain;q=0.9, application/openmetrics-text; q=0.5"));
}

TEST_CASE("prometheus: events are counted, not turned into gauges")
{
	prom::exporter e(opts());
	feed(e, exec_rec("wl", 0));
	feed(e, exec_rec("wl", 0));
	feed(e, exec_rec("wl", -13));
	feed(e, exit_rec(50, "child", TS, 6000, 9));
	feed(e, exit_rec(51, "child", TS, 6001, 0, 3));
	sdk::record thread_exit("keytime", "exit");
	thread_exit.ts(TS).ids(52, 53).comm("child").u64("exit_code", 0).u64("signal", 0).boolean("group_dead", false);
	feed(e, thread_exit);
	sdk::record fork("keytime", "fork");
	fork.ts(TS).ids(42, 42).comm("wl").u64("child_pid", 50);
	feed(e, fork);
	sdk::record off("keytime", "offcpu");
	off.ts(TS).ids(42, 43).comm("wl").pid_start(5000).u64("dur_ns", 1500000000).str("reason", "sleeping");
	feed(e, off);
	feed(e, off);
	std::string text = settled(e);
	CHECK(value_of(text, "procimage_execs_total{comm=\"wl\",result=\"ok\"}") == 2);
	CHECK(value_of(text, "procimage_execs_total{comm=\"wl\",result=\"error\"}") == 1);
	CHECK(value_of(text, "procimage_process_exits_total{comm=\"child\",signal=\"SIGKILL\",exit_code=\"0\"}") == 1);
	CHECK(value_of(text, "procimage_process_exits_total{comm=\"child\",signal=\"none\",exit_code=\"3\"}") == 1);
	CHECK(value_of(text, "procimage_thread_exits_total{comm=\"child\"}") == 3);
	CHECK(value_of(text, "procimage_forks_total{comm=\"wl\",kind=\"fork\"}") == 1);
	CHECK(value_of(text, "procimage_process_lifetime_seconds_count{comm=\"child\"}") == 2);
	CHECK(value_of(text, "procimage_process_lifetime_seconds_sum{comm=\"child\"}") == 6);
	// 3 s is in slot 31 (2^31 ns = 2.1 s .. 4.3 s): under the 4.29 s bound, not the 2.15 s one
	CHECK(value_of(text, "procimage_process_lifetime_seconds_bucket{comm=\"child\",le=\"2.147483648\"}") == 0);
	CHECK(value_of(text, "procimage_process_lifetime_seconds_bucket{comm=\"child\",le=\"4.294967296\"}") == 2);
	CHECK(value_of(text, "procimage_offcpu_seconds_total{pid=\"42\",comm=\"wl\",reason=\"sleeping\"}") == 3);
}

TEST_CASE("prometheus: syscall counts, target from the interval rows, system from the total rows")
{
	prom::exporter e(opts());
	// target interval rows carry the interval's calls; the total rows beside them repeat them
	feed(e, sys_row("process", "interval", 42, "getppid", 110, 1000, 0, 200000));
	feed(e, sys_row("process", "total", 42, "getppid", 110, 1000, 0, 200000));
	feed(e, sys_row("process", "interval", 42, "getppid", 110, 500, 0, 100000));
	feed(e, sys_row("process", "total", 42, "getppid", 110, 1500, 0, 300000));
	feed(e, sys_row("process", "interval", 42, "openat", 257, 5, 5, 5000));
	feed(e, sys_row("process", "total", 42, "openat", 257, 5, 5, 5000));
	// system rows may skip intervals: the total rows count what happened meanwhile
	feed(e, sys_row("system", "interval", 0, "getppid", 110, 1000, 0, 0));
	feed(e, sys_row("system", "total", 0, "getppid", 110, 1000, 0, 250000));
	feed(e, sys_row("system", "interval", 0, "getppid", 110, 10, 0, 0));
	feed(e, sys_row("system", "total", 0, "getppid", 110, 2500, 0, 500000)); // 1500 since: 1490 unreported
	feed(e, sys_row("system", "interval", 0, "getppid", 110, 40, 0, 0));
	feed(e, sys_row("system", "total", 0, "getppid", 110, 40, 0, 8000)); // a new activation
	sdk::record tot("syscall", "totals");
	tot.ts(TS).ids(42, 0).comm("wl").pid_start(5000);
	tot.str("scope", "process").str("window", "interval").u64("interval_ns", S).u64("count", 1505).u64("total_ns", 305000)
		.u64v("hist_ns", slots({{7, 1500}, {10, 5}}), PI_FMT_LOG2_HIST);
	feed(e, tot);
	sdk::record run("syscall", "totals"); // its running total: already in the histogram
	run.ts(TS).ids(42, 0).comm("wl").pid_start(5000);
	run.str("scope", "process").str("window", "total").u64("interval_ns", 2 * S).u64("count", 1505).u64("total_ns", 305000)
		.u64v("hist_ns", slots({{7, 1500}, {10, 5}}), PI_FMT_LOG2_HIST);
	feed(e, run);
	std::string text = settled(e);
	CHECK(value_of(text, "procimage_syscalls_total{scope=\"target\",pid=\"42\",comm=\"wl\",syscall=\"getppid\"}") == 1500);
	CHECK(value_of(text, "procimage_syscall_errors_total{scope=\"target\",pid=\"42\",comm=\"wl\",syscall=\"openat\"}") == 5);
	CHECK(value_of(text, "procimage_syscall_seconds_total{scope=\"target\",pid=\"42\",comm=\"wl\",syscall=\"getppid\"}") ==
	      Approx(0.0003));
	CHECK(value_of(text, "procimage_syscalls_total{scope=\"system\",syscall=\"getppid\"}") == 2540);
	CHECK(value_of(text, "procimage_syscall_seconds_total{scope=\"system\",syscall=\"getppid\"}") == Approx(0.000508));
	CHECK(value_of(text, "procimage_syscall_duration_seconds_count{scope=\"target\",pid=\"42\",comm=\"wl\"}") == 1505);
	CHECK(value_of(text, "procimage_syscall_duration_seconds_bucket{scope=\"target\",pid=\"42\",comm=\"wl\",le=\"2.56e-07\"}") ==
	      1500);
	// sequences and calls in progress are left to the event sinks
	CHECK(lines_of(text, "procimage_syscall_inprogress").empty());
}

TEST_CASE("prometheus: resource figures in base units, target beside system")
{
	prom::exporter e(opts()); // 2 CPUs
	sdk::record p("resource", "process");
	p.ts(TS).ids(42, 0).comm("wl").pid_start(5000);
	p.str("scope", "process").str("window", "interval").u64("interval_ns", S).f64("cpu_pct", 50.0).u64("cpu_ns", S / 2).u64("user_ns", S / 4).u64("system_ns", S / 4)
		.u64("cpu_total_ns", 7 * S).u64("rss_bytes", 4096 * 3).u64("rss_anon_bytes", 4096).u64("rss_file_bytes", 8192)
		.u64("rss_shmem_bytes", 0).u64("swap_bytes", 0).u64("storage_read_bytes", 100).u64("storage_write_bytes", 200)
		.u64("read_total_bytes", 1000).u64("write_total_bytes", 2000).u64("voluntary_switches", 3)
		.u64("involuntary_switches", 4).u64("minor_faults", 5).u64("major_faults", 6).u64("threads", 2)
		.boolean("exited", false);
	feed(e, p);
	sdk::record s("resource", "system");
	s.ts(TS).ids(0, 0).comm("");
	s.str("scope", "system").str("window", "interval").u64("interval_ns", S).u64("ncpu", 2).f64("cpu_pct", 25.0).f64("busy_cpu_pct", 50.0).f64("user_pct", 20.0)
		.f64("system_pct", 5.0).u64("mem_total_bytes", 1 << 30).u64("mem_used_bytes", 1 << 29)
		.u64("storage_read_bytes", 10).u64("storage_write_bytes", 20);
	feed(e, s);
	feed(e, s);
	std::string text = settled(e);
	CHECK(value_of(text, "procimage_cpu_seconds_total{scope=\"target\",pid=\"42\",comm=\"wl\"}") == 7);
	CHECK(value_of(text, "procimage_cpu_usage_ratio{scope=\"target\",pid=\"42\",comm=\"wl\"}") == 0.25); // of 2 CPUs
	CHECK(value_of(text, "procimage_cpu_usage_ratio{scope=\"system\"}") == 0.25);
	CHECK(value_of(text, "procimage_cpu_seconds_total{scope=\"system\"}") == Approx(1.0)); // 2 x 25% of 2 CPUs x 1 s
	CHECK(value_of(text, "procimage_cpu_mode_seconds_total{scope=\"system\",mode=\"user\"}") == Approx(0.8));
	CHECK(value_of(text, "procimage_memory_used_bytes{scope=\"target\",pid=\"42\",comm=\"wl\"}") == 12288);
	CHECK(value_of(text, "procimage_memory_used_bytes{scope=\"system\"}") == (1 << 29));
	CHECK(value_of(text, "procimage_memory_rss_bytes{pid=\"42\",comm=\"wl\",type=\"file\"}") == 8192);
	CHECK(value_of(text, "procimage_storage_read_bytes_total{scope=\"system\"}") == 20);
	CHECK(value_of(text, "procimage_io_written_bytes_total{pid=\"42\",comm=\"wl\"}") == 2000);
	CHECK(value_of(text, "procimage_page_faults_total{pid=\"42\",comm=\"wl\",type=\"major\"}") == 6);
	CHECK(value_of(text, "procimage_cpus") == 2);
}

TEST_CASE("prometheus: schedule delays from the process and system rows, never from thread rows")
{
	prom::exporter e(opts());
	feed(e, sched("process", 42, "wl", "interval", slots({{10, 2}}), 3000));
	feed(e, sched("thread", 42, "wl", "interval", slots({{10, 2}}), 3000));  // within the process's
	feed(e, sched("thread", 77, "other", "interval", slots({{10, 1}}), 1500)); // a thread target
	feed(e, sched("process", 42, "wl", "total", slots({{10, 2}}), 3000));     // repeats the intervals
	feed(e, sched("system", 0, "", "interval", slots({{10, 5}}), 9000));
	std::string text = settled(e);
	CHECK(value_of(text, "procimage_sched_delay_seconds_count{scope=\"target\",pid=\"42\",comm=\"wl\"}") == 2);
	CHECK(value_of(text, "procimage_sched_delay_seconds_sum{scope=\"target\",pid=\"42\",comm=\"wl\"}") ==
	      Approx(3e-6));
	CHECK(lines_of(text, "procimage_sched_delay_seconds_count{scope=\"target\",pid=\"77\"").empty());
	CHECK(value_of(text, "procimage_sched_delay_seconds_count{scope=\"system\"}") == 5);
}

TEST_CASE("prometheus: host records give the self-metrics")
{
	prom::exporter e(opts());
	auto host = [&](const char *event, std::vector<std::pair<const char *, uint64_t>> v) {
		sdk::record r("procimage", event);
		r.ts(TS).ids(1, 1).comm("procimage").str("source", "syscall");
		for (auto [k, x] : v)
			r.u64(k, x);
		feed(e, r);
	};
	host("activated", {{"duration_s", 0}});
	std::string text = settled(e);
	CHECK(value_of(text, "procimage_probe_active{probe=\"syscall\"}") == 1);
	host("lost", {{"lost", 3}, {"lost_total", 3}});
	host("lost", {{"lost", 2}, {"lost_total", 5}});
	host("deactivated", {{"records", 40}});
	host("summary", {{"records", 40}, {"lost_total", 5}, {"errors", 1}});
	text = settled(e);
	CHECK(value_of(text, "procimage_probe_active{probe=\"syscall\"}") == 0);
	CHECK(value_of(text, "procimage_probe_activations_total{probe=\"syscall\"}") == 1);
	CHECK(value_of(text, "procimage_lost_records_total{probe=\"syscall\"}") == 5);
	CHECK(value_of(text, "procimage_probe_kernel_records_total{probe=\"syscall\"}") == 40);
	CHECK(value_of(text, "procimage_probe_errors_total{probe=\"syscall\"}") == 1);
	CHECK(value_of(text, "procimage_exporter_records_total{probe=\"procimage\",event=\"lost\"}") == 2);
	e.note_scrape(0.25);
	e.note_scrape(0.5);
	text = settled(e);
	CHECK(value_of(text, "procimage_exporter_scrape_duration_seconds_count") == 2);
	CHECK(value_of(text, "procimage_exporter_scrape_duration_seconds_sum") == 0.75);
	// BPF program figures replace the previous ones at each scrape
	std::vector<prom::bpf_prog_stats> progs{{"sc_enter", 7, 2500000000ULL, 10}, {"kt_switch", 9, 0, 0}};
	text = e.scrape(false, &progs);
	CHECK(value_of(text, "procimage_bpf_prog_run_seconds_total{prog=\"sc_enter\",id=\"7\"}") == 2.5);
	CHECK(value_of(text, "procimage_bpf_prog_runs_total{prog=\"sc_enter\",id=\"7\"}") == 10);
	progs.pop_back();
	text = e.scrape(false, &progs);
	CHECK(lines_of(text, "procimage_bpf_prog_runs_total{prog=\"kt_switch\"").empty());
}

TEST_CASE("prometheus: the series cap refuses new series and counts them")
{
	prom::exporter e(opts(100));
	// each target syscall row makes three counter series
	for (int i = 0; i < 40; i++) {
		std::string name = "call" + std::to_string(i);
		feed(e, sys_row("process", "interval", 42, name.c_str(), 400 + i, 1, 0, 10));
	}
	CHECK(e.series_count() == 100);
	std::string text = settled(e);
	CHECK(value_of(text, "procimage_exporter_series") == 100);
	CHECK(lines_of(text, "procimage_syscalls_total{").size() == 34);
	// 6 rows found no room for any of their three series, one row for two of them
	const uint64_t refused = 6 * 3 + 2;
	CHECK(e.dropped_series() == refused);
	double by_family = value_of(text, "procimage_exporter_dropped_series_total{family=\"procimage_syscalls_total\"}") +
			   value_of(text, "procimage_exporter_dropped_series_total{family=\"procimage_syscall_errors_total\"}") +
			   value_of(text, "procimage_exporter_dropped_series_total{family=\"procimage_syscall_seconds_total\"}");
	CHECK(by_family == refused);
	// the same label sets again: refused again, but counted once
	for (int i = 34; i < 40; i++) {
		std::string name = "call" + std::to_string(i);
		feed(e, sys_row("process", "interval", 42, name.c_str(), 400 + i, 1, 0, 10));
	}
	CHECK(e.dropped_series() == refused);
	// existing series still count
	feed(e, sys_row("process", "interval", 42, "call0", 400, 5, 0, 10));
	text = settled(e);
	CHECK(value_of(text, "procimage_syscalls_total{scope=\"target\",pid=\"42\",comm=\"wl\",syscall=\"call0\"}") == 6);
	// a histogram needs 30 series at once: refused as a whole (and the untimed counter with it)
	feed(e, sched("system", 0, "", "interval", slots({{9, 1}}), 600));
	CHECK(lines_of(settled(e), "procimage_sched_delay_seconds").empty());
	CHECK(e.dropped_series() == refused + 2);
}

TEST_CASE("prometheus: a process's gauges leave when it ends; its counters stay until expire_s")
{
	std::set<uint32_t> running = {42, 43};
	auto o = opts();
	o.alive = [&](uint32_t pid, uint64_t) { return running.count(pid) > 0; };
	o.check_period_ns = S;
	prom::exporter e(o);
	auto proc = [&](uint32_t pid, uint64_t ts, bool exited) {
		sdk::record p("resource", "process");
		p.ts(ts).ids(pid, 0).comm("wl").pid_start(5000 + pid);
		p.str("scope", "process").str("window", "interval").u64("interval_ns", S).f64("cpu_pct", 100.0).u64("cpu_ns", S).u64("cpu_total_ns", 3 * S)
			.u64("rss_bytes", 8192).u64("rss_anon_bytes", 4096).u64("rss_file_bytes", 4096).u64("rss_shmem_bytes", 0)
			.u64("swap_bytes", 0).u64("threads", 2).boolean("exited", exited);
		feed(e, p);
	};
	proc(42, TS, false);
	proc(43, TS, false);
	e.maintain(TS);
	std::string text = settled(e);
	CHECK(value_of(text, "procimage_cpu_usage_ratio{scope=\"target\",pid=\"42\",comm=\"wl\"}") == 0.5);
	CHECK(lines_of(text, "procimage_threads{pid=\"43\"").size() == 1);

	// 42: its last resource record says it exited; 43: found gone by the liveness check
	proc(42, TS + S, true);
	running.erase(43);
	e.maintain(TS + 2 * S);
	text = settled(e);
	for (const char *gauge : {"procimage_cpu_usage_ratio{scope=\"target\"", "procimage_memory_used_bytes{scope=\"target\"",
				  "procimage_memory_rss_bytes{", "procimage_memory_swap_bytes{", "procimage_threads{"}) {
		INFO(gauge);
		CHECK(lines_of(text, gauge).empty());
	}
	// a late record about an ended process brings no gauge back
	proc(43, TS + 2 * S, false);
	CHECK(lines_of(settled(e), "procimage_threads{").empty());
	// the counters stay for increase() until expire_s
	CHECK(value_of(text, "procimage_cpu_seconds_total{scope=\"target\",pid=\"42\",comm=\"wl\"}") == 3);
	e.maintain(TS + 61 * S - 1);
	CHECK(lines_of(settled(e), "procimage_cpu_seconds_total{scope=\"target\",pid=\"42\"").size() == 1);
	e.maintain(TS + 61 * S); // 60 s after its end
	CHECK(lines_of(settled(e), "procimage_cpu_seconds_total{scope=\"target\",pid=\"42\"").empty());
}

TEST_CASE("prometheus: series of ended processes expire, live ones stay")
{
	std::set<uint32_t> running = {42, 60};
	auto o = opts();
	o.alive = [&](uint32_t pid, uint64_t) { return running.count(pid) > 0; };
	o.check_period_ns = S;
	prom::exporter e(o);
	const uint64_t start42 = 5000, start43 = 7000 * S;
	feed(e, oncpu(42, "wl", start42, 10));
	feed(e, oncpu(43, "child", start43, 20));
	feed(e, oncpu(60, "other", 9000, 30));
	feed(e, oncpu(61, "gone", 9100, 40));
	feed(e, exec_rec("wl", 0)); // comm-labelled event counters belong to no process
	const uint64_t t_exit = TS + 10 * S;
	feed(e, exit_rec(43, "child", t_exit, start43, 9)); // keytime says 43 ended

	e.maintain(TS); // 61 is not running: noticed now
	running.erase(60);
	e.maintain(TS + S / 2); // within check_period: 60 not checked yet
	std::string text = settled(e);
	CHECK(lines_of(text, "procimage_oncpu_seconds_total{").size() == 4);

	e.maintain(TS + 2 * S); // 60 found gone now
	e.maintain(TS + 60 * S); // 61: 60 s after it was found gone
	text = settled(e);
	CHECK(lines_of(text, "procimage_oncpu_seconds_total{pid=\"61\"").empty());
	CHECK(lines_of(text, "procimage_oncpu_seconds_total{pid=\"43\"").size() == 1);
	CHECK(value_of(text, "procimage_exporter_expired_series_total") == 1);

	e.maintain(t_exit + 60 * S - 1);
	CHECK(lines_of(settled(e), "procimage_oncpu_seconds_total{pid=\"43\"").size() == 1);
	e.maintain(t_exit + 60 * S);
	text = settled(e);
	CHECK(lines_of(text, "procimage_oncpu_seconds_total{pid=\"43\"").empty());
	CHECK(lines_of(text, "procimage_oncpu_seconds_total{pid=\"60\"").empty());
	CHECK(value_of(text, "procimage_oncpu_seconds_total{pid=\"42\",comm=\"wl\"}") == 10e-9);
	CHECK(value_of(text, "procimage_exporter_expired_series_total") == 3);
	// left: 42's series, the comm-labelled counters and the lifetime histogram (30)
	CHECK(value_of(text, "procimage_exporter_series") == 1 + 1 + 1 + 1 + 30);
	CHECK(value_of(text, "procimage_execs_total{comm=\"wl\",result=\"ok\"}") == 1);
	CHECK(value_of(text, "procimage_process_exits_total{comm=\"child\",signal=\"SIGKILL\",exit_code=\"0\"}") == 1);

	// resource's last record of a process says it exited
	sdk::record last("resource", "process");
	last.ts(TS + 100 * S).ids(42, 0).comm("wl").pid_start(start42).str("scope", "process").str("window", "interval")
		.u64("interval_ns", S).u64("cpu_total_ns", S)
		.boolean("exited", true);
	feed(e, last);
	e.maintain(TS + 159 * S);
	CHECK(lines_of(settled(e), "procimage_oncpu_seconds_total{pid=\"42\"").size() == 1);
	e.maintain(TS + 160 * S);
	CHECK(lines_of(settled(e), "procimage_oncpu_seconds_total{pid=\"42\"").empty());
	CHECK(lines_of(settled(e), "procimage_cpu_seconds_total{").empty());
}

TEST_CASE("prometheus: a reused pid starts afresh")
{
	prom::exporter e(opts());
	feed(e, oncpu(42, "wl", 5000 * S, 10));
	feed(e, oncpu(42, "wl", 5000 * S + 500, 10)); // the same process (start read twice)
	CHECK(value_of(settled(e), "procimage_oncpu_seconds_total{pid=\"42\",comm=\"wl\"}") == 20e-9);
	feed(e, oncpu(42, "wl", 6000 * S, 7)); // another process with pid 42
	std::string text = settled(e);
	CHECK(value_of(text, "procimage_oncpu_seconds_total{pid=\"42\",comm=\"wl\"}") == 7e-9);
	CHECK(value_of(text, "procimage_exporter_expired_series_total") == 1);
}

// ---------------------------------------------------------------------------- the plugin

namespace {

struct logged {
	std::vector<std::string> lines;
};

void log_cb(void *ctx, int, const char *msg) { static_cast<logged *>(ctx)->lines.emplace_back(msg); }

using t::http_get;

struct sink_plugin {
	core::plugin_ptr plugin;
	logged log;
	pi_host host{};

	sink_plugin()
	{
		auto p = core::load_plugin(t::build_dir() + "/plugins/sink_prometheus.so");
		REQUIRE(p.ok());
		plugin = *p;
		host.size = sizeof host;
		host.api_major = PI_API_MAJOR;
		host.api_minor = PI_API_MINOR;
		host.control_map_fd = host.targets_map_fd = -1;
		host.ctx = &log;
		host.log = log_cb;
		host.record_schema = t::record_schema().c_str(); // the metrics come from it
	}
	const pi_sink_ops &ops() const { return *plugin->desc->sink; }
	std::string validate(const std::string &cfg) const
	{
		char err[PI_ERRBUF_SIZE] = "";
		return ops().validate(cfg.c_str(), err, sizeof err) == PI_OK ? "" : err;
	}
	void *create(const std::string &cfg, std::string &err)
	{
		char buf[PI_ERRBUF_SIZE] = "";
		void *inst = ops().create(&host, cfg.c_str(), buf, sizeof buf);
		err = buf;
		return inst;
	}
	// The port the sink announced it serves on.
	int announced_port() const
	{
		std::regex re("http://127\\.0\\.0\\.1:([0-9]+)/metrics");
		for (const auto &l : log.lines) {
			std::smatch m;
			if (std::regex_search(l, m, re))
				return std::stoi(m[1]);
		}
		return 0;
	}
};

} // namespace

TEST_CASE("prometheus sink: configuration errors name the key")
{
	sink_plugin s;
	CHECK(s.validate("{}") == "");
	CHECK(s.validate(R"({"listen": "[::1]:9464", "openmetrics": false, "max_series": 500, "expire_s": 0, "bpf_stats": false})") ==
	      "");
	CHECK(s.validate(R"({"listen": "9464"})").rfind("listen: expected HOST:PORT", 0) == 0);
	CHECK(s.validate(R"({"listen": "127.0.0.1:99999"})").rfind("listen: ", 0) == 0);
	CHECK(s.validate(R"({"listen": "::1:9464"})").rfind("listen: ", 0) == 0);
	CHECK(s.validate(R"({"listen": 9464})") == "listen: expected a string");
	CHECK(s.validate(R"({"max_series": 10})") == "max_series: expected an integer in 100..10000000, got 10");
	CHECK(s.validate(R"({"expire_s": -1})").rfind("expire_s: ", 0) == 0);
	CHECK(s.validate(R"({"openmetrics": "yes"})") == "openmetrics: expected true or false");
	CHECK(s.validate(R"({"bpf_stats": 1})") == "bpf_stats: expected true or false");
	CHECK(s.validate(R"({"port": 1})") == "port: unknown key");
}

TEST_CASE("prometheus sink: serves /metrics over HTTP, OpenMetrics on request, and stops with the sink")
{
	sink_plugin s;
	std::string err;
	void *inst = s.create(R"({"listen": "127.0.0.1:0"})", err);
	INFO(err);
	REQUIRE(inst);
	int port = s.announced_port();
	REQUIRE(port > 0);

	// a second exporter cannot take the same port
	void *second = s.create(R"({"listen": "127.0.0.1:)" + std::to_string(port) + "\"}", err);
	CHECK(second == nullptr);
	CHECK(err.rfind("listen: cannot listen on 127.0.0.1:" + std::to_string(port), 0) == 0);

	auto r = exec_rec("wl", 0);
	REQUIRE(s.ops().write(inst, &r.view()) == PI_OK);
	REQUIRE(s.ops().flush(inst) == PI_OK);

	auto text = http_get(port, "/metrics");
	CHECK(text.status == 200);
	CHECK(text.headers.find("Content-Type: text/plain; version=0.0.4; charset=utf-8") != std::string::npos);
	// a new series: 0 at its first scrape
	CHECK(text.body.find("# TYPE procimage_execs_total counter\nprocimage_execs_total{comm=\"wl\",result=\"ok\"} 0\n") !=
	      std::string::npos);
	CHECK(text.body.find("# EOF") == std::string::npos);

	auto om = http_get(port, "/metrics", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5");
	CHECK(om.status == 200);
	CHECK(om.headers.find("Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8") != std::string::npos);
	CHECK(om.body.find("# TYPE procimage_execs counter\n") != std::string::npos);
	CHECK(om.body.find("procimage_execs_total{comm=\"wl\",result=\"ok\"} 1\n") != std::string::npos);
	CHECK(om.body.size() >= 6);
	CHECK(om.body.substr(om.body.size() - 6) == "# EOF\n");
	// the earlier scrape was timed
	CHECK(value_of(om.body, "procimage_exporter_scrape_duration_seconds_count") == 1);

	CHECK(http_get(port, "/nothing").status == 404);

	s.ops().destroy(inst);
	CHECK(http_get(port, "/metrics").status == 0); // nobody listens any more
}

TEST_CASE("prometheus sink: OpenMetrics can be turned off")
{
	sink_plugin s;
	std::string err;
	void *inst = s.create(R"({"listen": "127.0.0.1:0", "openmetrics": false})", err);
	REQUIRE(inst);
	auto r = http_get(s.announced_port(), "/metrics", "application/openmetrics-text;version=1.0.0");
	CHECK(r.headers.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);
	s.ops().destroy(inst);
}
