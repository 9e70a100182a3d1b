// SPDX-License-Identifier: Apache-2.0
//
// The control channel between a running host and procimage-ctl, one JSON request and one JSON
// reply per connection. A host running as root listens on /run/procimage/<name>.sock: only
// root can create a file in that root-owned directory, so no other user can take the name
// first. A host without root (capabilities only) cannot write there and listens on the
// abstract socket "@procimage/<name>" instead, which anyone could have bound: the controller
// tries the file first, then the abstract name, and trusts neither end unless the kernel says
// it is root or the caller's own user (SO_PEERCRED); the host checks its callers the same way.
#pragma once

#include "result.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <sys/types.h>

namespace procimage::core {

std::string control_address(const std::string &name);
// Where a root host's channel lives: CONTROL_DIR/<name>.sock
constexpr const char *CONTROL_DIR = "/run/procimage";
std::string control_path(const std::string &name);
// A name fits the socket address whole (a longer one is refused, never cut), EXIT_USAGE.
result<void> check_control_name(const std::string &name);

class control_server {
public:
	control_server() = default;
	control_server(const control_server &) = delete;
	control_server &operator=(const control_server &) = delete;
	~control_server();

	// Bind the channel; fails when another host holds it (the error names its pid).
	result<void> listen(const std::string &name);
	int fd() const { return fd_; }
	bool listening() const { return fd_ >= 0; }
	const std::string &name() const { return name_; }

	struct request {
		int conn = -1;
		uid_t uid = 0;
		pid_t pid = 0;
		nlohmann::json body;
	};
	// Accept one connection and read its request (bounded wait); errors are answered here.
	result<request> accept_request();
	static void reply(int conn, const nlohmann::json &body);

private:
	int fd_ = -1;
	std::string name_;
	std::string path_; // the socket file this host created, removed at its end
	ino_t ino_ = 0;
};

// CLOCK_MONOTONIC, the clock of a request's "deadline_ns" (one clock for the whole machine).
uint64_t monotonic_ns();

// Client side: send one request, wait for the reply (timeout in ms).
result<nlohmann::json> control_call(const std::string &name, const nlohmann::json &request, int timeout_ms);

} // namespace procimage::core
