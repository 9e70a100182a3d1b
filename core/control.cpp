// SPDX-License-Identifier: Apache-2.0
#include "control.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <ctime>

#include <poll.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace procimage::core {

namespace {

constexpr size_t MAX_MESSAGE = 1 << 20;

// Abstract namespace: a leading NUL, then the address, not NUL-terminated.
constexpr size_t MAX_ADDRESS = sizeof(sockaddr_un::sun_path) - 1;

// The socket file of a root host's channel.
socklen_t make_path_addr(const std::string &name, sockaddr_un &addr)
{
	std::memset(&addr, 0, sizeof addr);
	addr.sun_family = AF_UNIX;
	std::string path = control_path(name);
	std::memcpy(addr.sun_path, path.data(), path.size()); // check_control_name bounds it
	return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
}

socklen_t make_addr(const std::string &name, sockaddr_un &addr)
{
	std::memset(&addr, 0, sizeof addr);
	addr.sun_family = AF_UNIX;
	std::string path = control_address(name);
	std::memcpy(addr.sun_path + 1, path.data(), path.size()); // check_control_name bounds it
	return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + path.size());
}

// Who holds the other end of a connected Unix socket, as the kernel knows it (not as the peer claims).
result<ucred> peer_of(int fd)
{
	ucred cred{};
	socklen_t clen = sizeof cred;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0)
		return runtime_error(std::string("cannot read the peer's credentials: ") + std::strerror(errno));
	return cred;
}

std::string peer_text(const ucred &c)
{
	return "pid " + std::to_string(c.pid) + ", uid " + std::to_string(c.uid);
}

// Root, or the user this process runs as: the only peers either end of the channel trusts.
bool trusted_uid(uid_t uid) { return uid == 0 || uid == geteuid() || uid == getuid(); }

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

uint64_t monotonic_ns()
{
	timespec ts{};
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

std::string control_address(const std::string &name) { return "procimage/" + name; }

std::string control_path(const std::string &name) { return std::string(CONTROL_DIR) + "/" + name + ".sock"; }

result<void> check_control_name(const std::string &name)
{
	if (name.empty())
		return usage_error("--name: give a name for the control channel");
	size_t room = std::min(MAX_ADDRESS - control_address("").size(), MAX_ADDRESS - control_path("").size());
	if (name.size() > room)
		return usage_error("--name: \"" + name + "\" is " + std::to_string(name.size()) +
				   " bytes; a control channel name has at most " + std::to_string(room));
	if (name.find('\0') != std::string::npos)
		return usage_error("--name: a NUL byte in the name");
	if (name.find('/') != std::string::npos || name == "." || name == "..")
		return usage_error("--name: \"" + name + "\" is not a plain name (no '/', not . or ..)");
	return {};
}

namespace {

// Who holds a taken channel, from the kernel's credentials of the listening process.
std::string holder_text(const std::string &name, bool file)
{
	std::string what = "the control channel \"" + name + "\" is already held";
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return what;
	sockaddr_un addr;
	socklen_t len = file ? make_path_addr(name, addr) : make_addr(name, addr);
	if (connect(fd, reinterpret_cast<sockaddr *>(&addr), len) == 0) {
		if (auto c = peer_of(fd)) {
			what += " by " + peer_text(*c);
			if (!trusted_uid(c->uid))
				what += " (neither root nor this user: not a procimage host of yours)";
			else
				what += " (another procimage host)";
		}
	}
	close(fd);
	return what;
}

// CONTROL_DIR, made if missing; it must be a directory of root's that no one else may write
// to, or a file in it could be someone else's.
result<void> root_control_dir()
{
	if (mkdir(CONTROL_DIR, 0755) != 0 && errno != EEXIST)
		return runtime_error(std::string("control channel: cannot create ") + CONTROL_DIR + ": " + std::strerror(errno));
	struct stat st{};
	if (lstat(CONTROL_DIR, &st) != 0)
		return runtime_error(std::string("control channel: ") + CONTROL_DIR + ": " + std::strerror(errno));
	if (!S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022))
		return runtime_error(std::string("control channel: ") + CONTROL_DIR +
				     " is not a directory of root's that only root may write to: remove it");
	return {};
}

} // namespace

control_server::~control_server()
{
	if (fd_ >= 0)
		close(fd_);
	// the file, if it is still the one this host bound (a later host may have replaced it)
	struct stat st{};
	if (!path_.empty() && lstat(path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == ino_)
		unlink(path_.c_str());
}

result<void> control_server::listen(const std::string &name)
{
	name_ = name;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return runtime_error(std::string("control channel: socket: ") + std::strerror(errno));
	if (auto r = check_control_name(name); !r) {
		close(fd);
		return r.err();
	}
	sockaddr_un addr;
	const bool file = geteuid() == 0;
	socklen_t len;
	if (file) {
		// root: the socket file, where no other user can be first
		if (auto r = root_control_dir(); !r) {
			close(fd);
			return r.err();
		}
		len = make_path_addr(name, addr);
		// a file left by a host that was killed answers no connection: it goes
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0) {
			if (connect(probe, reinterpret_cast<sockaddr *>(&addr), len) != 0 && errno == ECONNREFUSED)
				unlink(control_path(name).c_str());
			close(probe);
		}
	} else {
		len = make_addr(name, addr);
	}
	if (bind(fd, reinterpret_cast<sockaddr *>(&addr), len) != 0) {
		int e = errno;
		close(fd);
		if (e == EADDRINUSE)
			return runtime_error(holder_text(name, file) + ": finish it with procimage-ctl -f, or give this host "
									"another --name");
		return runtime_error(std::string("control channel: bind: ") + std::strerror(e));
	}
	if (file) {
		path_ = control_path(name);
		struct stat st{};
		if (lstat(path_.c_str(), &st) == 0)
			ino_ = st.st_ino;
		// anyone may connect: the host answers strangers with a refusal (their credentials)
		chmod(path_.c_str(), 0666);
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
	auto peer = peer_of(conn);
	if (!peer) {
		reply(conn, {{"ok", false}, {"error", "cannot read the caller's credentials"}});
		return peer.err().context("control");
	}
	const ucred cred = *peer;
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
	if (!req.body.is_object()) {
		reply(conn, {{"ok", false}, {"error", "malformed request: not a JSON object"}});
		return runtime_error("control: malformed request");
	}
	// A request read after its deadline has already been reported as failed by its
	// controller: it is not applied.
	if (auto d = req.body.find("deadline_ns"); d != req.body.end()) {
		if (!d->is_number_unsigned()) {
			reply(conn, {{"ok", false}, {"error", "malformed request: deadline_ns is not a number"}});
			return runtime_error("control: malformed request");
		}
		uint64_t now = monotonic_ns();
		if (now > d->get<uint64_t>()) {
			std::string late = std::to_string((now - d->get<uint64_t>()) / 1000000);
			reply(conn, {{"ok", false}, {"error", "the request arrived " + late + " ms after its deadline: not applied"}});
			return runtime_error("control: a request from pid " + std::to_string(cred.pid) + " arrived " + late +
					     " ms after its deadline; not applied");
		}
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
	if (auto r = check_control_name(name); !r)
		return r.err();
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return runtime_error(std::string("socket: ") + std::strerror(errno));
	// a root host's socket file first, then the abstract name of a host without root
	sockaddr_un addr;
	socklen_t len = make_path_addr(name, addr);
	int e = 0;
	if (connect(fd, reinterpret_cast<sockaddr *>(&addr), len) != 0) {
		e = errno;
		if (e == ENOENT || e == ECONNREFUSED) {
			len = make_addr(name, addr);
			e = connect(fd, reinterpret_cast<sockaddr *>(&addr), len) == 0 ? 0 : errno;
		}
	}
	if (e != 0) {
		close(fd);
		if (e == ECONNREFUSED || e == ENOENT)
			return runtime_error("no procimage host is running" +
					     std::string(name == "default" ? "" : " with --name " + name) +
					     " (start one with: procimage -a)");
		return runtime_error(std::string("cannot reach the procimage host: ") + std::strerror(e));
	}
	// An abstract name can be bound by anyone: send nothing (no target, no request) to a
	// process that is neither root nor this user.
	auto peer = peer_of(fd);
	if (!peer || !trusted_uid(peer->uid)) {
		std::string who = peer ? peer_text(*peer) : peer.err().msg;
		close(fd);
		return runtime_error("the control channel \"" + name + "\" is held by " + who +
				     ", neither root nor this user: not a procimage host to trust; nothing was sent");
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
