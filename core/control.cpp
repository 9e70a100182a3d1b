// SPDX-License-Identifier: Apache-2.0
#include "control.hpp"

#include <cerrno>
#include <cstring>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace procimage::core {

namespace {

constexpr size_t MAX_MESSAGE = 1 << 20;

socklen_t make_addr(const std::string &name, sockaddr_un &addr)
{
	std::memset(&addr, 0, sizeof addr);
	addr.sun_family = AF_UNIX;
	std::string path = control_address(name);
	// abstract namespace: leading NUL, not NUL-terminated
	size_t n = std::min(path.size(), sizeof(addr.sun_path) - 1);
	std::memcpy(addr.sun_path + 1, path.data(), n);
	return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n);
}

// Read until EOF or a newline, with a deadline.
result<std::string> read_message(int fd, int timeout_ms)
{
	std::string buf;
	char chunk[4096];
	while (buf.size() < MAX_MESSAGE) {
		pollfd p{fd, POLLIN, 0};
		int r = poll(&p, 1, timeout_ms);
		if (r == 0)
			return runtime_error("no answer within " + std::to_string(timeout_ms) + " ms");
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return runtime_error(std::string("poll: ") + std::strerror(errno));
		}
		ssize_t n = read(fd, chunk, sizeof chunk);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return runtime_error(std::string("read: ") + std::strerror(errno));
		}
		if (n == 0)
			break;
		buf.append(chunk, static_cast<size_t>(n));
		if (buf.back() == '\n')
			break;
	}
	return buf;
}

bool write_all(int fd, const std::string &s)
{
	size_t off = 0;
	while (off < s.size()) {
		ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		off += static_cast<size_t>(n);
	}
	return true;
}

} // namespace

std::string control_address(const std::string &name) { return "procimage/" + name; }

control_server::~control_server()
{
	if (fd_ >= 0)
		close(fd_);
}

result<void> control_server::listen(const std::string &name)
{
	name_ = name;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return runtime_error(std::string("control channel: socket: ") + std::strerror(errno));
	sockaddr_un addr;
	socklen_t len = make_addr(name, addr);
	if (bind(fd, reinterpret_cast<sockaddr *>(&addr), len) != 0) {
		int e = errno;
		close(fd);
		if (e == EADDRINUSE) {
			std::string who;
			auto st = control_call(name, {{"cmd", "ping"}}, 1000);
			if (st && st->contains("host_pid"))
				who = " (pid " + std::to_string((*st)["host_pid"].get<long>()) + ")";
			return runtime_error("another procimage host" + who + " already holds the control channel \"" +
					     name + "\": finish it with procimage-ctl -f, or give this one another --name");
		}
		return runtime_error(std::string("control channel: bind: ") + std::strerror(e));
	}
	if (::listen(fd, 8) != 0) {
		int e = errno;
		close(fd);
		return runtime_error(std::string("control channel: listen: ") + std::strerror(e));
	}
	fd_ = fd;
	return {};
}

result<control_server::request> control_server::accept_request()
{
	int conn = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
	if (conn < 0)
		return runtime_error(std::string("accept: ") + std::strerror(errno));
	request req;
	req.conn = conn;
	ucred cred{};
	socklen_t clen = sizeof cred;
	if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0) {
		reply(conn, {{"ok", false}, {"error", "cannot read the caller's credentials"}});
		return runtime_error("control: cannot read peer credentials");
	}
	req.uid = cred.uid;
	req.pid = cred.pid;
	// Anyone can connect to an abstract socket: refuse strangers before reading a byte, so
	// they cannot hold the host's loop.
	if (cred.uid != 0 && cred.uid != getuid()) {
		reply(conn, {{"ok", false},
			     {"error", "permission denied: only root or uid " + std::to_string(getuid()) +
					       " may control this procimage host"}});
		return runtime_error("control: refused uid " + std::to_string(cred.uid));
	}
	auto msg = read_message(conn, 1000);
	if (!msg) {
		reply(conn, {{"ok", false}, {"error", msg.err().msg}});
		return msg.err();
	}
	try {
		req.body = nlohmann::json::parse(*msg);
	} catch (const std::exception &e) {
		reply(conn, {{"ok", false}, {"error", std::string("malformed request: ") + e.what()}});
		return runtime_error("control: malformed request");
	}
	return req;
}

void control_server::reply(int conn, const nlohmann::json &body)
{
	write_all(conn, body.dump() + "\n");
	close(conn);
}

result<nlohmann::json> control_call(const std::string &name, const nlohmann::json &request, int timeout_ms)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return runtime_error(std::string("socket: ") + std::strerror(errno));
	sockaddr_un addr;
	socklen_t len = make_addr(name, addr);
	if (connect(fd, reinterpret_cast<sockaddr *>(&addr), len) != 0) {
		int e = errno;
		close(fd);
		if (e == ECONNREFUSED || e == ENOENT)
			return runtime_error("no procimage host is running" +
					     std::string(name == "default" ? "" : " with --name " + name) +
					     " (start one with: procimage -a)");
		return runtime_error(std::string("cannot reach the procimage host: ") + std::strerror(e));
	}
	// A host that refuses the caller answers without reading: read its answer even when
	// sending failed.
	bool sent = write_all(fd, request.dump() + "\n");
	int send_errno = errno;
	shutdown(fd, SHUT_WR);
	auto msg = read_message(fd, timeout_ms);
	close(fd);
	if (!msg || msg->empty()) {
		if (!sent)
			return runtime_error(std::string("cannot send to the procimage host: ") + std::strerror(send_errno));
		return msg ? runtime_error("the procimage host closed the connection without an answer")
			   : msg.err().context("procimage host");
	}
	try {
		return nlohmann::json::parse(*msg);
	} catch (const std::exception &e) {
		return runtime_error(std::string("malformed reply from the procimage host: ") + e.what());
	}
}

} // namespace procimage::core
