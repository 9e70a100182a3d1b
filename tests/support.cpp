// SPDX-License-Identifier: Apache-2.0
#include "support.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>
#include <chrono>
#include <sstream>
#include <stdexcept>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace procimage::test {

namespace fs = std::filesystem;

run_result run(const std::vector<std::string> &argv, const std::map<std::string, std::string> &env)
{
	int out[2], err[2];
	if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0)
		throw std::runtime_error("pipe failed");
	pid_t pid = fork();
	if (pid == 0) {
		dup2(out[1], 1);
		dup2(err[1], 2);
		for (const auto &[k, v] : env)
			setenv(k.c_str(), v.c_str(), 1);
		std::vector<char *> args;
		for (const auto &a : argv)
			args.push_back(const_cast<char *>(a.c_str()));
		args.push_back(nullptr);
		execvp(args[0], args.data());
		dprintf(2, "exec %s: %s\n", args[0], strerror(errno));
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	run_result r;
	pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
	int open_fds = 2;
	char buf[65536];
	while (open_fds > 0) {
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int i = 0; i < 2; i++) {
			if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t n = read(fds[i].fd, buf, sizeof buf);
			if (n <= 0) {
				close(fds[i].fd);
				fds[i].fd = -1;
				open_fds--;
			} else {
				(i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
			}
		}
	}
	int st = 0;
	waitpid(pid, &st, 0);
	r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return r;
}

run_result sh(const std::string &cmd) { return run({"/bin/sh", "-c", cmd}); }

bool is_root() { return geteuid() == 0; }

namespace {
std::vector<std::string> skipped;
}

void note_skipped(const std::string &test_case)
{
	if (std::find(skipped.begin(), skipped.end(), test_case) == skipped.end())
		skipped.push_back(test_case);
}

const std::vector<std::string> &skipped_cases() { return skipped; }

std::string build_dir() { return PROCIMAGE_TEST_BUILD_DIR; }
std::string source_dir() { return PROCIMAGE_TEST_SOURCE_DIR; }
std::string procimage_bin() { return build_dir() + "/procimage"; }

temp_dir::temp_dir()
{
	char tmpl[] = "/tmp/procimage-test-XXXXXX";
	if (!mkdtemp(tmpl))
		throw std::runtime_error("mkdtemp failed");
	path_ = tmpl;
	chmod(path_.c_str(), 0755);
}

temp_dir::~temp_dir()
{
	std::error_code ec;
	if (!std::getenv("PROCIMAGE_TEST_KEEP"))
		fs::remove_all(path_, ec);
}

std::string world_readable_build(const temp_dir &dir)
{
	fs::path bin = fs::path(dir.path()) / "bin";
	fs::create_directories(bin / "plugins");
	fs::copy_file(fs::path(build_dir()) / "procimage", bin / "procimage");
	fs::copy_file(fs::path(build_dir()) / "procimage-ctl", bin / "procimage-ctl");
	for (const auto &e : fs::directory_iterator(fs::path(build_dir()) / "plugins"))
		if (e.path().extension() == ".so")
			fs::copy_file(e.path(), bin / "plugins" / e.path().filename());
	for (const auto &e : fs::recursive_directory_iterator(bin))
		fs::permissions(e.path(), e.is_directory() || e.path().extension() != ".so" ? fs::perms(0755) : fs::perms(0644));
	fs::permissions(bin, fs::perms(0755));
	return bin.string();
}

std::string read_file(const std::string &path)
{
	std::ifstream in(path);
	std::stringstream ss;
	ss << in.rdbuf();
	return ss.str();
}

void write_file(const std::string &path, const std::string &text)
{
	std::ofstream o(path);
	o << text;
}

namespace {

// Records the tests read, kept for the schema check at the end of the run (at most
// SCHEMA_SAMPLE_PER_TYPE of each plugin and event, so a test of 100,000 records costs seconds).
constexpr size_t SCHEMA_SAMPLE_PER_TYPE = 3000;
std::map<std::string, std::vector<std::string>> &schema_sample()
{
	static std::map<std::string, std::vector<std::string>> sample;
	return sample;
}

void keep_for_schema_check(const nlohmann::json &r, const std::string &line)
{
	if (!r.is_object() || !r.contains("event") || !r.contains("probe"))
		return;
	auto plugin = r.contains("plugin") ? r["plugin"] : r["probe"];
	if (!plugin.is_string() || !r["event"].is_string())
		return;
	auto &kept = schema_sample()[plugin.get<std::string>() + "." + r["event"].get<std::string>()];
	if (kept.size() < SCHEMA_SAMPLE_PER_TYPE)
		kept.push_back(line);
}

} // namespace

std::vector<nlohmann::json> read_jsonl(const std::string &path, bool schema_check)
{
	std::vector<nlohmann::json> out;
	std::ifstream in(path);
	std::string line;
	while (std::getline(in, line))
		if (!line.empty()) {
			out.push_back(nlohmann::json::parse(line));
			if (schema_check)
				keep_for_schema_check(out.back(), line);
		}
	return out;
}

int free_port()
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a);
	socklen_t len = sizeof a;
	getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len);
	close(fd);
	return ntohs(a.sin_port);
}

http_reply http_get(int port, const std::string &target, const std::string &accept)
{
	http_reply r;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return r;
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_port = htons(static_cast<uint16_t>(port));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
		close(fd);
		return r;
	}
	std::string req = "GET " + target + " HTTP/1.0\r\nHost: 127.0.0.1\r\n";
	if (!accept.empty())
		req += "Accept: " + accept + "\r\n";
	req += "\r\n";
	if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
		close(fd);
		return r;
	}
	std::string all;
	char buf[65536];
	ssize_t n;
	while ((n = read(fd, buf, sizeof buf)) > 0)
		all.append(buf, static_cast<size_t>(n));
	close(fd);
	auto end = all.find("\r\n\r\n");
	if (all.size() < 12 || end == std::string::npos)
		return r;
	r.status = std::atoi(all.c_str() + 9);
	r.headers = all.substr(0, end);
	r.body = all.substr(end + 4);
	return r;
}

const std::string &record_schema()
{
	static const std::string text = [] {
		auto r = run({procimage_bin(), "--print-schema"}, {{"ASAN_OPTIONS", "detect_leaks=0"}});
		if (r.status != 0)
			throw std::runtime_error("procimage --print-schema failed: " + r.err);
		return r.out;
	}();
	return text;
}

int check_records_against_schema()
{
	size_t n = 0;
	for (const auto &[_, lines] : schema_sample())
		n += lines.size();
	if (n == 0)
		return 0;
	temp_dir d;
	std::string schema = d.file("records.schema.json"), records = d.file("records.jsonl");
	// (an instrumented build's leak report at exit would fail every case here; leaks are the
	// concern of the tests that run the program, not of this check)
	if (std::system(("ASAN_OPTIONS=detect_leaks=0 " + quote(procimage_bin()) + " --print-schema > " + quote(schema))
				.c_str()) != 0) {
		std::printf("record schema check: procimage --print-schema failed\n");
		return 1;
	}
	{
		std::ofstream out(records);
		for (const auto &[_, lines] : schema_sample())
			for (const auto &l : lines)
				out << l << '\n';
	}
	std::string cmd = "/usr/bin/python3 " + quote(source_dir() + "/tests/tools/validate_records.py") + " " +
			  quote(schema) + " " + quote(records);
	int rc = std::system(cmd.c_str());
	if (rc != 0) {
		std::printf("record schema check: %zu records read by the tests, some do not validate (above)\n", n);
		return 1;
	}
	return 0;
}

std::string quote(const std::string &word)
{
	std::string q = "'";
	for (char c : word)
		q += c == '\'' ? std::string("'\\''") : std::string(1, c);
	return q + "'";
}

bool wait_for_record(const std::string &path, const std::function<bool(const nlohmann::json &)> &pred,
		     int timeout_ms)
{
	auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
	for (;;) {
		std::ifstream in(path);
		std::string line;
		while (std::getline(in, line)) {
			if (in.eof())
				break; // no newline yet: still being written
			auto rec = nlohmann::json::parse(line, nullptr, false);
			if (!rec.is_discarded() && pred(rec))
				return true;
		}
		if (std::chrono::steady_clock::now() >= deadline)
			return false;
		std::this_thread::sleep_for(std::chrono::milliseconds(20));
	}
}

std::vector<nlohmann::json> select_records(const std::vector<nlohmann::json> &recs, const std::string &probe,
					   const std::string &event,
					   const std::function<bool(const nlohmann::json &)> &pred)
{
	std::vector<nlohmann::json> out;
	for (const auto &r : recs)
		if (r.value("probe", "") == probe && r.value("event", "") == event && (!pred || pred(r)))
			out.push_back(r);
	return out;
}

std::map<std::string, long> read_kv(const std::string &path)
{
	std::map<std::string, long> out;
	std::ifstream in(path);
	std::string line;
	while (std::getline(in, line)) {
		auto eq = line.find('=');
		if (eq != std::string::npos)
			out[line.substr(0, eq)] = std::stol(line.substr(eq + 1));
	}
	return out;
}

} // namespace procimage::test
