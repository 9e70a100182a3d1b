// SPDX-License-Identifier: Apache-2.0
//
// prometheus sink: serves the records' figures as Prometheus metrics on /metrics (text format
// 0.0.4, or OpenMetrics 1.0.0 when the scraper asks for it). Records arrive on the host thread
// and update the metrics under a mutex held for one record; cpp-httplib's own threads answer
// the scrapes, so a scrape never runs on the host's event loop.
#include "bpf_stats.hpp"
#include "exporter.hpp"

#include <procimage/config.hpp>
#include <procimage/sdk.hpp>

#include <httplib.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <csignal>

#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

namespace procimage::sinks {

namespace {

struct config {
	std::string listen;
	std::string host; // without brackets
	int port = 9464;
	bool openmetrics = true;
	size_t max_series = 10000;
	uint64_t expire_s = 300;
	bool bpf_stats = false;

	explicit config(const std::string &text)
	{
		sdk::config_reader r(text);
		listen = r.get_string("listen", "127.0.0.1:9464");
		parse_listen();
		openmetrics = r.get_bool("openmetrics", true);
		max_series = static_cast<size_t>(r.get_int("max_series", 10000, 100, 10000000));
		expire_s = static_cast<uint64_t>(r.get_int("expire_s", 300, 0, 7 * 86400));
		bpf_stats = r.get_bool("bpf_stats", false);
		r.finish();
	}

	void parse_listen()
	{
		auto bad = [&](const std::string &why) {
			return sdk::config_error("listen: expected HOST:PORT (e.g. 127.0.0.1:9464, [::1]:9464), " + why);
		};
		auto colon = listen.rfind(':');
		if (colon == std::string::npos || colon == 0)
			throw bad("got \"" + listen + "\"");
		host = listen.substr(0, colon);
		std::string p = listen.substr(colon + 1);
		if (host.front() == '[') {
			if (host.size() < 3 || host.back() != ']')
				throw bad("got \"" + listen + "\"");
			host = host.substr(1, host.size() - 2);
		} else if (host.find(':') != std::string::npos) {
			throw bad("an IPv6 address goes in brackets");
		}
		if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos ||
		    std::stol(p) > 65535)
			throw bad("port must be 0..65535, got \"" + p + "\"");
		port = static_cast<int>(std::stol(p));
	}
};

uint64_t epoch_now_ns()
{
	timespec ts{};
	clock_gettime(CLOCK_REALTIME, &ts);
	return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

// Whether process pid still runs, and is the one that started start_boot_ns after boot:
// /proc/<pid>/stat's start time is in clock ticks since boot.
bool process_alive(uint32_t pid, uint64_t start_boot_ns)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
	std::string line;
	if (!in || !std::getline(in, line))
		return false;
	if (!start_boot_ns)
		return true;
	auto paren = line.rfind(')');
	if (paren == std::string::npos)
		return true;
	std::istringstream rest(line.substr(paren + 2));
	std::string field;
	// fields after the comm start at 3 (state); starttime is field 22
	for (int i = 3; i <= 22 && rest >> field; i++)
		if (i == 22) {
			long hz = sysconf(_SC_CLK_TCK);
			uint64_t tick_ns = 1000000000ULL / static_cast<uint64_t>(hz > 0 ? hz : 100);
			uint64_t ticks = std::strtoull(field.c_str(), nullptr, 10);
			uint64_t want = start_boot_ns / tick_ns;
			return (ticks > want ? ticks - want : want - ticks) <= 1;
		}
	return true;
}

} // namespace

class prometheus_sink final : public sdk::sink {
public:
	static void validate(const std::string &text) { config c(text); }

	prometheus_sink(const pi_host &host, const std::string &text)
		: sdk::sink(host), cfg_(text), exp_(make_options(cfg_, host))
	{
		for (const auto &p : exp_.problems())
			sdk::log(this->host(), PI_LOG_WARN, "prometheus: " + p + " (left out)");
		if (cfg_.bpf_stats)
			stats_.enable();
		svr_.new_task_queue = [] { return new httplib::ThreadPool(2); };
		svr_.set_keep_alive_timeout(2);
		// SO_REUSEADDR only: cpp-httplib's default also sets SO_REUSEPORT, which would let a
		// second exporter bind the same port silently and take half of the scrapes.
		svr_.set_socket_options([](int sock) {
			int yes = 1;
			setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
		});
		svr_.Get("/metrics", [this](const httplib::Request &req, httplib::Response &res) { metrics(req, res); });
		svr_.Get("/", [](const httplib::Request &, httplib::Response &res) {
			res.set_content("<html><head><title>procimage</title></head><body><h1>procimage exporter</h1>"
					"<p><a href=\"/metrics\">Metrics</a></p></body></html>\n",
					"text/html; charset=utf-8");
		});
		errno = 0;
		int port = cfg_.port;
		bool ok;
		if (port == 0) {
			port = svr_.bind_to_any_port(cfg_.host);
			ok = port > 0;
		} else {
			ok = svr_.bind_to_port(cfg_.host, port);
		}
		if (!ok)
			throw std::runtime_error("listen: cannot listen on " + cfg_.listen +
						 (errno ? std::string(": ") + std::strerror(errno) : std::string()));
		port_ = port;
		// The server's threads take no signals: the host reads SIGCHLD, SIGINT, … from a
		// signalfd, which a thread with those signals unblocked would starve. (The host blocks
		// them before loading plugins; blocking everything here does not rely on it. The pool
		// threads inherit the listening thread's mask.)
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		try {
			server_ = std::thread([this] {
				svr_.listen_after_bind();
				stopped_ = true;
			});
		} catch (...) {
			pthread_sigmask(SIG_SETMASK, &old, nullptr);
			throw;
		}
		pthread_sigmask(SIG_SETMASK, &old, nullptr);
		std::string addr = cfg_.host.find(':') != std::string::npos ? "[" + cfg_.host + "]" : cfg_.host;
		sdk::log(this->host(), PI_LOG_INFO,
			 "prometheus: serving metrics on http://" + addr + ":" + std::to_string(port_) + "/metrics" +
				 (cfg_.bpf_stats ? " (with BPF program statistics)" : ""));
		if (cfg_.host != "127.0.0.1" && cfg_.host != "::1" && cfg_.host != "localhost")
			sdk::log(this->host(), PI_LOG_WARN,
				 "prometheus: listening on " + cfg_.listen +
					 ", not loopback: anyone who reaches it sees process names and ids");
	}

	~prometheus_sink() override
	{
		// stop() acts only on a server that runs already: repeat until the thread is out
		while (server_.joinable() && !stopped_) {
			svr_.stop();
			std::this_thread::sleep_for(std::chrono::milliseconds(2));
		}
		if (server_.joinable())
			server_.join();
		stats_.disable();
	}

	void write(const pi_record &r) override { exp_.record(r); }

	void flush() override
	{
		exp_.maintain(epoch_now_ns());
		uint64_t dropped = exp_.dropped_series();
		if (dropped > warned_dropped_) {
			if (!warned_dropped_)
				sdk::log(host(), PI_LOG_WARN,
					 "prometheus: max_series (" + std::to_string(cfg_.max_series) +
						 ") reached: new series are refused and counted in "
						 "procimage_exporter_dropped_series_total");
			warned_dropped_ = dropped;
		}
	}

private:
	static prom::options make_options(const config &c, const pi_host &host)
	{
		prom::options o;
		if (host.size >= offsetof(pi_host, record_schema) + sizeof(host.record_schema) && host.record_schema)
			o.schema = host.record_schema;
		o.max_series = c.max_series;
		o.expire_ns = c.expire_s * 1000000000ULL;
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		o.ncpus = n > 0 ? static_cast<unsigned>(n) : 1;
		o.alive = process_alive;
		o.maintain_period_ns = 250000000ULL; // flush() comes after every batch: expire 4 times a second at most
		return o;
	}

	// On one of the server's threads.
	void metrics(const httplib::Request &req, httplib::Response &res)
	{
		auto t0 = std::chrono::steady_clock::now();
		bool om = cfg_.openmetrics && prom::wants_openmetrics(req.get_header_value("Accept"));
		std::string body;
		if (stats_.enabled()) {
			auto progs = prom::bpf_stats::read();
			body = exp_.scrape(om, &progs);
		} else {
			body = exp_.scrape(om);
		}
		res.set_content(body, om ? prom::openmetrics_type : prom::text_type);
		exp_.note_scrape(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
	}

	config cfg_;
	prom::exporter exp_;
	prom::bpf_stats stats_;
	httplib::Server svr_;
	std::thread server_;
	std::atomic<bool> stopped_{false};
	int port_ = 0;
	uint64_t warned_dropped_ = 0;
};

} // namespace procimage::sinks

PROCIMAGE_DEFINE_SINK(procimage::sinks::prometheus_sink, "prometheus", PROCIMAGE_VERSION,
		      "Prometheus exporter: serves the records' figures on /metrics (text format or OpenMetrics)");
