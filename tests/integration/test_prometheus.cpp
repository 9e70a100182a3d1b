// SPDX-License-Identifier: Apache-2.0
// prometheus sink end to end: a real Prometheus server (Debian's prometheus package) scrapes
// procimage's exporter every second while procimage traces wl-prometheus, whose behaviour is
// known in advance; Prometheus's HTTP API must then return the workload's true figures, and
// every PromQL expression of the shipped Grafana dashboards must return data.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <sstream>
#include <thread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

using nlohmann::json;
namespace t = procimage::test;
namespace fs = std::filesystem;
using t::free_port;
using t::http_get;

namespace {

const char *PROMETHEUS = "/usr/bin/prometheus";
const char *PROMTOOL = "/usr/bin/promtool";

std::string url_encode(const std::string &s)
{
	std::string out;
	for (unsigned char c : s) {
		if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
			out += static_cast<char>(c);
		} else {
			char b[4];
			std::snprintf(b, sizeof b, "%%%02X", c);
			out += b;
		}
	}
	return out;
}

// A background process whose output goes to a file; killed (if still running) at the end.
struct child {
	pid_t pid = -1;
	child(const std::vector<std::string> &argv, const std::string &log, const std::map<std::string, std::string> &env = {})
	{
		pid = fork();
		if (pid == 0) {
			int fd = open(log.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
			dup2(fd, 1);
			dup2(fd, 2);
			for (const auto &[k, v] : env)
				setenv(k.c_str(), v.c_str(), 1);
			std::vector<char *> args;
			for (const auto &a : argv)
				args.push_back(const_cast<char *>(a.c_str()));
			args.push_back(nullptr);
			execv(args[0], args.data());
			_exit(127);
		}
	}
	// Exit status, or -1 if it did not end within `secs`.
	int wait_for(double secs)
	{
		for (int i = 0; i < secs * 50; i++) {
			int st = 0;
			pid_t r = waitpid(pid, &st, WNOHANG);
			if (r == pid) {
				pid = -1;
				return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			}
			std::this_thread::sleep_for(std::chrono::milliseconds(20));
		}
		return -1;
	}
	void stop()
	{
		if (pid <= 0)
			return;
		kill(pid, SIGTERM);
		if (wait_for(10) < 0) {
			kill(pid, SIGKILL);
			waitpid(pid, nullptr, 0);
		}
		pid = -1;
	}
	~child() { stop(); }
};

template <typename F> bool eventually(double secs, F f)
{
	for (int i = 0; i < secs * 10; i++) {
		if (f())
			return true;
		std::this_thread::sleep_for(std::chrono::milliseconds(100));
	}
	return f();
}

// Prometheus's HTTP API
struct prometheus_api {
	int port;

	// The instant query's reply: {"status": ..., "data": {"resultType": "vector", "result": [...]}}
	json query(const std::string &promql) const
	{
		auto r = http_get(port, "/api/v1/query?query=" + url_encode(promql));
		if (r.status == 0)
			return json{{"status", "error"}, {"error", "no connection"}};
		try {
			return json::parse(r.body);
		} catch (const std::exception &e) {
			return json{{"status", "error"}, {"error", std::string("unparsable reply: ") + e.what()}};
		}
	}
	// The values of a vector result (NaN for non-numbers).
	std::vector<double> values(const std::string &promql) const
	{
		std::vector<double> out;
		json j = query(promql);
		if (j.value("status", "") != "success")
			return out;
		for (const auto &s : j["data"]["result"])
			out.push_back(std::strtod(s["value"][1].get<std::string>().c_str(), nullptr));
		return out;
	}
	// The single value of a query, NaN if there is not exactly one.
	double value(const std::string &promql) const
	{
		auto v = values(promql);
		return v.size() == 1 ? v[0] : std::nan("");
	}
};

double proc_cpu_seconds(long pid)
{
	std::string stat = t::read_file("/proc/" + std::to_string(pid) + "/stat");
	std::istringstream rest(stat.substr(stat.rfind(')') + 2));
	std::string f;
	double utime = 0, stime = 0;
	for (int i = 3; i <= 15 && rest >> f; i++) {
		if (i == 14)
			utime = std::stod(f);
		if (i == 15)
			stime = std::stod(f);
	}
	return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

std::string bpf_stats_sysctl() { return t::read_file("/proc/sys/kernel/bpf_stats_enabled"); }

std::map<std::string, long> wait_for_key(const std::string &log, const std::string &key, double secs)
{
	std::map<std::string, long> kv;
	eventually(secs, [&] {
		kv = t::read_kv(log);
		return kv.count(key) > 0;
	});
	return kv;
}

// Grafana's variables, replaced as Grafana would for one selected value each. The range
// variables cover the whole test (Prometheus started with it), so rates see all of it.
std::string substitute(std::string e, const std::map<std::string, std::string> &vars)
{
	for (const auto &[k, v] : vars) {
		for (const std::string &form : {"${" + k + "}", "$" + k}) {
			size_t at;
			while ((at = e.find(form)) != std::string::npos)
				e.replace(at, form.size(), v);
		}
	}
	return e;
}

struct panel_query {
	std::string where;
	std::string expr;
};

void collect_targets(const json &panels, const std::string &file, std::vector<panel_query> &out)
{
	for (const auto &p : panels) {
		for (const auto &tg : p.value("targets", json::array()))
			if (tg.contains("expr"))
				out.push_back({file + ": " + p.value("title", "?"), tg["expr"].get<std::string>()});
		if (p.contains("panels"))
			collect_targets(p["panels"], file, out);
	}
}

} // namespace

TEST_CASE("prometheus: a real Prometheus scrapes the exporter; the workload's figures and every dashboard query check out")
{
	REQUIRE_ROOT_OR_SKIP();
	if (access(PROMETHEUS, X_OK) != 0)
		FAIL("Debian's prometheus package is needed (scripts/install-deps.sh installs it)");
	t::temp_dir d;
	const int exporter_port = free_port();
	int prom_port = free_port();
	while (prom_port == exporter_port)
		prom_port = free_port();

	// ---- Prometheus, scraping every second
	t::write_file(d.file("prometheus.yml"), "global:\n"
						"  scrape_interval: 1s\n"
						"  evaluation_interval: 1s\n"
						"scrape_configs:\n"
						"  - job_name: procimage\n"
						"    static_configs:\n"
						"      - targets: ['127.0.0.1:" +
							std::to_string(exporter_port) + "']\n");
	child prom({PROMETHEUS, "--config.file=" + d.file("prometheus.yml"), "--storage.tsdb.path=" + d.file("tsdb"),
		    "--web.listen-address=127.0.0.1:" + std::to_string(prom_port), "--log.level=warn"},
		   d.file("prometheus.log"));
	prometheus_api api{prom_port};
	REQUIRE(eventually(60, [&] { return http_get(prom_port, "/-/ready").status == 200; }));

	// ---- procimage with every probe, the exporter and a jsonl sink, tracing wl-prometheus
	const std::string before = bpf_stats_sysctl();
	json pipeline = {
		{"version", 1},
		{"interval_ms", 500},
		{"probes",
		 {{"keytime", {{"cpu", true}}}, {"schedule", json::object()}, {"syscall", {{"sequence", false}}},
		  {"resource", json::object()}, {"lock", json::object()}}},
		{"sinks",
		 {{"prometheus", {{"listen", "127.0.0.1:" + std::to_string(exporter_port)}, {"bpf_stats", true}}},
		  {"jsonl", {{"path", d.file("out.jsonl")}}}}},
		{"command", {t::build_dir() + "/wl-prometheus"}}};
	t::write_file(d.file("p.json"), pipeline.dump());
	child host({t::procimage_bin(), "--pipeline", d.file("p.json")}, d.file("procimage.log"),
		   {{"PROCIMAGE_WL_LOG", d.file("wl.log")}});
	auto truth = wait_for_key(d.file("wl.log"), "done", 60);
	INFO("procimage: " << t::read_file(d.file("procimage.log")));
	REQUIRE(truth.count("done"));
	const long pid = truth["pid"];
	const std::string P = std::to_string(pid);
	const double proc_cpu = proc_cpu_seconds(pid); // it holds still from now on

	// the figures reach Prometheus, and are scraped a few times more
	const std::string getppid = "procimage_syscalls_total{scope=\"target\",syscall=\"getppid\",pid=\"" + P + "\"}";
	REQUIRE(eventually(30, [&] { return api.value(getppid) == truth["getppid"]; }));
	INFO("prometheus: " << t::read_file(d.file("prometheus.log")));
	CHECK(eventually(30, [&] { return api.value("count_over_time(" + getppid + "[1m])") >= 3; }));
	CHECK(eventually(30, [&] { return api.value("procimage_exporter_scrape_duration_seconds_count") >= 3; }));
	CHECK(api.value("up{job=\"procimage\"}") == 1);

	// ---- gauges describe the present: the three children have ended, and none of their gauge
	// series is left, neither in the exposition nor in Prometheus's view of now (a series
	// that leaves a scrape is marked stale); the shares of the whole machine add up to ≤ 1
	{
		const std::vector<std::string> gauges = {"procimage_cpu_usage_ratio", "procimage_memory_used_bytes",
							 "procimage_memory_rss_bytes", "procimage_threads"};
		for (const char *key : {"child_exit3", "child_killed", "child_true"}) {
			const std::string C = std::to_string(truth[key]);
			INFO("child " << key << " pid " << C);
			auto gauge_lines = [&](const std::string &text) {
				std::vector<std::string> out;
				std::istringstream in(text);
				for (std::string line; std::getline(in, line);)
					for (const auto &g : gauges)
						if (line.rfind(g + "{", 0) == 0 && line.find("pid=\"" + C + "\"") != std::string::npos)
							out.push_back(line);
				return out;
			};
			std::vector<std::string> left;
			CHECK(eventually(5, [&] {
				left = gauge_lines(http_get(exporter_port, "/metrics").body);
				return left.empty();
			}));
			for (const auto &l : left)
				UNSCOPED_INFO("left: " << l);
			for (const auto &g : gauges) {
				INFO(g);
				CHECK(eventually(10, [&] { return api.values(g + "{pid=\"" + C + "\"}").empty(); }));
			}
		}
		const double share = api.value("sum(procimage_cpu_usage_ratio{scope=\"target\"})");
		INFO("sum of the targets' CPU shares: " << share);
		CHECK(share <= 1.0);
	}

	// ---- the workload's figures, as Prometheus stored them
	CHECK(api.value(getppid) == 20000);
	CHECK(api.value("procimage_syscalls_total{scope=\"system\",syscall=\"getppid\"}") >= 20000);
	const double delays = api.value("sum(procimage_sched_delay_seconds_count{scope=\"target\",pid=\"" + P + "\"})");
	CHECK(delays > 0);
	CHECK(api.value("sum(procimage_sched_delay_seconds_count{scope=\"system\"})") > delays);
	CHECK(api.value("sum(procimage_sched_delay_seconds_sum{scope=\"target\",pid=\"" + P + "\"})") > 0);
	// CPU time: the kernel's accounting of the process, as /proc shows it (clock ticks)
	const double cpu = api.value("procimage_cpu_seconds_total{scope=\"target\",pid=\"" + P + "\"}");
	INFO("CPU seconds: exporter " << cpu << ", /proc " << proc_cpu);
	CHECK(cpu >= truth["cpu_ms"] / 1000.0);
	CHECK(std::fabs(cpu - proc_cpu) <= 0.03 + 0.05 * proc_cpu);
	CHECK(api.value("sum(procimage_memory_used_bytes{scope=\"target\",pid=\"" + P + "\"})") > 0);
	CHECK(api.value("procimage_memory_used_bytes{scope=\"system\"}") > 0);
	CHECK(api.value("procimage_threads{pid=\"" + P + "\"}") == 1);
	// keytime events, counted
	CHECK(api.value("procimage_process_exits_total{comm=\"wl-prometheus\",signal=\"SIGKILL\",exit_code=\"0\"}") == 1);
	CHECK(api.value("procimage_process_exits_total{comm=\"wl-prometheus\",signal=\"none\",exit_code=\"3\"}") == 1);
	CHECK(api.value("procimage_process_exits_total{comm=\"true\",signal=\"none\",exit_code=\"0\"}") == 1);
	CHECK(api.value("procimage_execs_total{comm=\"wl-prometheus\",result=\"error\"}") == 1);
	CHECK(api.value("procimage_execs_total{comm=\"true\",result=\"ok\"}") == 1);
	CHECK(api.value("procimage_forks_total{comm=\"wl-prometheus\",kind=\"fork\"}") == 3);
	CHECK(api.value("procimage_forks_total{comm=\"wl-prometheus\",kind=\"thread\"}") == 2);
	{
		// on a failure, say whether keytime or the exporter fell short: the jsonl sink's sum of
		// the same records, and the series the exporter expired
		double jsonl_oncpu = 0;
		for (const auto &e : t::read_jsonl(d.file("out.jsonl")))
			if (e["event"] == "oncpu" && e["pid"] == pid)
				jsonl_oncpu += e["dur_ns"].get<double>() / 1e9;
		INFO("on-CPU seconds in the jsonl sink: " << jsonl_oncpu << "; series expired: "
							   << api.value("procimage_exporter_expired_series_total") << "; keytime records lost: "
							   << api.value("procimage_lost_records_total{probe=\"keytime\"}"));
		CHECK(api.value("sum(procimage_oncpu_seconds_total{pid=\"" + P + "\"})") > 0.25);
	}

	// the same records, as the jsonl sink wrote them
	auto recs = t::read_jsonl(d.file("out.jsonl"));
	double lock_acq = 0, execs = 0;
	for (const auto &r : recs) {
		if (r["probe"] == "lock" && r["event"] == "lock" && r["window"] == "interval" && r["pid"] == pid &&
		    r["lock_type"] == "mutex")
			lock_acq += r["acquisitions"].get<double>();
		if (r["probe"] == "keytime" && r["event"] == "exec")
			execs++;
	}
	CHECK(lock_acq >= 2 * 2000); // the two threads' own locks (glibc may take it a few times more)
	CHECK(api.value("procimage_lock_acquisitions_total{pid=\"" + P + "\",lock_type=\"mutex\"}") == lock_acq);
	CHECK(api.value("procimage_lock_hold_seconds_count{pid=\"" + P + "\",lock_type=\"mutex\"}") >= 2 * 2000);
	CHECK(api.value("sum(procimage_futex_wait_seconds_count{scope=\"target\"})") > 0);
	CHECK(api.value("procimage_exporter_records_total{probe=\"keytime\",event=\"exec\"}") == execs);

	// self-metrics
	CHECK(api.value("procimage_probe_active{probe=\"syscall\"}") == 1);
	CHECK(api.value("procimage_lost_records_total{probe=\"syscall\"}") >= 0); // present, even without losses
	CHECK(api.value("count(procimage_bpf_prog_runs_total)") >= 5);
	CHECK(api.value("sum(procimage_bpf_prog_runs_total)") > 20000); // sys_enter alone ran for every getppid
	CHECK(api.value("sum(procimage_bpf_prog_run_seconds_total)") > 0);

	// ---- the exposition passes promtool's lint; the shipped scrape config is valid
	auto direct = http_get(exporter_port, "/metrics");
	REQUIRE(direct.status == 200);
	t::write_file(d.file("metrics.txt"), direct.body);
	auto lint = t::sh(std::string(PROMTOOL) + " check metrics < " + d.file("metrics.txt") + " 2>&1");
	INFO("promtool check metrics: " << lint.out);
	CHECK(lint.status == 0);
	CHECK(lint.out.empty());
	auto cfg = t::run({PROMTOOL, "check", "config", t::source_dir() + "/deploy/prometheus/prometheus.yml"});
	INFO(cfg.out << cfg.err);
	CHECK(cfg.status == 0);

	// ---- every PromQL expression of the dashboards returns data
	const std::map<std::string, std::string> vars = {
		{"pid", P}, {"comm", "wl-prometheus"}, {"__rate_interval", "5m"}, {"__interval", "5m"}, {"__range", "5m"}};
	std::vector<std::string> files;
	for (const auto &e : fs::directory_iterator(t::source_dir() + "/deploy/grafana/dashboards"))
		if (e.path().extension() == ".json")
			files.push_back(e.path().filename());
	std::sort(files.begin(), files.end());
	CHECK(files == std::vector<std::string>{"exporter.json", "keytime.json", "lock.json", "resource.json", "schedule.json",
						"syscall.json"});
	size_t checked = 0;
	std::vector<std::string> failures;
	for (const auto &file : files) {
		json dash = json::parse(t::read_file(t::source_dir() + "/deploy/grafana/dashboards/" + file));
		CHECK(dash.value("uid", "").rfind("procimage-", 0) == 0);
		// template variables: label_values(selector, label) must offer the workload's values
		for (const auto &v : dash["templating"]["list"]) {
			if (v["type"] != "query")
				continue;
			std::string q = v["query"].is_object() ? v["query"]["query"].get<std::string>() : v["query"].get<std::string>();
			std::smatch m;
			std::regex re(R"(^label_values\((.*),\s*(\w+)\)$)");
			if (!std::regex_match(q, m, re)) {
				failures.push_back(file + ": variable " + v["name"].get<std::string>() + ": not label_values(): " + q);
				continue;
			}
			std::string sel = substitute(m[1], vars), label = m[2];
			json r = api.query(sel);
			bool found = false;
			if (r.value("status", "") == "success")
				for (const auto &s : r["data"]["result"])
					found |= s["metric"].value(label, "") == vars.at(v["name"].get<std::string>());
			if (!found)
				failures.push_back(file + ": variable " + v["name"].get<std::string>() + " does not offer " +
						   vars.at(v["name"].get<std::string>()) + ": " + sel + " -> " + r.dump());
			checked++;
		}
		std::vector<panel_query> qs;
		collect_targets(dash["panels"], file, qs);
		for (const auto &q : qs) {
			std::string e = substitute(q.expr, vars);
			if (e.find('$') != std::string::npos) {
				failures.push_back(q.where + ": unknown variable in " + q.expr);
				continue;
			}
			json r = api.query(e);
			bool finite = false;
			if (r.value("status", "") == "success")
				for (const auto &s : r["data"]["result"])
					finite |= std::isfinite(std::strtod(s["value"][1].get<std::string>().c_str(), nullptr));
			if (!finite)
				failures.push_back(q.where + ": " + e + " -> " + r.dump().substr(0, 300));
			checked++;
		}
	}
	for (const auto &f : failures)
		UNSCOPED_INFO(f);
	CHECK(failures.empty());
	CHECK(checked >= 100);

	// ---- the workload ends, procimage follows with its status and puts the BPF statistics back
	kill(pid, SIGUSR1);
	CHECK(host.wait_for(30) == 0);
	CHECK(bpf_stats_sysctl() == before);
	CHECK(http_get(exporter_port, "/metrics").status == 0);
}

TEST_CASE("prometheus: series of ended processes leave the exporter after expire_s")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	const int port = free_port();
	json pipeline = {{"version", 1},
			 {"interval_ms", 200},
			 {"probes", {{"keytime", {{"cpu", true}}}, {"resource", json::object()}}},
			 {"sinks", {{"prometheus", {{"listen", "127.0.0.1:" + std::to_string(port)}, {"expire_s", 2}}}}},
			 {"command", {t::build_dir() + "/wl-prometheus"}}};
	t::write_file(d.file("p.json"), pipeline.dump());
	child host({t::procimage_bin(), "--pipeline", d.file("p.json")}, d.file("procimage.log"),
		   {{"PROCIMAGE_WL_LOG", d.file("wl.log")}});
	auto truth = wait_for_key(d.file("wl.log"), "done", 60);
	INFO("procimage: " << t::read_file(d.file("procimage.log")));
	REQUIRE(truth.count("done"));
	const std::string P = std::to_string(truth["pid"]);
	const std::string killed = std::to_string(truth["child_killed"]);
	auto scrape = [&] { return http_get(port, "/metrics").body; };
	auto has = [](const std::string &text, const std::string &pid) {
		return text.find("pid=\"" + pid + "\"") != std::string::npos;
	};
	// the killed child's series appear (its on-CPU time, its resource figures) ...
	std::string text;
	REQUIRE(eventually(10, [&] { return has(scrape(), killed); }));
	// ... and go once expire_s has passed since it ended
	CHECK(eventually(10, [&] {
		text = scrape();
		return !has(text, killed);
	}));
	auto at = text.find("\nprocimage_exporter_expired_series_total ");
	REQUIRE(at != std::string::npos);
	CHECK(std::strtod(text.c_str() + at + 41, nullptr) > 0);
	// the workload's own stay, and so do the comm-labelled event counts
	CHECK(has(text, P));
	CHECK(text.find("procimage_process_exits_total{comm=\"wl-prometheus\",signal=\"SIGKILL\",exit_code=\"0\"} 1\n") !=
	      std::string::npos);
	kill(truth["pid"], SIGUSR1);
	CHECK(host.wait_for(30) == 0);
}
