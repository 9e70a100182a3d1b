// SPDX-License-Identifier: Apache-2.0
// The command line end to end: where the readable records go with -- CMD, a run bounded by
// --duration, and -P TGID --follow.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using nlohmann::json;
namespace t = procimage::test;

namespace {

// procimage in the background, its standard output and error in files.
struct bg_procimage {
	pid_t pid = -1;
	std::string out, err;

	bg_procimage(const t::temp_dir &d, const std::vector<std::string> &args)
	{
		out = d.file("procimage.out");
		err = d.file("procimage.err");
		pid = fork();
		if (pid == 0) {
			int e = open(err.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
			int o = open(out.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
			dup2(e, 2);
			dup2(o, 1);
			std::string bin = t::procimage_bin();
			std::vector<char *> argv{bin.data()};
			for (auto &a : args)
				argv.push_back(const_cast<char *>(a.c_str()));
			argv.push_back(nullptr);
			execv(argv[0], argv.data());
			_exit(127);
		}
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

// A shell started before procimage: it forks /bin/true once per line written to its FIFO
// (one at a time: the next fork comes after the last child was reaped), and exits at EOF.
struct forking_shell {
	pid_t pid = -1;
	int fd = -1;

	explicit forking_shell(const std::string &fifo)
	{
		REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
		pid = fork();
		if (pid == 0) {
			execl("/bin/sh", "sh", "-c", ("while read x; do /bin/true; done < " + fifo).c_str(), (char *)nullptr);
			_exit(127);
		}
		fd = open(fifo.c_str(), O_WRONLY); // blocks until the shell opens it
		REQUIRE(fd >= 0);
	}
	void fork_one() { REQUIRE(write(fd, "x\n", 2) == 2); }
	~forking_shell()
	{
		if (fd >= 0)
			close(fd);
		int st;
		if (pid > 0)
			waitpid(pid, &st, 0);
	}
};

std::string channel(const char *what) { return std::string("test-cli-") + what + "-" + std::to_string(getpid()); }

} // namespace

TEST_CASE("cli: with -- CMD, CMD's standard output is its own; the readable records go to standard error")
{
	REQUIRE_ROOT_OR_SKIP();
	auto r = t::run({t::procimage_bin(), "-q", "-k", "--", "/bin/sh", "-c", "echo hello"});
	INFO(r.err);
	REQUIRE(r.status == 0);
	CHECK(r.out == "hello\n");
	CHECK_THAT(r.err, Catch::StartsWith("TIME "));
	CHECK_THAT(r.err, Catch::Contains(" keytime  exec        filename=/bin/sh "));
	CHECK_THAT(r.err, Catch::Contains(" keytime  exit        exit_code=0 "));

	// stdout:- puts them on standard output beside CMD's; stdout:PATH in a file
	r = t::run({t::procimage_bin(), "-q", "-k", "-o", "stdout:-", "--", "/bin/sh", "-c", "echo hello"});
	REQUIRE(r.status == 0);
	CHECK_THAT(r.out, Catch::Contains("hello\n"));
	CHECK_THAT(r.out, Catch::Contains(" keytime  exec        filename=/bin/sh "));
	CHECK(r.err.empty());
	t::temp_dir d;
	r = t::run({t::procimage_bin(), "-q", "-k", "-o", "stdout:" + d.file("records.txt"), "--", "/bin/sh", "-c",
		    "echo hello"});
	REQUIRE(r.status == 0);
	CHECK(r.out == "hello\n");
	CHECK(r.err.empty());
	std::string text = t::read_file(d.file("records.txt"));
	CHECK_THAT(text, Catch::StartsWith("TIME "));
	CHECK_THAT(text, Catch::Contains(" keytime  exec        filename=/bin/sh "));

	// without a command, standard output is the records'
	r = t::run({t::procimage_bin(), "-q", "-k", "--duration", "0.2", "--name", channel("stdout")});
	REQUIRE(r.status == 0);
	CHECK_THAT(r.out, Catch::StartsWith("TIME "));
	CHECK_THAT(r.out, Catch::Contains(" procimage deactivated "));
}

TEST_CASE("cli: --duration ends a run without a command by itself, with every output flushed, and exit 0")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	// system-wide
	auto r = t::run({t::procimage_bin(), "-q", "-k", "--duration", "0.3", "-o", "jsonl:" + d.file("all.jsonl"),
			 "--name", channel("all")});
	INFO(r.err);
	REQUIRE(r.status == 0);
	auto recs = t::read_jsonl(d.file("all.jsonl"));
	CHECK(t::select_records(recs, "procimage", "activated").size() == 1);
	CHECK(t::select_records(recs, "procimage", "deactivated").size() == 1);
	CHECK(t::select_records(recs, "procimage", "summary").size() == 1);

	// one process, the readable lines in a file: complete up to the summary line
	pid_t sleeper = fork();
	if (sleeper == 0) {
		execl("/bin/sleep", "sleep", "600", (char *)nullptr);
		_exit(127);
	}
	r = t::run({t::procimage_bin(), "-q", "-k", "-P", std::to_string(sleeper), "--duration", "0.3", "-o",
		    "stdout:" + d.file("one.txt"), "--name", channel("one")});
	kill(sleeper, SIGKILL);
	waitpid(sleeper, nullptr, 0);
	INFO(r.err);
	REQUIRE(r.status == 0);
	std::string text = t::read_file(d.file("one.txt"));
	CHECK_THAT(text, Catch::Contains(" procimage activated   source=keytime "));
	CHECK_THAT(text, Catch::Contains(" procimage summary     source=keytime "));
	CHECK(text.back() == '\n');

	// a host that waits inactive ends the same way, having written no probe record
	r = t::run({t::procimage_bin(), "-q", "-k", "--start", "inactive", "--duration", "0.3", "-o",
		    "jsonl:" + d.file("idle.jsonl"), "--name", channel("idle")});
	REQUIRE(r.status == 0);
	recs = t::read_jsonl(d.file("idle.jsonl"));
	CHECK(t::select_records(recs, "procimage", "activated").empty());
	CHECK(t::select_records(recs, "keytime", "exec").empty());
	CHECK(t::select_records(recs, "procimage", "summary").size() == 1);
}

// The shell forks two children after procimage has attached; the first child has been reaped
// before the second fork, so once the second fork is recorded, everything the first child did is
// in the ring buffer, and procimage drains it all when it stops.
static void follow_case(bool follow)
{
	t::temp_dir d;
	forking_shell sh(d.file("fifo"));
	std::vector<std::string> args = {"-q", "-k", "-P", std::to_string(sh.pid), "-o", "jsonl:" + d.file("out.jsonl"),
					 "--name", channel(follow ? "follow" : "nofollow")};
	if (follow)
		args.push_back("--follow");
	bg_procimage host(d, args);
	REQUIRE(t::wait_for_record(d.file("out.jsonl"), [](const json &e) {
		return e["probe"] == "procimage" && e["event"] == "activated";
	}));
	// the shell starts its commands with fork or vfork (dash: vfork)
	auto forked_by_shell = [&](const json &e) {
		return e["probe"] == "keytime" && (e["event"] == "fork" || e["event"] == "vfork") && e["pid"] == sh.pid;
	};
	sh.fork_one();
	long child = 0;
	REQUIRE(t::wait_for_record(d.file("out.jsonl"), [&](const json &e) {
		if (forked_by_shell(e))
			child = e["child_pid"].get<long>();
		return forked_by_shell(e);
	}));
	sh.fork_one();
	REQUIRE(t::wait_for_record(d.file("out.jsonl"),
				   [&](const json &e) { return forked_by_shell(e) && e["child_pid"] != child; }));
	kill(host.pid, SIGTERM);
	CHECK(host.wait_exit() == 0);

	auto recs = t::read_jsonl(d.file("out.jsonl"));
	auto execs = t::select_records(recs, "keytime", "exec", [&](const json &e) { return e["pid"] == child; });
	auto exits = t::select_records(recs, "keytime", "exit", [&](const json &e) { return e["pid"] == child; });
	if (follow) {
		REQUIRE(execs.size() == 1);
		CHECK(execs[0]["filename"] == "/bin/true");
		REQUIRE(exits.size() == 1);
		CHECK(exits[0]["exit_code"] == 0);
	} else {
		CHECK(execs.empty());
		CHECK(exits.empty());
	}
}

TEST_CASE("cli: -P TGID --follow: the children a running process forks after attaching join the target")
{
	REQUIRE_ROOT_OR_SKIP();
	follow_case(true);
}

TEST_CASE("cli: -P TGID without --follow: the children a running process forks are not traced")
{
	REQUIRE_ROOT_OR_SKIP();
	follow_case(false);
}

TEST_CASE("cli: procimage-ctl -d -k deactivates keytime on a running host, without -k 0")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	const std::string ctl = t::build_dir() + "/procimage-ctl";
	const std::string name = channel("ctl");
	bg_procimage host(d, {"-q", "-k", "-S", "--start", "inactive", "--name", name, "-o", "jsonl:" + d.file("out.jsonl")});
	// the host answers once its control channel is open
	t::run_result st;
	for (int i = 0; i < 400; i++) {
		st = t::run({ctl, "--status", "--json", "--name", name});
		if (st.status == 0)
			break;
		usleep(25000);
	}
	REQUIRE(st.status == 0);
	auto r = t::run({ctl, "-a", "-P", std::to_string(getpid()), "--name", name});
	INFO(r.err);
	REQUIRE(r.status == 0);
	r = t::run({ctl, "-d", "-k", "--name", name});
	INFO(r.err);
	REQUIRE(r.status == 0);
	CHECK(r.out == "keytime deactivated\n");
	st = t::run({ctl, "--status", "--json", "--name", name});
	REQUIRE(st.status == 0);
	for (const auto &p : json::parse(st.out)["probes"])
		CHECK(p["active"] == (p["name"] == "schedule")); // only keytime went off
	r = t::run({ctl, "-f", "--name", name});
	CHECK(r.status == 0);
	CHECK(host.wait_exit() == 0);
}

TEST_CASE("cli: the stdout sink shows a traced command's syscall sequences as chains of calls")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	auto r = t::run({t::procimage_bin(), "-q", "-s", "-o", "stdout:" + d.file("out.txt"), "--", "/bin/ls",
			 d.file("missing")});
	CHECK(r.status == 2); // ls's own status: the file does not exist
	std::string text = t::read_file(d.file("out.txt"));
	// ls looks the file up and fails with ENOENT; the calls are chained, not parallel arrays
	CHECK_THAT(text, Catch::Contains(" syscall  sequence    first=0 count="));
	CHECK_THAT(text, Catch::Contains(" = -1 ENOENT <"));
	CHECK_THAT(text, Catch::Contains(" → "));
	CHECK(text.find("syscalls=[") == std::string::npos);
	CHECK(text.find("errno=[") == std::string::npos);
}
