// SPDX-License-Identifier: Apache-2.0
//
// procimage-ctl: activate, retarget, deactivate, inspect and finish a running procimage host.
#include "control.hpp"
#include "pipeline.hpp"
#include "system.hpp"

#include <boost/program_options.hpp>

#include <cstdio>
#include <ctime>
#include <iostream>
#include <string>

namespace po = boost::program_options;
using namespace procimage::core;
using nlohmann::json;

namespace {

const char *USAGE = R"(Usage:
  procimage-ctl -a [IMAGES] [-p TID | -P TGID | -p 0 -c CPU] [-t SEC] [-m]
  procimage-ctl -d [IMAGES]
  procimage-ctl -f
  procimage-ctl --status [--json]

Drives a procimage host started with "procimage -a" (or any host not tracing "-- CMD"):
activate probes ("images") for a target, retarget them, deactivate them, show what the host
is doing, or finish it cleanly (flush, detach, exit).

IMAGES (none = every probe the host loaded):
  -k 0|1   keytime, without (0) or with (1) on/off-CPU intervals
  -l       lock          -r   resource        -S   schedule
  -s N     syscall, with sequence batches of N calls (1-50)

Activating an image replaces its target and starts its figures from zero.
Exit status: 0 done; 1 the host refused or is not running (the host is left as it was);
2 bad command line.

Options)";

int usage_fail(const std::string &msg)
{
	std::fprintf(stderr, "procimage-ctl: %s (see procimage-ctl --help)\n", msg.c_str());
	return 2;
}

std::string seconds_text(double s)
{
	char buf[32];
	std::snprintf(buf, sizeof buf, "%.1f s", s);
	return buf;
}

void print_status(const json &st)
{
	std::printf("procimage host pid %ld, channel \"%s\"\n", st.value("host_pid", 0L),
		    st.value("channel", std::string("default")).c_str());
	std::printf("%-14s %-9s %-8s %-44s %12s %8s\n", "PROBE", "VERSION", "STATE", "TARGET", "RECORDS", "LOST");
	for (const auto &p : st.value("probes", json::array())) {
		std::string target = p.value("active", false) ? p.value("target_text", std::string("?")) : "-";
		if (p.contains("options") && !p["options"].empty())
			target += " " + p["options"].dump();
		if (p.contains("remaining_s"))
			target += " (" + seconds_text(p["remaining_s"].get<double>()) + " left)";
		std::printf("%-14s %-9s %-8s %-44s %12llu %8llu\n", p.value("name", std::string("?")).c_str(),
			    p.value("version", std::string("?")).c_str(), p.value("active", false) ? "active" : "inactive",
			    target.c_str(), static_cast<unsigned long long>(p.value("records_total", 0ULL)),
			    static_cast<unsigned long long>(p.value("lost_total", 0ULL)));
	}
	for (const auto &s : st.value("sinks", json::array()))
		std::printf("sink %-10s %llu records%s\n", s.value("name", std::string("?")).c_str(),
			    static_cast<unsigned long long>(s.value("records", 0ULL)),
			    s.value("failed", false) ? " (failed)" : "");
}

} // namespace

int main(int argc, char **argv)
{
	po::options_description desc(USAGE);
	// clang-format off
	desc.add_options()
		("help,h", "show this help")
		("activate,a", "activate the images for the target (replaces their target)")
		("deactivate,d", "deactivate the images")
		("finish,f", "finish the host: flush the sinks, detach every probe, exit")
		("status", "what the host has loaded, what is active, for whom, records and losses")
		("json", "with --status: print JSON")
		("pid,p", po::value<uint32_t>(), "target one thread (the kernel's pid); 0 with -c: a CPU's idle task")
		("tid", po::value<uint32_t>(), "same as --pid")
		("tgid,P", po::value<uint32_t>(), "target a process (thread group)")
		("cpuid,c", po::value<int32_t>(), "with -p 0: the idle task of this CPU")
		("time,t", po::value<int64_t>(), "activate, then deactivate after SEC seconds (0 = no limit)")
		("myproc,m", "include procimage's own threads")
		("keytime,k", po::value<int>(), "keytime: 0 without, 1 with on/off-CPU intervals")
		("lock,l", "the lock image")
		("resource,r", "the resource image")
		("syscall,s", po::value<int>(), "the syscall image, sequence batches of N (1-50)")
		("schedule,S", "the schedule image")
		("name,n", po::value<std::string>()->default_value("default"), "control channel of the host (procimage --name)")
		("timeout", po::value<int>()->default_value(5000), "how long to wait for the host's answer, ms");
	// clang-format on

	po::variables_map vm;
	try {
		auto parsed = po::command_line_parser(argc, argv).options(desc).run();
		auto extra = po::collect_unrecognized(parsed.options, po::include_positional);
		if (!extra.empty())
			throw std::runtime_error("unexpected argument '" + extra.front() +
						 "': a target is given with -p TID or -P TGID");
		po::store(parsed, vm);
		po::notify(vm);
	} catch (const std::exception &e) {
		return usage_fail(e.what());
	}
	if (vm.count("help") || argc == 1) {
		std::cout << desc << "\n";
		return argc == 1 ? 2 : 0;
	}

	int actions = static_cast<int>(vm.count("activate") + vm.count("deactivate") + vm.count("finish") +
				       vm.count("status"));
	if (actions != 1)
		return usage_fail("give exactly one of -a, -d, -f, --status");
	const std::string name = vm["name"].as<std::string>();
	int timeout = vm["timeout"].as<int>();
	if (timeout < 100 || timeout > 600000)
		return usage_fail("--timeout: expected 100..600000 ms");

	json req;
	if (vm.count("status")) {
		req = {{"cmd", "status"}};
	} else if (vm.count("finish")) {
		req = {{"cmd", "finish"}};
	} else {
		req = {{"cmd", vm.count("activate") ? "activate" : "deactivate"}};
		json images = json::array();
		json options = json::object();
		if (vm.count("keytime")) {
			int k = vm["keytime"].as<int>();
			if (k != 0 && k != 1)
				return usage_fail("-k: expected 0 (without on/off-CPU) or 1 (with), got " + std::to_string(k));
			images.push_back("keytime");
			options["keytime"] = {{"cpu", k == 1}};
		}
		if (vm.count("syscall")) {
			int n = vm["syscall"].as<int>();
			if (n < 1 || n > 50)
				return usage_fail("-s: expected a batch size of 1..50, got " + std::to_string(n));
			images.push_back("syscall");
			options["syscall"] = {{"batch", n}};
		}
		for (const char *img : {"lock", "resource", "schedule"})
			if (vm.count(img))
				images.push_back(img);
		req["images"] = images;
		if (vm.count("activate")) {
			req["options"] = options;
			json t = json::object();
			int kinds = static_cast<int>(vm.count("pid") + vm.count("tid") + vm.count("tgid"));
			if (kinds > 1)
				return usage_fail("give only one of -p/--pid/--tid and -P/--tgid");
			if (vm.count("pid") || vm.count("tid"))
				t["tid"] = vm.count("pid") ? vm["pid"].as<uint32_t>() : vm["tid"].as<uint32_t>();
			else if (vm.count("tgid"))
				t["tgid"] = vm["tgid"].as<uint32_t>();
			else
				t["all"] = true;
			if (vm.count("cpuid"))
				t["cpu"] = vm["cpuid"].as<int32_t>();
			if (vm.count("myproc"))
				t["include_self"] = true;
			auto ts = parse_target(t, "target");
			if (!ts)
				return usage_fail(ts.err().msg + " (from -p/-P/-c/-m)");
			if (auto r = check_target_exists(*ts); !r)
				return usage_fail(r.err().msg);
			req["target"] = t;
			if (vm.count("time")) {
				int64_t sec = vm["time"].as<int64_t>();
				if (sec < 0 || sec > 7 * 24 * 3600)
					return usage_fail("-t: expected 0..604800 seconds, got " + std::to_string(sec));
				req["time_s"] = sec;
			}
		} else {
			for (const char *k : {"pid", "tid", "tgid", "cpuid", "time", "myproc"})
				if (vm.count(k))
					return usage_fail(std::string("--") + k + " only goes with -a");
		}
	}

	auto reply = control_call(name, req, timeout);
	if (!reply) {
		std::fprintf(stderr, "procimage-ctl: %s\n", reply.err().msg.c_str());
		return 1;
	}
	if (!reply->value("ok", false)) {
		std::fprintf(stderr, "procimage-ctl: the host refused: %s\n",
			     reply->value("error", std::string("no reason given")).c_str());
		return 1;
	}
	if (vm.count("status")) {
		if (vm.count("json"))
			std::cout << (*reply)["status"].dump(2) << "\n";
		else
			print_status((*reply)["status"]);
		return 0;
	}
	for (const auto &c : reply->value("changed", json::array()))
		std::printf("%s\n", c.get<std::string>().c_str());
	return 0;
}
