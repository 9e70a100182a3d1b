// SPDX-License-Identifier: Apache-2.0
// Cgroup targets: a fresh cgroup under the v2 mount, a process moved into it after procimage
// started is traced (its exec, its child, its exit code), a process outside it is not; the
// same through procimage-ctl; a wrong cgroup is one line and exit 2.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using nlohmann::json;
namespace t = procimage::test;

namespace {

// Where the cgroup v2 hierarchy is mounted (the test's own small reading of mountinfo, so that
// it does not rely on the code under test), "" when nowhere.
std::string v2_mount()
{
	std::ifstream in("/proc/self/mountinfo");
	std::string line;
	while (std::getline(in, line)) {
		std::istringstream ls(line);
		std::vector<std::string> f;
		std::string w;
		while (ls >> w)
			f.push_back(w);
		auto dash = std::find(f.begin(), f.end(), "-");
		if (f.size() > 4 && dash != f.end() && dash + 1 != f.end() && *(dash + 1) == "cgroup2" && f[3] == "/")
			return f[4];
	}
	return "";
}

// A cgroup made for the test, removed at the end (any process still in it is killed first).
struct scratch_cgroup {
	std::string name, path;
	explicit scratch_cgroup(const std::string &mount)
	{
		static int n = 0;
		name = "procimage-test-" + std::to_string(getpid()) + "-" + std::to_string(n++);
		path = mount + "/" + name;
		REQUIRE(mkdir(path.c_str(), 0755) == 0);
	}
	void add(pid_t pid) const { t::write_file(path + "/cgroup.procs", std::to_string(pid)); }
	~scratch_cgroup()
	{
		std::ifstream in(path + "/cgroup.procs");
		pid_t pid;
		while (in >> pid)
			kill(pid, SIGKILL);
		for (int i = 0; i < 400 && rmdir(path.c_str()) != 0 && errno == EBUSY; i++)
			std::this_thread::sleep_for(std::chrono::milliseconds(5));
	}
};

// A child that waits for go(), then runs `sh -c SCRIPT` in place of itself.
struct held_shell {
	pid_t pid = -1;
	int fd = -1;
	explicit held_shell(const std::string &script)
	{
		int p[2];
		REQUIRE(pipe(p) == 0);
		pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0) {
			close(p[1]);
			char c;
			if (read(p[0], &c, 1) != 1)
				_exit(126);
			execl("/bin/sh", "sh", "-c", script.c_str(), (char *)nullptr);
			_exit(127);
		}
		close(p[0]);
		fd = p[1];
	}
	void go()
	{
		REQUIRE(write(fd, "g", 1) == 1);
		close(fd);
		fd = -1;
	}
	int wait()
	{
		int st = 0;
		waitpid(pid, &st, 0);
		pid = -1;
		return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	}
	~held_shell()
	{
		if (fd >= 0)
			close(fd);
		if (pid > 0) {
			kill(pid, SIGKILL);
			wait();
		}
	}
};

// procimage in the background, its stderr in a file.
struct bg_procimage {
	pid_t pid = -1;
	std::string err;
	bg_procimage(const t::temp_dir &d, const std::vector<std::string> &args)
	{
		err = d.file("host.err");
		pid = fork();
		if (pid == 0) {
			int fd = open(err.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
			dup2(fd, 2);
			std::vector<char *> argv;
			std::string bin = t::procimage_bin();
			argv.push_back(const_cast<char *>(bin.c_str()));
			for (auto &a : args)
				argv.push_back(const_cast<char *>(a.c_str()));
			argv.push_back(nullptr);
			execv(argv[0], argv.data());
			_exit(127);
		}
	}
	bool wait_log(const std::string &needle)
	{
		for (int i = 0; i < 800; i++) {
			if (t::read_file(err).find(needle) != std::string::npos)
				return true;
			std::this_thread::sleep_for(std::chrono::milliseconds(25));
		}
		return false;
	}
	int wait_exit()
	{
		int st = 0;
		waitpid(pid, &st, 0);
		pid = -1;
		return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	}
	~bg_procimage()
	{
		if (pid > 0) {
			kill(pid, SIGKILL);
			wait_exit();
		}
	}
};

uint64_t dir_ino(const std::string &path)
{
	struct stat st{};
	REQUIRE(stat(path.c_str(), &st) == 0);
	return st.st_ino;
}

// One shell moved into the cgroup once procimage collects, one left outside; both exec a
// child (/bin/true) and exit with their own code. Checks what the records say of them.
void check_inside_outside(const std::string &out, const scratch_cgroup &cg, const std::function<void()> &stop)
{
	held_shell in("/bin/true; exit 7"), outside("/bin/true; exit 5");
	cg.add(in.pid);
	in.go();
	outside.go();
	const pid_t in_pid = in.pid, out_pid = outside.pid;
	CHECK(in.wait() == 7);
	CHECK(outside.wait() == 5);
	// the shell's exit is in the output: everything before it is too
	CHECK(t::wait_for_record(out, [&](const json &e) {
		return e.value("probe", "") == "keytime" && e.value("event", "") == "exit" && e.value("pid", 0L) == in_pid;
	}));
	stop();

	auto recs = t::read_jsonl(out);
	auto act = t::select_records(recs, "procimage", "activated", [](const json &e) { return e["source"] == "keytime"; });
	REQUIRE(act.size() == 1);
	CHECK(act[0].value("cgroup_dir", "") == cg.path);
	CHECK(act[0].value("cgroup_id", 0ULL) == dir_ino(cg.path));

	// the shell in the cgroup: its exec, its child, its exit code
	auto mine = [&](long pid) { return [pid](const json &e) { return e.value("pid", 0L) == pid; }; };
	auto exec = t::select_records(recs, "keytime", "exec", mine(in_pid));
	REQUIRE(exec.size() == 1);
	CHECK(exec[0]["filename"] == "/bin/sh");
	auto exits = t::select_records(recs, "keytime", "exit", mine(in_pid));
	REQUIRE(exits.size() == 1);
	CHECK(exits[0]["exit_code"] == 7);
	auto births = t::select_records(recs, "keytime", "fork", mine(in_pid));
	auto vforks = t::select_records(recs, "keytime", "vfork", mine(in_pid));
	births.insert(births.end(), vforks.begin(), vforks.end());
	REQUIRE(births.size() == 1);
	long child = births[0]["child_pid"];
	auto child_exec = t::select_records(recs, "keytime", "exec", mine(child));
	REQUIRE(child_exec.size() == 1);
	CHECK(child_exec[0]["filename"] == "/bin/true");
	auto child_exit = t::select_records(recs, "keytime", "exit", mine(child));
	REQUIRE(child_exit.size() == 1);
	CHECK(child_exit[0]["exit_code"] == 0);

	// nobody else: not the shell outside, not its child, not procimage; and each record names
	// the cgroup the process was in (the mount shows the hierarchy's root: "/" + the name)
	const std::string rel = "/" + cg.name;
	for (const auto &e : recs)
		if (e["probe"] == "keytime") {
			INFO(e.dump());
			CHECK((e["pid"] == in_pid || e["pid"] == child));
			CHECK(e.value("cgroup", "") == rel);
		}
	CHECK(act[0].value("cgroup", "") == rel); // the activated record names the target's
	// syscall: the shell inside made calls, the one outside is not there
	auto calls = t::select_records(recs, "syscall", "syscall");
	CHECK(std::any_of(calls.begin(), calls.end(), [&](const json &e) { return e.value("pid", 0L) == in_pid; }));
	CHECK(std::none_of(recs.begin(), recs.end(), [&](const json &e) {
		return e.value("probe", "") == "syscall" && e.value("pid", 0L) == out_pid;
	}));
	for (const auto &e : calls)
		if (e.value("pid", 0L) == in_pid) {
			INFO(e.dump());
			CHECK(e.value("cgroup", "") == rel);
		}
}

} // namespace

TEST_CASE("cgroup: --cgroup traces processes that join the cgroup after the start, and no other")
{
	REQUIRE_ROOT_OR_SKIP();
	std::string mount = v2_mount();
	if (mount.empty())
		SKIP_TEST("no cgroup v2 hierarchy is mounted on this machine");
	scratch_cgroup cg(mount);
	t::temp_dir d;
	const std::string out = d.file("out.jsonl");
	bg_procimage host(d, {"-k", "-s", "--cgroup", cg.path, "--interval", "100", "-o", "jsonl:" + out});
	REQUIRE(host.wait_log("collecting for cgroup " + cg.path));
	REQUIRE(host.wait_log("probe 'syscall'"));
	REQUIRE(t::wait_for_record(out, [](const json &e) { return e.value("event", "") == "activated" && e["source"] == "syscall"; }));
	check_inside_outside(out, cg, [&] {
		kill(host.pid, SIGINT);
		CHECK(host.wait_exit() == 0);
	});
}

TEST_CASE("cgroup: procimage-ctl -a --cgroup, relative to the v2 mount, targets the cgroup")
{
	REQUIRE_ROOT_OR_SKIP();
	std::string mount = v2_mount();
	if (mount.empty())
		SKIP_TEST("no cgroup v2 hierarchy is mounted on this machine");
	scratch_cgroup cg(mount);
	t::temp_dir d;
	const std::string out = d.file("out.jsonl");
	const std::string ch = "test-cgroup-" + std::to_string(getpid());
	bg_procimage host(d, {"-a", "--name", ch, "--interval", "100", "-o", "jsonl:" + out});
	REQUIRE(host.wait_log("inactive: activate it with procimage-ctl -a"));
	const std::string ctl = t::build_dir() + "/procimage-ctl";
	auto r = t::run({ctl, "--name", ch, "-a", "-k", "0", "-s", "5", "--cgroup", cg.name});
	INFO(r.err);
	REQUIRE(r.status == 0);
	CHECK_THAT(r.out, Catch::Contains("keytime active for cgroup " + cg.path));
	auto st = t::run({ctl, "--name", ch, "--status", "--json"});
	REQUIRE(st.status == 0);
	for (const auto &p : json::parse(st.out)["probes"])
		if (p["active"] == true)
			CHECK(p["target"] == json{{"cgroup", cg.name}});
	check_inside_outside(out, cg, [&] {
		CHECK(t::run({ctl, "--name", ch, "-f"}).status == 0);
		CHECK(host.wait_exit() == 0);
	});
}

TEST_CASE("cgroup: a path that is no cgroup v2 directory, a unit or a container not found: one line, exit 2")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	const std::string ctl = t::build_dir() + "/procimage-ctl";
	struct bad {
		std::vector<std::string> args;
		std::string says;
	};
	std::string mount = v2_mount();
	std::vector<bad> cases = {
		{{"--cgroup", d.path()}, "is not a cgroup v2 directory"},
		{{"--cgroup", "/nonexistent/procimage-none"}, "no such cgroup"},
		{{"--unit", "procimage-no-such-unit"}, "no cgroup of a unit named procimage-no-such-unit"},
		{{"--container", "0123456789abcdef"}, "no container cgroup whose id starts with 0123456789abcdef"},
		{{"--container", "not-hex"}, "expected a container id"},
	};
	if (mount.empty())
		cases = {{{"--cgroup", "x"}, "no cgroup v2 hierarchy is mounted"}};
	for (const auto &c : cases) {
		for (bool via_ctl : {false, true}) {
			std::vector<std::string> argv = via_ctl ? std::vector<std::string>{ctl, "--name", "test-cgroup-none", "-a"}
								: std::vector<std::string>{t::procimage_bin(), "-k"};
			argv.insert(argv.end(), c.args.begin(), c.args.end());
			auto r = t::run(argv);
			INFO(argv[0] << " " << c.args[0] << " " << c.args[1] << ": " << r.err);
			CHECK(r.status == 2);
			CHECK_THAT(r.err, Catch::Contains(c.says));
			CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
		}
	}
}

TEST_CASE("cgroup: lock attaches its uprobes to a process moved into the cgroup after activation")
{
	REQUIRE_ROOT_OR_SKIP();
	std::string mount = v2_mount();
	if (mount.empty())
		SKIP_TEST("no cgroup v2 hierarchy is mounted on this machine");
	scratch_cgroup cg(mount);
	t::temp_dir d;
	const std::string out = d.file("out.jsonl");
	bg_procimage host(d, {"-v", "-l", "--set", "lock.mode=\"full\"", "--cgroup", cg.path, "-o", "jsonl:" + out});
	REQUIRE(host.wait_log("collecting for cgroup " + cg.path));
	const int n = 100;
	mkfifo(d.file("go").c_str(), 0600);
	pid_t wl = fork();
	REQUIRE(wl >= 0);
	if (wl == 0) {
		std::string bin = t::build_dir() + "/wl-lock-loop";
		execl(bin.c_str(), bin.c_str(), d.file("log").c_str(), d.file("go").c_str(), std::to_string(n).c_str(),
		      (char *)nullptr);
		_exit(127);
	}
	// started outside the cgroup: lock knows nothing of it until it moves in
	cg.add(wl);
	bool attached = host.wait_log("uprobe links in process " + std::to_string(wl));
	int fd = open(d.file("go").c_str(), O_WRONLY);
	REQUIRE(fd >= 0);
	REQUIRE(write(fd, "g", 1) == 1);
	close(fd);
	int st = 0;
	waitpid(wl, &st, 0);
	REQUIRE(attached);
	CHECK((WIFEXITED(st) && WEXITSTATUS(st) == 0));
	kill(host.pid, SIGINT);
	CHECK(host.wait_exit() == 0);

	// the n read locks of its loop, counted by the uprobes
	auto recs = t::read_jsonl(out);
	auto total = t::select_records(recs, "lock", "process", [&](const json &e) {
		return e.value("pid", 0L) == wl && e["window"] == "total" && e["lock_type"] == "rwlock_read";
	});
	REQUIRE(!total.empty()); // a running total per tick: the last one is the whole run's
	CHECK(total.back()["acquisitions"] == n);
}

TEST_CASE("cgroup: a probe built for plugin ABI 1.1 is refused a cgroup target, and takes a process target")
{
	REQUIRE_ROOT_OR_SKIP();
	std::string mount = v2_mount();
	if (mount.empty())
		SKIP_TEST("no cgroup v2 hierarchy is mounted on this machine");
	scratch_cgroup cg(mount);
	t::temp_dir d;
	const std::string plugin = std::string(PROCIMAGE_TEST_PLUGIN_DIR) + "/probe_abi_1_1.so";
	t::write_file(d.file("cg.json"), R"({"version": 1, "probes": {"old": {"plugin": ")" + plugin +
						 R"("}}, "sinks": {"jsonl": {"path": "/dev/null"}},
		"target": {"cgroup": ")" + cg.path + R"("}})");
	auto r = t::run({t::procimage_bin(), "--pipeline", d.file("cg.json")});
	INFO(r.err);
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("was built for plugin ABI 1.1, before cgroup targets (1.2)"));
	// the same plugin with a process target works as before
	t::write_file(d.file("pid.json"), R"({"version": 1, "probes": {"old": {"plugin": ")" + plugin +
						  R"("}}, "sinks": {"jsonl": {"path": "/dev/null"}}})");
	r = t::run({t::procimage_bin(), "--pipeline", d.file("pid.json"), "--", "/bin/sh", "-c", "exit 4"});
	INFO(r.err);
	CHECK(r.status == 4);
}

TEST_CASE("cgroup: every record names its process's cgroup, whatever the target; a process that moves is named where it went")
{
	REQUIRE_ROOT_OR_SKIP();
	std::string mount = v2_mount();
	if (mount.empty())
		SKIP_TEST("no cgroup v2 hierarchy is mounted on this machine");
	scratch_cgroup a(mount), b(mount);
	t::temp_dir d;
	const std::string out = d.file("out.jsonl");
	// the shell starts in a, runs a child there, moves itself to b and runs a second child
	t::write_file(d.file("run.sh"), "echo $$ > " + a.path + "/cgroup.procs\n/bin/true\necho $$ > " + b.path +
						"/cgroup.procs\n/bin/echo moved > /dev/null\nexit 3\n");
	auto r = t::run({t::procimage_bin(), "-k", "-s", "--interval", "100", "-o", "jsonl:" + out, "--", "/bin/sh",
			 d.file("run.sh")});
	REQUIRE(r.status == 3);
	auto recs = t::read_jsonl(out);
	auto execs = t::select_records(recs, "keytime", "exec");
	auto find_exec = [&](const std::string &file) {
		auto it = std::find_if(execs.begin(), execs.end(), [&](const json &e) { return e["filename"] == file; });
		REQUIRE(it != execs.end());
		return *it;
	};
	json t1 = find_exec("/bin/true"), t2 = find_exec("/bin/echo");
	CHECK(t1.value("cgroup", "") == "/" + a.name);
	CHECK(t2.value("cgroup", "") == "/" + b.name);
	// the shell's exit: in b, where it went
	auto exits = t::select_records(recs, "keytime", "exit", [](const json &e) { return e["exit_code"] == 3; });
	REQUIRE(exits.size() == 1);
	CHECK(exits[0].value("cgroup", "") == "/" + b.name);
	// every record about a process names a cgroup; rows about the system do not
	for (const auto &e : recs) {
		INFO(e.dump());
		if (e["probe"] == "procimage")
			continue;
		if (e.value("scope", "") == "system")
			CHECK_FALSE(e.contains("cgroup"));
		else if (e.value("pid", 0L) != 0)
			CHECK(e.contains("cgroup"));
	}
	// the portrait groups the processes by the cgroup each was last in: /bin/true in a; the
	// shell and /bin/echo in b
	auto rep = t::run({t::procimage_bin(), "report", "--format", "json", out});
	REQUIRE(rep.status == 0);
	json portrait = json::parse(rep.out);
	std::map<std::string, uint64_t> procs;
	for (const auto &g : portrait["cgroups"])
		if (g["cgroup"].is_string())
			procs[g["cgroup"]] = g["processes"];
	INFO(portrait["cgroups"].dump());
	CHECK(procs["/" + a.name] == 1);
	CHECK(procs["/" + b.name] == 2);
	auto text = t::run({t::procimage_bin(), "report", out});
	REQUIRE(text.status == 0);
	CHECK(text.out.find("by cgroup:") != std::string::npos);
}

TEST_CASE("cgroup: the Prometheus exporter labels a cgroup target's process series with the target's cgroup")
{
	REQUIRE_ROOT_OR_SKIP();
	std::string mount = v2_mount();
	if (mount.empty())
		SKIP_TEST("no cgroup v2 hierarchy is mounted on this machine");
	scratch_cgroup cg(mount);
	t::temp_dir d;
	const int port = t::free_port();
	json pm = {{"version", 1},
		   {"interval_ms", 100},
		   {"target", {{"cgroup", cg.path}}},
		   {"probes", {{"resource", json::object()}}},
		   {"sinks", {{"prometheus", {{"listen", "127.0.0.1:" + std::to_string(port)}}}}}};
	t::write_file(d.file("pm.json"), pm.dump());
	bg_procimage host(d, {"--pipeline", d.file("pm.json")});
	REQUIRE(host.wait_log("collecting for cgroup " + cg.path));
	// a busy shell in the cgroup, for a few intervals
	held_shell in("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done");
	cg.add(in.pid);
	in.go();
	const std::string want = "pid=\"" + std::to_string(in.pid) + "\"";
	std::string metrics, line;
	for (int i = 0; i < 100 && line.empty(); i++) {
		std::this_thread::sleep_for(std::chrono::milliseconds(100));
		metrics = t::http_get(port, "/metrics").body;
		std::istringstream ls(metrics);
		for (std::string l; std::getline(ls, l);)
			if (l.rfind("procimage_cpu_seconds_total{", 0) == 0 && l.find(want) != std::string::npos)
				line = l;
	}
	INFO(metrics);
	REQUIRE_FALSE(line.empty());
	CHECK(line.find("cgroup=\"/" + cg.name + "\"") != std::string::npos);
	// the system's series has no cgroup
	std::istringstream ls(metrics);
	for (std::string l; std::getline(ls, l);)
		if (l.find("scope=\"system\"") != std::string::npos)
			CHECK(l.find("cgroup=") == std::string::npos);
}
