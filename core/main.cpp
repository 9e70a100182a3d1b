// SPDX-License-Identifier: Apache-2.0
//
// procimage: a portrait of a process's whole life, from eBPF probes.
#include "features.hpp"
#include "host.hpp"
#include "pipeline.hpp"
#include "plugin_loader.hpp"
#include "schema.hpp"
#include "report/model.hpp"
#include "system.hpp"

#include <procimage/kernel_features.hpp>

#include <boost/program_options.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <iostream>
#include <string>
#include <vector>
#include <unistd.h>

namespace po = boost::program_options;
using namespace procimage::core;

namespace {

const char *USAGE = R"(Usage: procimage [PROBES] [-p TID | -P TGID [--follow] | --cgroup PATH | --unit NAME |
                   --container ID] [-o OUTPUT]... [--duration SEC] [OPTIONS]
  or:  procimage [PROBES] [-o OUTPUT]... [OPTIONS] -- CMD [ARGS...]
  or:  procimage --pipeline FILE [OPTIONS] [-- CMD [ARGS...]]
  or:  procimage report [--format text|json|chrome-trace|html] [-o FILE] RUN.jsonl

A portrait of a process's whole life, drawn from eBPF: its key time points (fork, exec, exit,
on/off-CPU), the user-space locks it waited for, its CPU, memory and I/O use, its scheduling
delay and its system calls, each beside the same figure for the whole system. Needs root (or
CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH).

What is traced:
  -- CMD          procimage starts CMD, traces it and every process it forks, from before
                  its exec to its exit, then exits with CMD's exit status. CMD's standard
                  output stays CMD's: the readable records go to standard error.
  -p TID          one thread (the kernel's pid).
  -P TGID         one process; with --follow, also the processes it forks from then on.
  --cgroup PATH   every process in a cgroup v2 subtree (absolute, or relative to the v2
                  mount), including those that join it later; --unit NAME a systemd unit's
                  cgroup, --container ID a container's (docs/targets.md).
  -a alone        without -p, -P or CMD: load and verify every probe, attach nothing, and
                  wait for procimage-ctl -a [-p TID | -P TGID] [-t SEC] to activate it.
With none of these, every thread of the system is traced. Without CMD, procimage runs until
SIGINT or SIGTERM, procimage-ctl -f, or the end of --duration SEC.

Probes (combine them; with -- CMD and no probe, -k):
  -k, --keytime   key time points: fork, vfork, thread creation, exec, exit; with --cpu
                  also on/off-CPU intervals and why the thread left the CPU.
  -l, --lock      user-space locks: pthread mutexes, rwlocks and spinlocks.
  -r, --resource  CPU, memory and I/O use, per thread and process, each interval.
  -s, --syscall   lower-case s: what the target asks the kernel. Each system call's name,
                  latency and result, in sequences; per-syscall counts and errors.
  -S, --schedule  capital S: how long the target, once runnable, waits for a CPU (run-queue
                  delay: average, maximum, histogram), beside the whole system's.
  -a, --all       the five above, those installed and supported by this kernel.
  --profile       on-CPU stack samples at 99 Hz (not part of -a).

Outputs (-o OUTPUT, repeatable; default: stdout):
  stdout          readable lines: on standard output, or on standard error with -- CMD.
  stdout:-        readable lines on standard output, even with -- CMD.
  stdout:PATH     readable lines into the file PATH.
  jsonl[:PATH]    one JSON object per record and line (standard output without PATH).
  csv:DIR         one CSV file per record type, in the folder DIR.
  prometheus      a /metrics exporter for Prometheus.
  report[:PATH]   the portrait; PATH's suffix picks .txt, .json, .trace.json or .html.
  folded[:PATH]   collapsed stacks from --profile, for flame graphs.
  NAME            any other sink plugin (see --list-plugins).

Exit status: with -- CMD, CMD's status, unless the output is incomplete (a sink failed: then
1, and the last line gives CMD's status). Otherwise 0 on success (the end of --duration
included), 1 on a run-time failure, 2 on a bad command line or pipeline (nothing was
loaded), 3 on missing privileges.

Options)";


const std::vector<std::pair<std::string, std::string>> SHORTHAND_PROBES = {
	{"keytime", "k"}, {"lock", "l"}, {"resource", "r"}, {"syscall", "s"}, {"schedule", "S"}};

std::string program_dir_hint(const std::vector<std::string> &dirs)
{
	std::string s;
	for (const auto &d : dirs)
		s += (s.empty() ? "" : ", ") + d;
	return s;
}

result<component> sink_from_flag(const std::string &spec)
{
	// FORMAT or FORMAT:ARG — stdout[:-|:PATH] | jsonl[:PATH] | csv:DIR | NAME (any sink plugin)
	auto colon = spec.find(':');
	std::string name = spec.substr(0, colon);
	std::string arg = colon == std::string::npos ? "" : spec.substr(colon + 1);
	component c;
	c.plugin = name;
	c.id = name;
	c.json_path = "sinks." + name;
	if (name == "jsonl" || name == "report" || name == "folded") {
		if (!arg.empty())
			c.config["path"] = arg;
	} else if (name == "stdout") {
		// "-": standard output even with -- CMD; anything else: a file
		if (arg == "-")
			c.config["stream"] = "stdout";
		else if (!arg.empty())
			c.config["path"] = arg;
		else if (colon != std::string::npos)
			return usage_error("--output stdout:: give a file after the colon, or - for standard output");
	} else if (name == "csv") {
		if (arg.empty())
			return usage_error("--output csv:DIR: give the folder for the CSV files");
		c.config["dir"] = arg;
	} else if (!arg.empty()) {
		return usage_error("--output " + spec + ": only stdout:PATH (or stdout:-), jsonl:PATH, report:PATH, "
				   "folded:PATH and csv:DIR take an argument");
	}
	return c;
}

// Run as a command, not only checked or listed: then privileges come before anything reads
// the file system (plugin directories included), so a missing privilege is always exit 3.
bool needs_privileges(const po::variables_map &vm)
{
	for (const char *k : {"help", "version", "check", "print-pipeline", "print-schema", "list-plugins", "features"})
		if (vm.count(k))
			return false;
	return true;
}

// The joined record schema of the host and of every probe plugin found (the first of a name in
// the search order, as the pipeline would load it).
int print_schema(std::vector<std::string> dirs)
{
	for (auto &d : default_plugin_dirs())
		dirs.push_back(d);
	std::vector<schema::declaration> decls;
	auto found = list_plugins(dirs); // keeps the plugins (and their schema texts) loaded
	for (const auto &l : found)
		if (l.plugin && l.plugin->desc->kind == PI_KIND_PROBE)
			decls.push_back({l.plugin->name(), l.plugin->record_schema()});
	auto joined = schema::join(decls);
	if (!joined) {
		std::fprintf(stderr, "procimage: %s\n", joined.err().msg.c_str());
		return joined.err().code;
	}
	std::printf("%s\n", joined->dump(2).c_str());
	return 0;
}

// A number option read as a signed 64-bit value, so "-1" is refused as -1 (not as 4294967295).
result<int64_t> ranged(const po::variables_map &vm, const char *key, int64_t lo, int64_t hi, const char *unit)
{
	int64_t v = vm[key].as<int64_t>();
	if (v < lo || v > hi)
		return usage_error("--" + std::string(key) + ": expected " + std::to_string(lo) + ".." +
				   std::to_string(hi) + unit + ", got " + std::to_string(v));
	return v;
}

// --duration SEC: a positive number of seconds, decimals allowed.
result<double> parse_duration(const std::string &text)
{
	const std::string want = "--duration: expected a number of seconds more than 0 and at most 604800 "
				 "(decimals allowed, e.g. 2.5), got '" + text + "'";
	if (text.empty() || text.find_first_not_of("0123456789.") != std::string::npos)
		return usage_error(want);
	char *end = nullptr;
	errno = 0;
	double v = std::strtod(text.c_str(), &end);
	if (errno != 0 || end != text.c_str() + text.size() || !(v > 0) || v > MAX_DURATION_S)
		return usage_error(want);
	return v;
}

int run_procimage(int argc, char **argv);

} // namespace

// Every exception ends here as one line and a documented status: none aborts the program.
int main(int argc, char **argv)
{
	try {
		// "procimage report RUN.jsonl": render a recorded run (report/)
		if (argc > 1 && std::string(argv[1]) == "report")
			return procimage::report::report_command(argc - 1, argv + 1);
		return run_procimage(argc, argv);
	} catch (const std::exception &e) {
		std::fprintf(stderr, "procimage: error: %s\n", e.what());
	} catch (...) {
		std::fprintf(stderr, "procimage: error: unexpected failure\n");
	}
	return EXIT_RUNTIME;
}

namespace {

int run_procimage(int argc, char **argv)
{
	auto logger = spdlog::stderr_color_mt("procimage");
	spdlog::set_default_logger(logger);
	spdlog::set_pattern("procimage: %^%l%$: [%n] %v");
	spdlog::set_level(spdlog::level::info);

	// Everything after "--" is the command to trace.
	std::vector<std::string> command;
	int our_argc = argc;
	for (int i = 1; i < argc; i++) {
		if (std::string(argv[i]) == "--") {
			our_argc = i;
			for (int j = i + 1; j < argc; j++)
				command.emplace_back(argv[j]);
			break;
		}
	}

	po::options_description desc(USAGE);
	// clang-format off
	desc.add_options()
		("help,h", "show this help")
		("version", "print procimage's version and exit")
		("pipeline", po::value<std::string>()->value_name("FILE"), "run the pipeline in FILE (JSON; see docs/pipeline.md)")
		("all,a", "keytime, lock, resource, syscall and schedule, those installed")
		("keytime,k", "the keytime probe")
		("lock,l", "the lock probe")
		("resource,r", "the resource probe")
		(",s", "the syscall probe (lower-case s): each system call's name, latency and result; also --syscall, "
		 "which takes an optional filter (see Filters)")
		("schedule,S", "the schedule probe (capital S): how long the runnable target waits for a CPU")
		("profile", "the profile probe: on-CPU stack samples (--set profile.freq=99)")
		("pid,p", po::value<int64_t>()->value_name("TID"), "target one thread, by the kernel's pid (TID); 0 with -c: a CPU's idle task")
		("tid", po::value<int64_t>()->value_name("TID"), "same as --pid")
		("tgid,P", po::value<int64_t>()->value_name("TGID"), "target a process (thread group) by its TGID")
		("follow", "with -P: the processes the target forks from now on join it, and theirs (-- CMD always does this)")
		("cpuid,c", po::value<int32_t>()->value_name("CPU"), "with -p 0: the idle task of this CPU")
		("cgroup", po::value<std::string>(), "target every process in this cgroup v2 directory and below it "
		 "(absolute, or relative to the v2 mount), including those that join later")
		("unit", po::value<std::string>(), "target a systemd unit's cgroup (NAME, NAME.service, NAME.scope, ...)")
		("container", po::value<std::string>(), "target a container's cgroup by its id or a prefix of it "
		 "(docker, containerd / CRI, CRI-O, podman)")
		("myproc,m", "do not exclude procimage's own threads")
		("cpu", "keytime: also on-CPU / off-CPU intervals and why the thread went off CPU")
		("stacks", "keytime: kernel stack at each off-CPU point (needs --cpu)")
		("batch", po::value<int>()->value_name("N"), "syscall: sequence batches of N calls, 1-50 (procimage-ctl -s N sets it per activation)")
		("set", po::value<std::vector<std::string>>()->value_name("PROBE.KEY=VALUE"),
		 "PROBE.KEY=VALUE, repeatable: a probe's configuration key (VALUE is JSON, or a plain string), "
		 "e.g. --set lock.mode=contention --set schedule.top=50; see each probe's README")
		("output,o", po::value<std::vector<std::string>>()->value_name("OUTPUT"),
		 "where the records go, repeatable: stdout, stdout:-, stdout:PATH, jsonl[:PATH], csv:DIR, prometheus, "
		 "report[:PATH], folded[:PATH], or any sink plugin name (default stdout; see Outputs above)")
		("no-portrait", "with -- CMD on a terminal: no short text portrait on standard error at the end")
		("duration", po::value<std::string>()->value_name("SEC"), "stop by itself after SEC seconds (decimals allowed), flush every output "
		 "and exit 0; not with -- CMD, whose run ends when CMD does")
		("interval", po::value<int64_t>()->value_name("MS"), "periodic reporting interval in ms (default 1000)")
		("start", po::value<std::string>()->value_name("WHEN"), "active|inactive: collect at once, or load and verify the probes and wait for "
		 "procimage-ctl -a (default: active when a target is given, inactive otherwise; -a alone waits)")
		("name,n", po::value<std::string>()->value_name("NAME")->default_value("default"), "name of the control channel (several hosts)")
		("plugin-dir", po::value<std::vector<std::string>>()->value_name("DIR"), "also look for plugins here (repeatable, searched first)")
		("list-plugins", "list the probe and sink plugins found, with their versions")
		("print-pipeline", "print the pipeline the command line builds, as JSON, and exit")
		("print-schema", "print the record schema (JSON Schema 2020-12) of the host and of every probe plugin "
		 "found, and exit; docs/events.md")
		("features", "what this kernel offers the probes: each feature, and each probe available, with a fallback, "
		 "or unavailable (with what is missing and the first kernel that has it)")
		("check", "check the pipeline and the plugins' configurations, load nothing, and exit")
		("verbose,v", po::value<int>()->implicit_value(1)->zero_tokens(), "debug logging, with libbpf's warnings and information messages")
		("quiet,q", "warnings and errors only");
	po::options_description filter_opts("Filters (every probe they apply to; docs/filters.md)");
	filter_opts.add_options()
		("comm", po::value<std::vector<std::string>>()->value_name("NAME"), "only threads named NAME (repeatable, up to 8): exact, or a glob (nginx*, *worker, ?sh)")
		("failed", "stream only failures: failed execs, non-zero exits, syscalls that returned an error, failed lock attempts")
		("min-duration", po::value<std::string>()->value_name("DUR"), "stream only off-CPU intervals, lock waits and syscalls lasting DUR or more (500us, 2ms, 1.5s); aggregates keep all")
		("syscall", po::value<std::vector<std::string>>()->value_name("NAME[,NAME...]")->implicit_value({}, ""),
		 "syscall probe: trace only these system calls (repeatable); records and counts hold no other");
	// clang-format on

	desc.add(filter_opts);

	// "--syscall NAME[,NAME...]": the probe flag with an optional list. Boost reads an optional
	// value only when it is attached ("--syscall=read"), so a word after --syscall that is no
	// option is attached to it here.
	std::vector<std::string> args;
	for (int i = 1; i < our_argc; i++) {
		std::string a = argv[i];
		if (a == "--syscall" && i + 1 < our_argc && argv[i + 1][0] != '-' && argv[i + 1][0] != '\0')
			a += "=" + std::string(argv[++i]);
		args.push_back(std::move(a));
	}

	po::variables_map vm;
	try {
		auto parsed = po::command_line_parser(args).options(desc).run();
		// words that are no option: most likely a command without "--" before it
		auto extra = po::collect_unrecognized(parsed.options, po::include_positional);
		if (!extra.empty()) {
			const std::string &w = extra.front();
			if (w.find_first_not_of("0123456789") == std::string::npos)
				throw std::runtime_error("unexpected argument '" + w +
							 "': the probe flags take no value (a target is -p TID or -P TGID, "
							 "keytime's on/off-CPU intervals are --cpu, a syscall batch is --batch N)");
			throw std::runtime_error("unexpected argument '" + w +
						 "': to trace a command, put it after --, as in procimage -k -- " + w);
		}
		po::store(parsed, vm);
		po::notify(vm);
	} catch (const std::exception &e) {
		std::fprintf(stderr, "procimage: %s (see procimage --help)\n", e.what());
		return EXIT_USAGE;
	}
	if (vm.count("version")) {
		std::cout << "procimage " << PROCIMAGE_VERSION << "\n";
		return 0;
	}
	if (vm.count("help")) {
		std::cout << desc
			  << "\nExamples:\n"
			     "  procimage -k -- make -j2            the life of a build and all its processes\n"
			     "  procimage -s -P 1234 --duration 10  ten seconds of a running process's system calls\n"
			     "  procimage -a --cpu -o jsonl:run.jsonl -- ./app\n"
			     "                                      every probe on ./app, into run.jsonl; then\n"
			     "  procimage report run.jsonl          its portrait\n"
			     "\nDocumentation (installed under share/doc/procimage): README.md, docs/pipeline.md,\n"
			     "docs/filters.md, docs/controller.md, docs/events.md, docs/report.md,\n"
			     "docs/plugin-abi.md, and each probe's plugins/<probe>/README.md.\n";
		return 0;
	}
	if (needs_privileges(vm))
		if (auto r = check_privileges(); !r) {
			std::fprintf(stderr, "procimage: %s\n", r.err().msg.c_str());
			return r.err().code;
		}
	if (vm.count("verbose"))
		spdlog::set_level(spdlog::level::debug);
	if (vm.count("quiet"))
		spdlog::set_level(spdlog::level::warn);

	host_options opts;
	if (vm.count("plugin-dir"))
		opts.plugin_dirs = vm["plugin-dir"].as<std::vector<std::string>>();
	for (const auto &d : opts.plugin_dirs)
		if (auto r = check_plugin_dir(d); !r) {
			std::fprintf(stderr, "procimage: --plugin-dir %s\n", r.err().msg.c_str());
			return EXIT_USAGE;
		}
	opts.check_only = vm.count("check") > 0;

	if (vm.count("list-plugins")) {
		auto dirs = opts.plugin_dirs;
		for (auto &d : default_plugin_dirs())
			dirs.push_back(d);
		auto list = list_plugins(dirs);
		std::printf("%-6s %-12s %-9s %-5s %-50s %s\n", "KIND", "NAME", "VERSION", "ABI", "PATH", "DESCRIPTION");
		for (const auto &l : list) {
			if (l.plugin) {
				const auto *d = l.plugin->desc;
				std::printf("%-6s %-12s %-9s %u.%-3u %-50s %s\n", kind_name(d->kind), d->name, d->version,
					    d->api_major, d->api_minor, l.path.c_str(), d->description ? d->description : "");
			} else {
				std::printf("%-6s %-12s %-9s %-5s %-50s unusable: %s\n", "?", "?", "?", "?", l.path.c_str(),
					    l.problem.c_str());
			}
		}
		if (list.empty())
			std::printf("(no plugins in %s)\n", program_dir_hint(dirs).c_str());
		return 0;
	}

	if (vm.count("print-schema"))
		return print_schema(opts.plugin_dirs);

	if (vm.count("features")) {
		std::vector<std::string> probes;
		for (const auto &[n, _] : SHORTHAND_PROBES)
			probes.push_back(n);
		probes.push_back("profile");
		return print_features(probes);
	}

	// --syscall with names: the syscall probe and its filter; alone, the probe (as -s)
	std::vector<std::string> syscall_lists;
	if (vm.count("syscall"))
		for (const auto &l : vm["syscall"].as<std::vector<std::string>>())
			if (!l.empty())
				syscall_lists.push_back(l);
	bool shorthand = vm.count("-s") > 0;
	for (const char *k : {"all", "keytime", "lock", "resource", "syscall", "schedule", "profile", "pid", "tid", "tgid",
			      "cpuid", "myproc", "cgroup", "unit", "container", "cpu", "stacks", "output", "interval", "start",
			      "batch", "set", "follow", "duration"})
		shorthand |= vm.count(k) > 0;

	pipeline p;
	// -a's plugins, found to check what the kernel offers them: held open until the host loads
	// them again (a second dlopen of a loaded library is a reference count, not a load)
	std::vector<plugin_ptr> found_for_all;
	if (vm.count("pipeline")) {
		for (const char *k : {"all", "keytime", "lock", "resource", "-s", "syscall", "schedule", "profile", "cpu", "stacks", "output", "batch", "set"})
			if (vm.count(k) && !(std::string(k) == "syscall" && !syscall_lists.empty())) {
				std::fprintf(stderr, "procimage: %s%s cannot be combined with --pipeline (the pipeline file "
						     "names its probes and sinks)\n", k[0] == '-' ? "" : "--", k);
				return EXIT_USAGE;
			}
		auto r = load_pipeline_file(vm["pipeline"].as<std::string>());
		if (!r) {
			std::fprintf(stderr, "procimage: %s\n", r.err().msg.c_str());
			return r.err().code;
		}
		p = std::move(*r);
	} else {
		if (!shorthand && command.empty()) {
			std::fprintf(stderr, "procimage: nothing to do: give --pipeline FILE, probe flags "
					     "(-a -k -l -r -s -S --profile) or -- CMD (see procimage --help)\n");
			return EXIT_USAGE;
		}
		std::vector<std::string> names;
		if (vm.count("all")) {
			auto dirs = opts.plugin_dirs;
			for (auto &d : default_plugin_dirs())
				dirs.push_back(d);
			std::vector<std::string> missing;
			for (const auto &[n, _] : SHORTHAND_PROBES) {
				auto found = find_plugin(PI_KIND_PROBE, n, dirs);
				if (!found) {
					missing.push_back(n);
					continue;
				}
				found_for_all.push_back(*found);
				if (auto why = procimage::sdk::missing_for(n); !why.empty())
					spdlog::warn("-a: the {} probe is left out: it {}", n, why);
				else
					names.push_back(n);
			}
			for (const auto &m : missing)
				spdlog::warn("-a: the {} probe is not in this installation", m);
			if (names.empty()) {
				spdlog::error("-a: no probe plugins found in {}", program_dir_hint(dirs));
				return EXIT_USAGE;
			}
		} else {
			for (const auto &[n, _] : SHORTHAND_PROBES)
				if (vm.count(n) || (n == "syscall" && vm.count("-s")))
					names.push_back(n);
			if (vm.count("profile"))
				names.push_back("profile");
			if (names.empty())
				names.push_back("keytime"); // "procimage -- CMD" alone: the life of CMD
		}
		if (vm.count("all") && vm.count("profile"))
			names.push_back("profile");
		for (const auto &n : names) {
			component c;
			c.id = c.plugin = n;
			c.json_path = "probes." + n;
			if (n == "keytime") {
				if (vm.count("cpu"))
					c.config["cpu"] = true;
				if (vm.count("stacks"))
					c.config["stacks"] = true;
			}
			p.probes.push_back(c);
		}
		auto has_probe = [&](const std::string &n) { return std::find(names.begin(), names.end(), n) != names.end(); };
		if (vm.count("batch")) {
			if (!has_probe("syscall")) {
				std::fprintf(stderr, "procimage: --batch is a syscall option: add -s\n");
				return EXIT_USAGE;
			}
			for (auto &c : p.probes)
				if (c.id == "syscall")
					c.config["batch"] = vm["batch"].as<int>();
		}
		if (vm.count("set")) {
			for (const auto &kv : vm["set"].as<std::vector<std::string>>()) {
				auto f = parse_set_flag(kv);
				if (!f) {
					std::fprintf(stderr, "procimage: %s\n", f.err().msg.c_str());
					return EXIT_USAGE;
				}
				auto it = std::find_if(p.probes.begin(), p.probes.end(), [&](const component &c) { return c.id == f->probe; });
				if (it == p.probes.end()) {
					std::fprintf(stderr, "procimage: --set %s: no probe %s on the command line\n", kv.c_str(), f->probe.c_str());
					return EXIT_USAGE;
				}
				it->config[f->key] = f->value;
			}
		}
		if ((vm.count("cpu") || vm.count("stacks")) &&
		    std::find(names.begin(), names.end(), "keytime") == names.end()) {
			std::fprintf(stderr, "procimage: --cpu and --stacks are keytime options: add -k\n");
			return EXIT_USAGE;
		}
		if (vm.count("output")) {
			std::set<std::string> ids;
			for (const auto &o : vm["output"].as<std::vector<std::string>>()) {
				auto c = sink_from_flag(o);
				if (!c) {
					std::fprintf(stderr, "procimage: %s\n", c.err().msg.c_str());
					return EXIT_USAGE;
				}
				std::string id = c->id;
				for (int n = 2; ids.count(c->id); n++)
					c->id = id + "/" + std::to_string(n);
				ids.insert(c->id);
				p.sinks.push_back(*c);
			}
		} else {
			component c;
			c.id = c.plugin = "stdout";
			c.json_path = "sinks.stdout";
			p.sinks.push_back(c);
		}
		// with -- CMD on a terminal: a short text portrait on stderr at the end (sinks/report)
		if (!command.empty() && isatty(STDERR_FILENO) && !vm.count("no-portrait") &&
		    std::none_of(p.sinks.begin(), p.sinks.end(), [](auto &s) { return s.plugin == "report"; })) {
			component c;
			c.id = c.plugin = "report";
			c.json_path = "sinks.report";
			c.config = {{"path", "-"}, {"brief", true}};
			p.sinks.push_back(c);
		}
		// "-k" and friends collect for every thread at once (no target = all threads); "-a"
		// alone pre-attaches: load everything and wait for procimage-ctl.
		if (!vm.count("all"))
			p.target_given = true;
		wire w;
		for (auto &c : p.probes)
			w.probes.push_back(c.id);
		for (auto &c : p.sinks)
			w.sinks.push_back(c.id);
		p.wires.push_back(w);
	}

	// Target flags apply on top of either form.
	nlohmann::json t;
	int kinds = 0;
	for (const char *k : {"pid", "tid", "tgid", "cgroup", "unit", "container"})
		kinds += vm.count(k) ? 1 : 0;
	if (kinds > 1) {
		std::fprintf(stderr, "procimage: give only one target: -p/--pid/--tid, -P/--tgid, --cgroup, --unit or --container\n");
		return EXIT_USAGE;
	}
	if (kinds && (!command.empty() || !p.command.empty())) {
		std::fprintf(stderr, "procimage: a target option and \"-- CMD\" both name a target: give one\n");
		return EXIT_USAGE;
	}
	for (const char *k : {"cgroup", "unit", "container"})
		if (vm.count(k))
			t[k] = vm[k].as<std::string>();
	for (const char *k : {"pid", "tid", "tgid"}) {
		if (!vm.count(k))
			continue;
		auto id = ranged(vm, k, 0, UINT32_MAX, "");
		if (!id) {
			std::fprintf(stderr, "procimage: %s\n", id.err().msg.c_str());
			return EXIT_USAGE;
		}
		t[std::string(k) == "tgid" ? "tgid" : "tid"] = static_cast<uint32_t>(*id);
	}
	if (vm.count("follow")) {
		if (!vm.count("tgid")) {
			std::fprintf(stderr, "procimage: --follow goes with -P TGID: the process whose future children join "
					     "the target (-- CMD always follows its command's children)\n");
			return EXIT_USAGE;
		}
		t["follow"] = true;
	}
	if (vm.count("cpuid"))
		t["cpu"] = vm["cpuid"].as<int32_t>();
	if (vm.count("myproc"))
		t["include_self"] = true;
	if (!t.empty()) {
		if (!kinds)
			t["all"] = true;
		auto ts = parse_target(t, "target");
		if (!ts) {
			std::fprintf(stderr, "procimage: %s (from the target options)\n", ts.err().msg.c_str());
			return EXIT_USAGE;
		}
		// a cgroup named wrongly is one line and exit 2 here, before anything is loaded
		if (ts->kind == target_spec::kind_t::cgroup && !vm.count("print-pipeline"))
			if (auto r = check_target_exists(*ts); !r) {
				std::fprintf(stderr, "procimage: %s\n", r.err().msg.c_str());
				return r.err().code;
			}
		p.target = *ts;
		p.target_given = true;
	}
	if (vm.count("interval")) {
		auto ms = ranged(vm, "interval", 10, 3600000, " ms");
		if (!ms) {
			std::fprintf(stderr, "procimage: %s\n", ms.err().msg.c_str());
			return EXIT_USAGE;
		}
		p.interval_ms = static_cast<uint32_t>(*ms);
	}
	if (vm.count("start")) {
		std::string s = vm["start"].as<std::string>();
		if (s != "active" && s != "inactive") {
			std::fprintf(stderr, "procimage: --start: expected active or inactive, got %s\n", s.c_str());
			return EXIT_USAGE;
		}
		p.start = s == "active";
	}
	opts.control_name = vm["name"].as<std::string>();
	if (auto r = check_control_name(opts.control_name); !r) {
		std::fprintf(stderr, "procimage: %s\n", r.err().msg.c_str());
		return EXIT_USAGE;
	}
	if (!command.empty())
		p.command = command;
	if (vm.count("duration")) {
		auto d = parse_duration(vm["duration"].as<std::string>());
		if (!d) {
			std::fprintf(stderr, "procimage: %s\n", d.err().msg.c_str());
			return EXIT_USAGE;
		}
		p.duration_s = *d;
	}
	if (p.duration_s > 0 && !p.command.empty()) {
		std::fprintf(stderr, "procimage: --duration cannot go with a command: the run ends when the command "
				     "does (to bound the command, run it under timeout: -- timeout SEC CMD)\n");
		return EXIT_USAGE;
	}
	route_readable_output(p);

	if (!p.command.empty() && p.start && !*p.start) {
		std::fprintf(stderr, "procimage: --start inactive cannot go with a command: its host traces it from the "
				     "start and ends with it\n");
		return EXIT_USAGE;
	}
	// Filter flags apply on top of either form (a flag given replaces the pipeline's key).
	if (vm.count("comm")) {
		p.filters.comm.clear();
		for (const auto &c : vm["comm"].as<std::vector<std::string>>()) {
			if (auto r = check_comm_pattern(c, "--comm"); !r) {
				std::fprintf(stderr, "procimage: %s\n", r.err().msg.c_str());
				return EXIT_USAGE;
			}
			p.filters.comm.push_back(c);
		}
		if (p.filters.comm.size() > PI_FILTER_COMMS) {
			std::fprintf(stderr, "procimage: --comm: at most %d names or patterns\n", PI_FILTER_COMMS);
			return EXIT_USAGE;
		}
	}
	if (vm.count("failed"))
		p.filters.failed = true;
	if (vm.count("min-duration")) {
		const std::string &text = vm["min-duration"].as<std::string>();
		auto ns = parse_duration_ns(text, "--min-duration");
		if (!ns) {
			std::fprintf(stderr, "procimage: %s\n", ns.err().msg.c_str());
			return EXIT_USAGE;
		}
		p.filters.min_duration_ns = *ns;
		p.filters.min_duration_text = text;
	}
	if (!syscall_lists.empty()) {
		p.filters.syscalls.clear();
		p.filters.syscall_nrs.clear();
		for (const auto &l : syscall_lists)
			if (auto r = add_syscalls(p.filters, l, "--syscall"); !r) {
				std::fprintf(stderr, "procimage: %s\n", r.err().msg.c_str());
				return EXIT_USAGE;
			}
	}
	if (auto r = check_filters_fit(p); !r) {
		std::fprintf(stderr, "procimage: %s\n", r.err().msg.c_str());
		return EXIT_USAGE;
	}

	if (vm.count("print-pipeline")) {
		std::cout << p.to_json().dump(2) << "\n";
		return 0;
	}

	host h;
	return h.run(p, opts);
}

} // namespace
