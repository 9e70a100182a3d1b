// SPDX-License-Identifier: Apache-2.0
#include "system.hpp"

#include "cgroup.hpp"
#include "pipeline.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

namespace procimage::core {

namespace {

uint64_t cap_eff()
{
	std::ifstream in("/proc/self/status");
	std::string line;
	while (std::getline(in, line))
		if (line.rfind("CapEff:", 0) == 0)
			return std::stoull(line.substr(7), nullptr, 16);
	return 0;
}

bool fs_is(const char *path, long magic)
{
	struct statfs st {};
	return statfs(path, &st) == 0 && st.f_type == magic;
}

uint64_t clock_ns(clockid_t c)
{
	timespec ts{};
	clock_gettime(c, &ts);
	return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

} // namespace

result<void> check_privileges()
{
	constexpr int CAP_DAC_READ_SEARCH_BIT = 2, CAP_SYS_ADMIN_BIT = 21, CAP_PERFMON_BIT = 38, CAP_BPF_BIT = 39;
	uint64_t caps = cap_eff();
	auto has = [caps](int bit) { return (caps & (1ULL << bit)) != 0; };
	if (has(CAP_SYS_ADMIN_BIT))
		return {};
	// Without CAP_SYS_ADMIN: BPF programs and maps, perf events (tracepoints, uprobes), and
	// reading tracefs (mode 0700), where a tracepoint's event id is looked up.
	std::vector<std::string> missing;
	if (!has(CAP_BPF_BIT))
		missing.push_back("CAP_BPF");
	if (!has(CAP_PERFMON_BIT))
		missing.push_back("CAP_PERFMON");
	if (!has(CAP_DAC_READ_SEARCH_BIT))
		missing.push_back("CAP_DAC_READ_SEARCH");
	if (missing.empty())
		return {};
	std::string list;
	for (size_t i = 0; i < missing.size(); i++)
		list += (i == 0 ? "" : i + 1 == missing.size() ? " and " : ", ") + missing[i];
	return error{"procimage needs root, or the capabilities CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH, to "
		     "load its probes; this process lacks " +
			     list + " (run it with sudo, or: setcap cap_bpf,cap_perfmon,cap_dac_read_search+ep procimage)",
		     EXIT_PRIVILEGE};
}

static long status_tgid(uint32_t id)
{
	std::ifstream in("/proc/" + std::to_string(id) + "/status");
	std::string line;
	while (std::getline(in, line))
		if (line.rfind("Tgid:", 0) == 0)
			return std::stol(line.substr(5));
	return -1;
}

result<void> resolve_cgroup_target(target_spec &t)
{
	if (t.kind != target_spec::kind_t::cgroup)
		return {};
	auto m = cgroup::v2_mount();
	if (!m)
		return m.err();
	// what is not found may be outside the part of the hierarchy this process sees
	auto not_found = [&](const error &e) -> error {
		auto note = cgroup::partial_view(*m);
		return note ? error{e.msg + "; " + *note, e.code} : e;
	};
	std::string path = t.cgroup_query;
	if (t.cgroup_by == target_spec::cgroup_by_t::unit) {
		auto d = cgroup::find_unit(m->path, t.cgroup_query);
		if (!d)
			return not_found(d.err());
		path = *d;
	} else if (t.cgroup_by == target_spec::cgroup_by_t::container) {
		auto d = cgroup::find_container(m->path, t.cgroup_query);
		if (!d)
			return not_found(d.err());
		path = *d;
	}
	auto d = cgroup::resolve_path(*m, path);
	if (!d)
		return not_found(d.err());
	t.cgroup_dir = d->path;
	t.cgroup_id = d->id;
	t.cgroup_min_level = d->min_level;
	return {};
}

result<void> check_target_exists(const target_spec &t)
{
	if (t.kind == target_spec::kind_t::cgroup) {
		target_spec copy = t;
		return resolve_cgroup_target(copy);
	}
	if (t.idle_cpu >= 0) {
		long ncpu = sysconf(_SC_NPROCESSORS_CONF);
		if (t.idle_cpu >= ncpu)
			return usage_error("cpu " + std::to_string(t.idle_cpu) + " does not exist (this machine has " +
					   std::to_string(ncpu) + " CPUs: 0.." + std::to_string(ncpu - 1) + ")");
	}
	for (uint32_t id : t.ids) {
		if (id == 0)
			continue; // the idle task, checked above
		long tgid = status_tgid(id);
		if (tgid < 0)
			return usage_error(std::string(t.kind == target_spec::kind_t::tid ? "thread " : "process ") +
					   std::to_string(id) + " does not exist");
		if (t.kind == target_spec::kind_t::tgid && tgid != static_cast<long>(id))
			return usage_error(std::to_string(id) + " is a thread of process " + std::to_string(tgid) +
					   ", not a process: target it with -p " + std::to_string(id) + " or -P " +
					   std::to_string(tgid));
	}
	return {};
}

result<void> ensure_mounts()
{
	struct want {
		const char *path;
		const char *type;
		long magic;
	} wants[] = {{"/sys/fs/bpf", "bpf", BPF_FS_MAGIC}, {"/sys/kernel/tracing", "tracefs", TRACEFS_MAGIC}};
	for (const auto &w : wants) {
		if (fs_is(w.path, w.magic))
			continue;
		if (mount("nodev", w.path, w.type, 0, nullptr) != 0) {
			// tracefs is also reachable through debugfs on older setups
			if (std::strcmp(w.type, "tracefs") == 0 && access("/sys/kernel/debug/tracing/events", F_OK) == 0)
				continue;
			return runtime_error(std::string("cannot mount ") + w.type + " at " + w.path + ": " +
					     std::strerror(errno) + " (mount it with: mount -t " + w.type +
					     " nodev " + w.path + ")");
		}
	}
	return {};
}

uint64_t boot_now_ns() { return clock_ns(CLOCK_BOOTTIME); }

uint64_t boot_to_epoch_offset_ns()
{
	// Sample boottime between two realtime reads to bound the error.
	uint64_t r1 = clock_ns(CLOCK_REALTIME);
	uint64_t b = clock_ns(CLOCK_BOOTTIME);
	uint64_t r2 = clock_ns(CLOCK_REALTIME);
	return (r1 / 2 + r2 / 2) - b;
}

held_command::~held_command()
{
	if (go_fd_ >= 0)
		close(go_fd_);
	if (pid_ > 0 && !exited_) {
		::kill(pid_, SIGKILL);
		int st;
		waitpid(pid_, &st, 0);
	}
}

result<void> held_command::start(const std::vector<std::string> &argv)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0)
		return runtime_error(std::string("pipe: ") + std::strerror(errno));
	std::vector<char *> args;
	for (const auto &a : argv)
		args.push_back(const_cast<char *>(a.c_str()));
	args.push_back(nullptr);
	pid_t pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return runtime_error(std::string("fork: ") + std::strerror(errno));
	}
	if (pid == 0) {
		close(fds[1]);
		sigset_t all;
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, nullptr);
		signal(SIGPIPE, SIG_DFL);
		char go = 0;
		ssize_t n;
		do
			n = read(fds[0], &go, 1);
		while (n < 0 && errno == EINTR);
		if (n != 1)
			_exit(127); // the host gave up before releasing us
		execvp(args[0], args.data());
		int e = errno;
		std::string msg = std::string("procimage: cannot run ") + args[0] + ": " + std::strerror(e) + "\n";
		ssize_t w = write(STDERR_FILENO, msg.data(), msg.size());
		(void)w;
		_exit(e == ENOENT ? 127 : 126);
	}
	close(fds[0]);
	pid_ = pid;
	go_fd_ = fds[1];
	return {};
}

result<void> held_command::release()
{
	char go = 1;
	if (write(go_fd_, &go, 1) != 1)
		return runtime_error(std::string("cannot release the command: ") + std::strerror(errno));
	close(go_fd_);
	go_fd_ = -1;
	return {};
}

bool held_command::poll_exit()
{
	if (pid_ <= 0 || exited_)
		return exited_;
	int st = 0;
	pid_t r = waitpid(pid_, &st, WNOHANG);
	if (r == pid_) {
		exited_ = true;
		shell_status_ = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 1;
	}
	return exited_;
}

void held_command::kill_with(int sig)
{
	if (pid_ > 0 && !exited_)
		::kill(pid_, sig);
}

} // namespace procimage::core
