// SPDX-License-Identifier: Apache-2.0
//
// procimage-ctl: activate, retarget, deactivate, inspect and finish a running procimage host.
#include "control.hpp"
#include "pipeline.hpp"
#include "system.hpp"

#include <boost/program_options.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <string>
#include <vector>

namespace po = boost::program_options;
using namespace procimage::core;
using nlohmann::json;

namespace {

const char *USAGE = R"(Usage: procimage-ctl -a [PROBES] [-p TID | -P TGID [--follow] | -p 0 -c CPU |
                       --cgroup PATH | --unit NAME | --container ID] [-t SEC] [-m]
  or:  procimage-ctl -d [PROBES]
  or:  procimage-ctl -f
  or:  procimage-ctl --status [--json]
  or:  procimage-ctl --check ...

Drives a running procimage host: one started with procimage -a (loaded, waiting), or any
host that does not trace -- CMD. It activates probes for a target, retargets them,
deactivates them, shows what the host is doing, or finishes it cleanly (flush, detach, exit).
With --check, any of these is checked (options, ranges, that the target exists) and printed
as JSON, and nothing is sent.

Targets (none = every thread): -p one thread, -P one process; --cgroup, --unit and --container
every process in a cgroup v2 subtree, those that join it later included (docs/targets.md).

PROBES (none = every probe the host loaded):
  -k [0|1]        keytime: key time points; 1 also on/off-CPU intervals (-k alone: 0).
  -l              lock: user-space locks.
  -r              resource: CPU, memory and I/O use.
  -s N            syscall (lower-case s): system calls, in sequence batches of N (1-50).
  -S              schedule (capital S): how long the target waits for a CPU once runnable.

Activating a probe replaces its target and starts its figures from zero. A target that does
not exist is refused before anything is sent.

Exit status: 0 done (with --check: the request is valid); 1 the host refused or is not
running (the host is left as it was); 2 bad command line, including a target that does not
exist.

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

// "-k" alone means keytime without on/off-CPU intervals: give it its 0, so "-a -k" works.
std::vector<std::string> with_keytime_value(int argc, char **argv)
{
	std::vector<std::string> args(argv, argv + argc);
	for (size_t i = 1; i < args.size(); i++) {
		if (args[i] != "-k" && args[i] != "--keytime")
			continue;
		bool has_value = i + 1 < args.size() && !args[i + 1].empty() && args[i + 1][0] != '-';
		if (!has_value)
			args.insert(args.begin() + static_cast<long>(i) + 1, "0");
	}
	return args;
}

// The reply has the shape the host gives: anything else is a failure named as such.
result<void> check_reply(const json &r, bool status)
{
	if (!r.is_object() || !r.contains("ok") || !r["ok"].is_boolean())
		return runtime_error("unexpected reply from the host (no \"ok\"): " + r.dump().substr(0, 200));
	if (!r["ok"].get<bool>())
		return {};
	if (status) {
		const json *st = r.contains("status") ? &r["status"] : nullptr;
		if (!st || !st->is_object())
			return runtime_error("unexpected reply from the host: no status object");
		for (const char *k : {"probes", "sinks"})
			if (st->contains(k) && (!(*st)[k].is_array() ||
						std::any_of((*st)[k].begin(), (*st)[k].end(), [](const json &e) { return !e.is_object(); })))
				return runtime_error(std::string("unexpected reply from the host: status.") + k +
						     " is not a list of objects");
		return {};
	}
	if (!r.contains("changed") || !r["changed"].is_array() ||
	    std::any_of(r["changed"].begin(), r["changed"].end(), [](const json &e) { return !e.is_string(); }))
		return runtime_error("unexpected reply from the host: no list of changes");
	return {};
}

int run_ctl(int argc, char **argv);

} // namespace

// Every exception ends here as one line and exit 1: none aborts the program.
int main(int argc, char **argv)
{
	try {
		return run_ctl(argc, argv);
	} catch (const std::exception &e) {
		std::fprintf(stderr, "procimage-ctl: error: %s\n", e.what());
	} catch (...) {
		std::fprintf(stderr, "procimage-ctl: error: unexpected failure\n");
	}
	return 1;
}

namespace {

int run_ctl(int argc_in, char **argv_in)
{
	auto args = with_keytime_value(argc_in, argv_in);
	std::vector<char *> argv_vec;
	for (auto &a : args)
		argv_vec.push_back(a.data());
	int argc = static_cast<int>(argv_vec.size());
	char **argv = argv_vec.data();
	po::options_description desc(USAGE);
	// clang-format off
	desc.add_options()
		("help,h", "show this help")
		("version", "print procimage-ctl's version and exit")
		("activate,a", "activate the probes for the target (replaces their target)")
		("deactivate,d", "deactivate the probes")
		("finish,f", "finish the host: flush the sinks, detach every probe, exit")
		("status", "what the host has loaded, what is active, for whom, records and losses")
		("json", "with --status: print JSON")
		("check", "check the command line and the target (it must exist), print the request as JSON, "
			  "and send nothing")
		("pid,p", po::value<int64_t>()->value_name("TID"), "target one thread (the kernel's pid); 0 with -c: a CPU's idle task")
		("tid", po::value<int64_t>()->value_name("TID"), "same as --pid")
		("tgid,P", po::value<int64_t>()->value_name("TGID"), "target a process (thread group)")
		("follow", "with -a -P: the processes the target forks from then on join it, and theirs")
		("cpuid,c", po::value<int32_t>()->value_name("CPU"), "with -p 0: the idle task of this CPU")
		("time,t", po::value<int64_t>()->value_name("SEC"), "activate, then deactivate after SEC seconds (0 = no limit)")
		("cgroup", po::value<std::string>(), "target every process in this cgroup v2 directory and below it "
		 "(absolute, or relative to the v2 mount), including those that join later")
		("unit", po::value<std::string>(), "target a systemd unit's cgroup (NAME, NAME.service, NAME.scope, ...)")
		("container", po::value<std::string>(), "target a container's cgroup by its id or a prefix of it "
		 "(docker, containerd / CRI, CRI-O, podman)")
		("myproc,m", "include procimage's own threads")
		("keytime,k", po::value<int>()->value_name("0|1"), "keytime: 0 (or nothing) without, 1 with on/off-CPU intervals")
		("lock,l", "the lock probe")
		("resource,r", "the resource probe")
		("syscall,s", po::value<int>()->value_name("N"), "the syscall probe (lower-case s), sequence batches of N (1-50)")
		("schedule,S", "the schedule probe (capital S)")
		("name,n", po::value<std::string>()->value_name("NAME")->default_value("default"), "control channel of the host (procimage --name)")
		("timeout", po::value<int>()->value_name("MS")->default_value(5000), "how long to wait for the host's answer, ms");
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
	if (vm.count("version")) {
		std::cout << "procimage-ctl " << PROCIMAGE_VERSION << "\n";
		return 0;
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
	if (auto r = check_control_name(name); !r)
		return usage_fail(r.err().msg);
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
			int kinds = static_cast<int>(vm.count("pid") + vm.count("tid") + vm.count("tgid") + vm.count("cgroup") +
						     vm.count("unit") + vm.count("container"));
			if (kinds > 1)
				return usage_fail("give only one target: -p/--pid/--tid, -P/--tgid, --cgroup, --unit or --container");
			for (const char *k : {"cgroup", "unit", "container"})
				if (vm.count(k))
					t[k] = vm[k].as<std::string>();
			for (const char *k : {"pid", "tid", "tgid"}) {
				if (!vm.count(k))
					continue;
				int64_t id = vm[k].as<int64_t>();
				if (id < 0 || id > UINT32_MAX)
					return usage_fail(std::string("--") + k + ": expected 0..4294967295, got " + std::to_string(id));
				t[std::string(k) == "tgid" ? "tgid" : "tid"] = static_cast<uint32_t>(id);
			}
			if (!kinds)
				t["all"] = true;
			if (vm.count("follow")) {
				if (!t.contains("tgid"))
					return usage_fail("--follow goes with -P TGID: the process whose future children join the target");
				t["follow"] = true;
			}
			if (vm.count("cpuid"))
				t["cpu"] = vm["cpuid"].as<int32_t>();
			if (vm.count("myproc"))
				t["include_self"] = true;
			auto ts = parse_target(t, "target");
			if (!ts)
				return usage_fail(ts.err().msg + " (from the target options)");
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
			for (const char *k : {"pid", "tid", "tgid", "cpuid", "time", "myproc", "follow", "cgroup", "unit", "container"})
				if (vm.count(k))
					return usage_fail(std::string("--") + k + " only goes with -a");
		}
	}

	if (vm.count("check")) {
		std::cout << req.dump() << "\n";
		return 0;
	}

	// The host applies the request only if it reads it within three quarters of the timeout;
	// the last quarter is room for its answer, so a request reported as failed stays undone.
	req["deadline_ns"] = monotonic_ns() + static_cast<uint64_t>(timeout) * 750000ULL;
	auto reply = control_call(name, req, timeout);
	if (reply)
		if (auto ok = check_reply(*reply, vm.count("status") > 0); !ok)
			reply = ok.err();
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

} // namespace
