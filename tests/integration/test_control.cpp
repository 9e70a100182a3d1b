// SPDX-License-Identifier: Apache-2.0
// Pre-attach now, activate later: procimage -a waits inactive; procimage-ctl activates,
// retargets, limits, deactivates, inspects and finishes it.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

using nlohmann::json;
namespace t = procimage::test;

namespace {

std::string ctl_bin() { return t::build_dir() + "/procimage-ctl"; }

// A shell that runs /bin/true once per line written to its FIFO, and exits 0 at EOF.
struct fifo_worker {
	pid_t pid = -1;
	int fd = -1;

	explicit fifo_worker(const std::string &fifo)
	{
		mkfifo(fifo.c_str(), 0600);
		pid = fork();
		if (pid == 0) {
			execl("/bin/sh", "sh", "-c", ("while read x; do /bin/true; done < " + fifo).c_str(), (char *)nullptr);
			_exit(127);
		}
		fd = open(fifo.c_str(), O_WRONLY); // blocks until the shell opens it
	}
	void poke(int n = 1)
	{
		for (int i = 0; i < n; i++) {
			REQUIRE(write(fd, "x\n", 2) == 2);
			std::this_thread::sleep_for(std::chrono::milliseconds(20));
		}
	}
	~fifo_worker()
	{
		if (fd >= 0)
			close(fd);
		int st;
		if (pid > 0)
			waitpid(pid, &st, 0);
	}
};

// procimage -a in the background, its stderr in a file.
struct bg_host {
	pid_t pid = -1;
	std::string err, out; // its stderr and stdout

	bg_host(const t::temp_dir &d, const std::vector<std::string> &args)
	{
		err = d.file("host.err");
		out = d.file("host.out");
		pid = fork();
		if (pid == 0) {
			int fd = open(err.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
			dup2(fd, 2);
			int ofd = open(out.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
			dup2(ofd, 1);
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
	bool wait_log(const std::string &needle, int ms = 10000)
	{
		for (int i = 0; i < ms / 25; i++) {
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
	~bg_host()
	{
		if (pid > 0) {
			kill(pid, SIGKILL);
			wait_exit();
		}
	}
};

std::vector<json> keytime_of(const std::vector<json> &recs, long pid)
{
	std::vector<json> out;
	for (const auto &r : recs)
		if (r["probe"] == "keytime" && r["pid"] == pid)
			out.push_back(r);
	return out;
}

// The name of a control channel nobody else uses.
std::string channel(const char *what) { return std::string("test-") + what + "-" + std::to_string(getpid()); }

} // namespace

namespace {
const std::vector<std::string> PROBES = {"keytime", "lock", "resource", "syscall", "schedule"};

// What the sinks of a host got from its probes (not the host's own records): the JSON lines,
// the CSV rows of every file, and the stdout lines that name a probe.
struct probe_output {
	size_t jsonl = 0, csv_rows = 0, stdout_lines = 0;
	bool operator==(const probe_output &) const = default;
};
probe_output probe_output_of(const t::temp_dir &d, const bg_host &host)
{
	probe_output o;
	for (const auto &r : t::read_jsonl(d.file("out.jsonl")))
		if (r.value("probe", "") != "procimage")
			o.jsonl++;
	for (const auto &f : std::filesystem::directory_iterator(d.file("csv"))) {
		if (f.path().filename().string().rfind("procimage_", 0) == 0)
			continue; // the host's own records
		std::ifstream in(f.path());
		std::string line;
		bool header = true;
		while (std::getline(in, line)) {
			if (!header)
				o.csv_rows++;
			header = false;
		}
	}
	std::istringstream text(t::read_file(host.out));
	std::string line;
	while (std::getline(text, line))
		for (const auto &p : PROBES)
			if (line.find(" " + p + " ") != std::string::npos) {
				o.stdout_lines++;
				break;
			}
	return o;
}
} // namespace

TEST_CASE("control: an inactive host writes no probe record in any sink, before activation or after deactivation")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	const std::string ch = channel("silent");
	mkdir(d.file("csv").c_str(), 0755);
	bg_host host(d, {"-a", "--name", ch, "--interval", "100", "-o", "jsonl:" + d.file("out.jsonl"), "-o",
			 "csv:" + d.file("csv"), "-o", "stdout"});
	REQUIRE(host.wait_log("inactive: activate it with procimage-ctl -a"));
	fifo_worker w(d.file("w"));
	w.poke(3);
	// ten intervals while inactive
	std::this_thread::sleep_for(std::chrono::milliseconds(1000));
	auto before = probe_output_of(d, host);
	INFO("inactive: jsonl " << before.jsonl << ", csv " << before.csv_rows << ", stdout " << before.stdout_lines);
	CHECK(before == probe_output{});

	// every probe active for the worker: now they write
	auto r = t::run({ctl_bin(), "--name", ch, "-a", "-P", std::to_string(w.pid)});
	INFO(r.err);
	REQUIRE(r.status == 0);
	w.poke(3);
	// active until the worker's records are out in every sink (bounded)
	for (int i = 0; i < 200; i++) {
		auto o = probe_output_of(d, host);
		if (o.jsonl > 0 && o.csv_rows > 0 && o.stdout_lines > 0)
			break;
		std::this_thread::sleep_for(std::chrono::milliseconds(25));
	}
	r = t::run({ctl_bin(), "--name", ch, "-d"});
	REQUIRE(r.status == 0);
	auto active = probe_output_of(d, host);
	CHECK(active.jsonl > 0);
	CHECK(active.csv_rows > 0);
	CHECK(active.stdout_lines > 0);

	// deactivated: ten more intervals and pokes add nothing
	w.poke(3);
	std::this_thread::sleep_for(std::chrono::milliseconds(1000));
	auto after = probe_output_of(d, host);
	INFO("after deactivation: jsonl " << after.jsonl - active.jsonl << ", csv " << after.csv_rows - active.csv_rows
					  << ", stdout " << after.stdout_lines - active.stdout_lines << " more");
	CHECK(after == active);
	r = t::run({ctl_bin(), "--name", ch, "-f"});
	CHECK(r.status == 0);
	CHECK(host.wait_exit() == 0);
}

TEST_CASE("control: inactive until activated, then only the target, retarget, deactivate, finish")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	const std::string ch = channel("cycle");
	bg_host host(d, {"-a", "--name", ch, "-o", "jsonl:" + d.file("out.jsonl")});
	REQUIRE(host.wait_log("inactive: activate it with procimage-ctl -a"));
	fifo_worker a(d.file("a")), b(d.file("b"));

	// inactive: nothing is collected (and the probes are not attached)
	a.poke(2);
	b.poke(2);
	auto st = t::run({ctl_bin(), "--name", ch, "--status", "--json"});
	REQUIRE(st.status == 0);
	auto status = json::parse(st.out);
	for (const auto &p : status["probes"]) {
		CHECK(p["active"] == false);
		CHECK(p["records_total"] == 0);
	}

	// activate keytime for a only
	auto r = t::run({ctl_bin(), "--name", ch, "-a", "-k", "0", "-P", std::to_string(a.pid)});
	INFO(r.err);
	REQUIRE(r.status == 0);
	CHECK_THAT(r.out, Catch::Contains("keytime active for process " + std::to_string(a.pid)));
	a.poke(3);
	b.poke(3);
	st = t::run({ctl_bin(), "--name", ch, "--status", "--json"});
	status = json::parse(st.out);
	REQUIRE(status["probes"][0]["active"] == true);
	CHECK(status["probes"][0]["target"] == json{{"tgid", a.pid}});
	CHECK(status["probes"][0]["records_since_activation"].get<uint64_t>() >= 3);

	// retarget to b: from now on only b
	r = t::run({ctl_bin(), "--name", ch, "-a", "-k", "0", "-P", std::to_string(b.pid)});
	REQUIRE(r.status == 0);
	b.poke(2);
	a.poke(2);
	r = t::run({ctl_bin(), "--name", ch, "-d"});
	REQUIRE(r.status == 0);
	CHECK_THAT(r.out, Catch::Contains("keytime deactivated"));
	a.poke(2);
	b.poke(2);

	// finish: the host flushes, detaches and exits 0; the channel is gone
	r = t::run({ctl_bin(), "--name", ch, "-f"});
	REQUIRE(r.status == 0);
	CHECK(host.wait_exit() == 0);
	r = t::run({ctl_bin(), "--name", ch, "--status"});
	CHECK(r.status == 1);
	CHECK_THAT(r.err, Catch::Contains("no procimage host is running"));

	auto recs = t::read_jsonl(d.file("out.jsonl"));
	// the host's own activation records frame the windows
	std::vector<uint64_t> act, deact;
	for (const auto &rec : recs) {
		if (rec["probe"] != "procimage" || rec["source"] != "keytime")
			continue;
		if (rec["event"] == "activated")
			act.push_back(rec["ts_ns"]);
		if (rec["event"] == "deactivated")
			deact.push_back(rec["ts_ns"]);
	}
	REQUIRE(act.size() == 2);
	REQUIRE(deact.size() == 2); // the retarget closes the first window
	// a: exactly the 3 pokes of the first window (fork + exit of each /bin/true child is the
	// shell's fork; the child's own records belong to other processes, not followed)
	auto ra = keytime_of(recs, a.pid);
	size_t a_forks = std::count_if(ra.begin(), ra.end(), [](const json &e) { return e["event"] == "fork" || e["event"] == "vfork"; });
	CHECK(a_forks == 3);
	for (const auto &e : ra) {
		CHECK(e["ts_ns"].get<uint64_t>() >= act[0]);
		CHECK(e["ts_ns"].get<uint64_t>() <= act[1]);
	}
	auto rb = keytime_of(recs, b.pid);
	size_t b_forks = std::count_if(rb.begin(), rb.end(), [](const json &e) { return e["event"] == "fork" || e["event"] == "vfork"; });
	CHECK(b_forks == 2);
	for (const auto &e : rb) {
		CHECK(e["ts_ns"].get<uint64_t>() >= act[1]);
		CHECK(e["ts_ns"].get<uint64_t>() <= deact[1]);
	}
	// nothing from anyone else
	for (const auto &rec : recs)
		if (rec["probe"] == "keytime")
			CHECK((rec["pid"] == a.pid || rec["pid"] == b.pid));
}

TEST_CASE("control: -t 1 activates for about a second, then records stop")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	const std::string ch = channel("time");
	bg_host host(d, {"-a", "--name", ch, "-o", "jsonl:" + d.file("out.jsonl")});
	REQUIRE(host.wait_log("inactive"));
	// a shell running /bin/true every 20 ms for about 3 s
	pid_t w = fork();
	if (w == 0) {
		execl("/bin/sh", "sh", "-c", "i=0; while [ $i -lt 150 ]; do /bin/true; sleep 0.02; i=$((i+1)); done",
		      (char *)nullptr);
		_exit(127);
	}
	auto r = t::run({ctl_bin(), "--name", ch, "-a", "-k", "0", "-P", std::to_string(w), "-t", "1"});
	REQUIRE(r.status == 0);
	CHECK_THAT(r.out, Catch::Contains("for 1 s"));
	int st;
	waitpid(w, &st, 0);
	REQUIRE(t::run({ctl_bin(), "--name", ch, "-f"}).status == 0);
	CHECK(host.wait_exit() == 0);

	auto recs = t::read_jsonl(d.file("out.jsonl"));
	uint64_t on = 0, off = 0;
	for (const auto &rec : recs) {
		if (rec["probe"] != "procimage" || rec["source"] != "keytime")
			continue;
		if (rec["event"] == "activated")
			on = rec["ts_ns"];
		if (rec["event"] == "deactivated")
			off = rec["ts_ns"];
	}
	REQUIRE(on);
	REQUIRE(off);
	// the timer fires after 1 s (allow 0.3 s for a loaded machine)
	CHECK(off - on >= 1000000000ULL);
	CHECK(off - on < 1300000000ULL);
	auto rw = keytime_of(recs, w);
	CHECK(rw.size() >= 20); // ~45 forks in that second
	for (const auto &e : rw) {
		CHECK(e["ts_ns"].get<uint64_t>() >= on);
		CHECK(e["ts_ns"].get<uint64_t>() <= off);
	}
}

TEST_CASE("control: a second host on a taken channel leaves the first one's output alone; a thread is no process")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	const std::string ch = channel("second");
	const std::string out = d.file("out.jsonl");
	// the first host collects (for this test process) and has written its "activated" record
	bg_host host(d, {"-k", "-P", std::to_string(getpid()), "--name", ch, "-o", "jsonl:" + out});
	REQUIRE(host.wait_log("collecting"));
	std::string before;
	for (int i = 0; i < 200 && before.find("\"activated\"") == std::string::npos; i++) {
		std::this_thread::sleep_for(std::chrono::milliseconds(25));
		before = t::read_file(out);
	}
	REQUIRE(before.find("\"activated\"") != std::string::npos);
	// a second, inactive host given the same file is refused before it opens it
	auto second = t::run({t::procimage_bin(), "-a", "--name", ch, "-o", "jsonl:" + out});
	CHECK(second.status == 1);
	CHECK_THAT(second.err, Catch::Contains("is already held by pid " + std::to_string(host.pid) + ", uid 0"));
	std::string after = t::read_file(out);
	CHECK(after.size() >= before.size());
	CHECK(after.compare(0, before.size(), before) == 0);

	// a thread of a process given as the process
	std::atomic<pid_t> tid{0};
	std::atomic<bool> done{false};
	std::thread th([&] {
		tid = static_cast<pid_t>(syscall(SYS_gettid));
		while (!done)
			std::this_thread::sleep_for(std::chrono::milliseconds(5));
	});
	while (!tid)
		std::this_thread::sleep_for(std::chrono::milliseconds(1));
	auto r = t::run({ctl_bin(), "--name", ch, "-a", "-k", "0", "-P", std::to_string(tid.load())});
	done = true;
	th.join();
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains(std::to_string(tid.load()) + " is a thread of process " +
					  std::to_string(getpid()) + ", not a process"));
	CHECK(t::run({ctl_bin(), "--name", ch, "-f"}).status == 0);
	CHECK(host.wait_exit() == 0);
}

TEST_CASE("control: an activation one image refuses puts every image back as it was")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	const std::string ch = channel("rollback");
	auto cc = t::sh("printf '#include <unistd.h>\\nint main(void){pause();}\\n' > " + d.file("st.c") +
			" && cc -static -O1 -o " + d.file("st") + " " + d.file("st.c") + " 2>&1");
	if (cc.status != 0) {
		WARN("skipped: cannot link a static program here: " << cc.out);
		return;
	}
	pid_t st = fork();
	if (st == 0) {
		execl(d.file("st").c_str(), "st", (char *)nullptr);
		_exit(127);
	}
	struct reap {
		pid_t pid;
		~reap()
		{
			kill(pid, SIGKILL);
			waitpid(pid, nullptr, 0);
		}
	} st_guard{st};
	// keytime and lock collect for this test process
	const std::string self = std::to_string(getpid());
	bg_host host(d, {"-k", "-l", "-P", self, "--name", ch, "-o", "jsonl:" + d.file("out.jsonl")});
	REQUIRE(host.wait_log("probe 'lock' (lock 1.0.0) collecting"));
	// lock cannot probe a statically linked process: the call fails...
	auto r = t::run({ctl_bin(), "--name", ch, "-a", "-P", std::to_string(st)});
	CHECK(r.status == 1);
	CHECK_THAT(r.err, Catch::Contains("statically linked"));
	// ...and both images are back on this process (keytime had already moved)
	auto s = t::run({ctl_bin(), "--name", ch, "--status", "--json"});
	REQUIRE(s.status == 0);
	auto j = json::parse(s.out);
	for (const auto &p : j["probes"]) {
		INFO(p.dump());
		CHECK(p["active"] == true);
		CHECK(p["target"] == json{{"tgid", getpid()}});
	}
	CHECK(j["probes"].size() == 2);
	CHECK(t::run({ctl_bin(), "--name", ch, "-f"}).status == 0);
	CHECK(host.wait_exit() == 0);
}

TEST_CASE("control: errors are clear, exit non-zero, and leave the host as it was")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	const std::string ch = channel("errors");

	// no host running
	auto r = t::run({ctl_bin(), "--name", ch, "-a"});
	CHECK(r.status == 1);
	CHECK_THAT(r.err, Catch::Contains("no procimage host is running with --name " + ch));

	// keytime only, loaded and waiting
	bg_host host(d, {"-k", "--start", "inactive", "--name", ch, "-o", "jsonl:" + d.file("out.jsonl")});
	REQUIRE(host.wait_log("inactive"));

	// a second host on the same channel is refused and names the first
	auto second = t::run({t::procimage_bin(), "-a", "--name", ch, "-o", "jsonl:/dev/null"});
	CHECK(second.status == 1);
	CHECK_THAT(second.err, Catch::Contains("the control channel \"" + ch + "\" is already held by pid " +
					       std::to_string(host.pid) + ", uid 0 (another procimage host)"));

	// an image the host did not load
	r = t::run({ctl_bin(), "--name", ch, "-a", "-S"});
	CHECK(r.status == 1);
	CHECK_THAT(r.err, Catch::Contains("the schedule probe is not loaded by this host (loaded: keytime)"));

	// a pid that does not exist, a thread given as a process, out-of-range values
	r = t::run({ctl_bin(), "--name", ch, "-a", "-P", "999999"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("process 999999 does not exist"));
	r = t::run({ctl_bin(), "--name", ch, "-a", "-p", "999999"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("thread 999999 does not exist"));
	r = t::run({ctl_bin(), "--name", ch, "-a", "-s", "51"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("-s: expected a batch size of 1..50, got 51"));
	r = t::run({ctl_bin(), "--name", ch, "-a", "-k", "2"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("-k: expected 0"));
	r = t::run({ctl_bin(), "--name", ch, "-a", "-p", "0"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("required with \"tid\": 0"));
	r = t::run({ctl_bin(), "--name", ch, "-a", "-p", "0", "-c", "4096"});
	CHECK(r.status == 2);
	r = t::run({ctl_bin(), "--name", ch, "-a", "-p", "0", "-c", "999"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("cpu 999 does not exist"));
	r = t::run({ctl_bin(), "--name", ch, "-a", "-t", "-1"});
	CHECK(r.status == 2);
	r = t::run({ctl_bin(), "--name", ch, "-a", "-d"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("give exactly one of -a, -d, -f, --status"));
	r = t::run({ctl_bin(), "--name", ch, "-d", "-P", "1"});
	CHECK(r.status == 2);

	// the host is untouched: still inactive, nothing recorded
	auto st = t::run({ctl_bin(), "--name", ch, "--status"});
	CHECK(st.status == 0);
	CHECK_THAT(st.out, Catch::Contains("keytime"));
	CHECK_THAT(st.out, Catch::Contains("inactive"));

	// a thread id given as a process: checked by the host as well as the controller
	r = t::run({ctl_bin(), "--name", ch, "--tid", std::to_string(getpid()), "-a"});
	CHECK(r.status == 0); // --tid is --pid
	r = t::run({ctl_bin(), "--name", ch, "-d"});
	CHECK(r.status == 0);

	// only root or the host's user may control it
	t::temp_dir copy;
	r = t::run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		    t::world_readable_build(copy) + "/procimage-ctl", "--name", ch, "--status"});
	CHECK(r.status == 1);
	CHECK_THAT(r.err, Catch::Contains("permission denied: only root or uid 0 may control this procimage host"));
}

TEST_CASE("control: a host killed with SIGKILL leaves nothing that stops the next start")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	const std::string ch = channel("kill");
	{
		bg_host first(d, {"-a", "--name", ch, "-o", "jsonl:/dev/null"});
		REQUIRE(first.wait_log("inactive"));
		kill(first.pid, SIGKILL);
		first.wait_exit();
	}
	t::temp_dir d2;
	bg_host second(d2, {"-a", "--name", ch, "-o", "jsonl:/dev/null"});
	REQUIRE(second.wait_log("inactive"));
	auto r = t::run({ctl_bin(), "--name", ch, "-f"});
	CHECK(r.status == 0);
	CHECK(second.wait_exit() == 0);
}

namespace {

// tests/tools/squatter.py bound to a channel, as UID, answering REPLY; killed at the end.
struct squatter {
	pid_t pid = -1;
	std::string out;

	squatter(const t::temp_dir &d, const std::string &ch, const std::string &reply, uid_t uid)
	{
		// a copy the unprivileged user can read, wherever the checkout is
		std::string script = d.file("squatter.py");
		std::filesystem::copy_file(t::source_dir() + "/tests/tools/squatter.py", script,
					   std::filesystem::copy_options::overwrite_existing);
		chmod(script.c_str(), 0755);
		out = d.file("squatter.out");
		unlink(out.c_str()); // no "ready" from an earlier squatter
		pid = fork();
		if (pid == 0) {
			int fd = open(out.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
			dup2(fd, 1);
			std::string id = std::to_string(uid);
			execlp("setpriv", "setpriv", ("--reuid=" + id).c_str(), ("--regid=" + id).c_str(), "--clear-groups",
			       "/usr/bin/python3", script.c_str(), ch.c_str(), reply.c_str(), (char *)nullptr);
			_exit(127);
		}
		for (int i = 0; i < 400 && t::read_file(out).find("ready") == std::string::npos; i++)
			std::this_thread::sleep_for(std::chrono::milliseconds(25));
		REQUIRE(t::read_file(out).find("ready") != std::string::npos);
	}
	~squatter()
	{
		kill(pid, SIGKILL);
		int st;
		waitpid(pid, &st, 0);
	}
};

} // namespace

TEST_CASE("control: a squatter (uid 65534) on the channel is neither trusted by the controller nor blocks a root host")
{
	REQUIRE_ROOT_OR_SKIP(); // needs root to run the squatter as another user
	t::temp_dir d;
	const std::string ch = channel("squat");
	squatter sq(d, ch, R"({"ok":true,"host_pid":4242,"changed":["fake"],"probes":[]})", 65534);
	const std::string holder = "pid " + std::to_string(sq.pid) + ", uid 65534";

	// the controller sends nothing (no target) and does not report success
	auto r = t::run({ctl_bin(), "--name", ch, "-a", "-k", "0", "-P", "1"});
	CHECK(r.status == 1);
	CHECK(r.out.empty());
	CHECK_THAT(r.err, Catch::Contains("is held by " + holder + ", neither root nor this user"));
	CHECK_THAT(r.err, Catch::Contains("nothing was sent"));
	r = t::run({ctl_bin(), "--name", ch, "--status"});
	CHECK(r.status == 1);

	// a root host is not blocked: its channel is a file in root's /run/procimage, where the
	// squatter could not be first; root's controller reaches it there, not the squatter
	{
		bg_host host(d, {"-a", "--name", ch, "-o", "jsonl:/dev/null"});
		REQUIRE(host.wait_log("inactive"));
		struct stat st{};
		REQUIRE(lstat(("/run/procimage/" + ch + ".sock").c_str(), &st) == 0);
		CHECK(S_ISSOCK(st.st_mode));
		CHECK(st.st_uid == 0);
		r = t::run({ctl_bin(), "--name", ch, "--status", "--json"});
		INFO(r.err);
		REQUIRE(r.status == 0);
		CHECK(json::parse(r.out)["host_pid"] == host.pid);
		// a second root host on the same name is refused, naming the first from the kernel
		r = t::run({t::procimage_bin(), "-a", "--name", ch, "-o", "jsonl:/dev/null"});
		CHECK(r.status == 1);
		CHECK_THAT(r.err, Catch::Contains("\"" + ch + "\" is already held by pid " + std::to_string(host.pid) +
						  ", uid 0 (another procimage host)"));
		CHECK_THAT(r.err, !Catch::Contains("4242"));
		REQUIRE(t::run({ctl_bin(), "--name", ch, "-f"}).status == 0);
		CHECK(host.wait_exit() == 0);
	}
	// the host's file left with it
	struct stat st{};
	CHECK(lstat(("/run/procimage/" + ch + ".sock").c_str(), &st) != 0);
}

TEST_CASE("control: replies of the wrong shape fail with one line, never an abort")
{
	REQUIRE_ROOT_OR_SKIP(); // the fake host runs as root, so the controller trusts it
	t::temp_dir d;
	const std::string ch = channel("shape");
	{
		squatter sq(d, ch, R"({"ok":true,"status":null})", 0);
		auto r = t::run({ctl_bin(), "--name", ch, "--status"});
		CHECK(r.status == 1);
		CHECK(r.err == "procimage-ctl: unexpected reply from the host: no status object\n");
	}
	{
		squatter sq(d, ch, R"({"ok":true,"status":{"probes":[{"name":5}]}})", 0);
		auto r = t::run({ctl_bin(), "--name", ch, "--status"});
		CHECK(r.status == 1);
		CHECK_THAT(r.err, Catch::StartsWith("procimage-ctl: error: "));
	}
	{
		squatter sq(d, ch, R"({"ok":true,"host_pid":4242,"changed":"fake"})", 0);
		auto r = t::run({ctl_bin(), "--name", ch, "-a"});
		CHECK(r.status == 1);
		CHECK(r.err == "procimage-ctl: unexpected reply from the host: no list of changes\n");
	}
	{
		squatter sq(d, ch, "[1,2]", 0);
		auto r = t::run({ctl_bin(), "--name", ch, "-f"});
		CHECK(r.status == 1);
		CHECK_THAT(r.err, Catch::Contains("unexpected reply from the host (no \"ok\")"));
	}
}

TEST_CASE("control: a request reported as timed out is not applied when the stopped host resumes")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	const std::string ch = channel("late");
	bg_host host(d, {"-k", "--start", "inactive", "--name", ch, "-o", "jsonl:" + d.file("out.jsonl")});
	REQUIRE(host.wait_log("inactive"));
	REQUIRE(kill(host.pid, SIGSTOP) == 0);
	auto r = t::run({ctl_bin(), "--name", ch, "--timeout", "500", "-a", "-k", "0", "-P", std::to_string(getpid())});
	REQUIRE(kill(host.pid, SIGCONT) == 0);
	CHECK(r.status == 1);
	CHECK_THAT(r.err, Catch::Contains("no answer within 500 ms"));
	CHECK(host.wait_log("after its deadline; not applied"));
	r = t::run({ctl_bin(), "--name", ch, "--status", "--json"});
	REQUIRE(r.status == 0);
	auto st = json::parse(r.out);
	REQUIRE(st["probes"].size() == 1);
	CHECK(st["probes"][0]["active"] == false);
	CHECK(t::run({ctl_bin(), "--name", ch, "-f"}).status == 0);
	CHECK(host.wait_exit() == 0);
}
