// SPDX-License-Identifier: Apache-2.0
//
// The control channel between a running host and procimage-ctl: an abstract Unix socket
// ("@procimage/<name>", so nothing is left behind when a host is killed), one JSON request
// and one JSON reply per connection. The host checks the peer's credentials: only root or
// the host's own user may control it.
#pragma once

#include "result.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <sys/types.h>

namespace procimage::core {

std::string control_address(const std::string &name);
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
};

// CLOCK_MONOTONIC, the clock of a request's "deadline_ns" (one clock for the whole machine).
uint64_t monotonic_ns();

// Client side: send one request, wait for the reply (timeout in ms).
result<nlohmann::json> control_call(const std::string &name, const nlohmann::json &request, int timeout_ms);

} // namespace procimage::core
