// SPDX-License-Identifier: Apache-2.0
#include "cgroup.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <functional>
#include <fstream>
#include <map>
#include <sstream>
#include <sys/stat.h>
#include <sys/statfs.h>

namespace procimage::core::cgroup {

namespace fs = std::filesystem;

namespace {

constexpr long CGROUP2_MAGIC = 0x63677270; // statfs f_type of cgroup2 (linux/magic.h)

// mountinfo escapes space, tab, newline and backslash as \ooo
std::string unescape(const std::string &s)
{
	std::string out;
	for (size_t i = 0; i < s.size(); i++) {
		if (s[i] == '\\' && i + 3 < s.size() &&
		    std::all_of(s.begin() + i + 1, s.begin() + i + 4, [](char c) { return c >= '0' && c <= '7'; })) {
			out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
			i += 3;
		} else {
			out += s[i];
		}
	}
	return out;
}

// Components of a path below "/" ("/" → 0, "/a/b" → 2).
uint32_t depth(const std::string &p)
{
	uint32_t n = 0;
	for (const auto &c : fs::path(p).relative_path())
		if (!c.empty() && c != ".")
			n++;
	return n;
}

bool is_hex(const std::string &s)
{
	return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool has_suffix(const std::string &s, const std::string &suf)
{
	return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

} // namespace

void for_each_dir(const std::string &root, const std::function<void(const fs::path &)> &each)
{
	std::error_code ec;
	fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec), end;
	for (; !ec && it != end; it.increment(ec)) {
		std::error_code e2;
		if (it->is_symlink(e2) || !it->is_directory(e2)) {
			if (it->is_symlink(e2))
				it.disable_recursion_pending();
			continue;
		}
		each(it->path());
	}
}

namespace {

std::string rel_to(const std::string &root, const fs::path &p)
{
	std::string r = p.lexically_relative(root).string();
	return "/" + (r == "." ? std::string() : r);
}

std::string list_some(const std::vector<std::string> &v)
{
	std::string s;
	for (size_t i = 0; i < v.size() && i < 4; i++)
		s += (i ? ", " : "") + v[i];
	if (v.size() > 4)
		s += ", and " + std::to_string(v.size() - 4) + " more";
	return s;
}

} // namespace

std::optional<mount> find_v2_mount(const std::string &mountinfo)
{
	std::ifstream in(mountinfo);
	std::string line;
	std::optional<mount> found;
	while (std::getline(in, line)) {
		std::istringstream ls(line);
		std::vector<std::string> f;
		std::string w;
		while (ls >> w)
			f.push_back(w);
		auto dash = std::find(f.begin(), f.end(), "-");
		if (f.size() < 5 || dash == f.end() || dash + 1 == f.end() || *(dash + 1) != "cgroup2")
			continue;
		mount m{unescape(f[4]), unescape(f[3])};
		if (m.root == "/")
			return m;
		if (!found)
			found = m;
	}
	return found;
}

result<mount> v2_mount(const std::string &mountinfo)
{
	auto m = find_v2_mount(mountinfo);
	if (!m)
		return usage_error("no cgroup v2 hierarchy is mounted (no file system of type cgroup2 in " + mountinfo +
				   "): mount one, e.g. mount -t cgroup2 none /sys/fs/cgroup/unified");
	return *m;
}

std::optional<uint64_t> cgroup_id(const std::string &path)
{
	// The file handle of a cgroup2 directory is its kernfs id, 8 bytes.
	struct {
		struct file_handle fh;
		unsigned char bytes[16];
	} h{};
	h.fh.handle_bytes = sizeof h.bytes;
	int mount_id = 0;
	if (name_to_handle_at(AT_FDCWD, path.c_str(), &h.fh, &mount_id, 0) == 0 && h.fh.handle_bytes == 8) {
		uint64_t id;
		std::memcpy(&id, h.fh.f_handle, sizeof id);
		return id;
	}
	// without file handles: the inode number is the same id on 64-bit kernels
	struct stat st{};
	if (stat(path.c_str(), &st) != 0)
		return std::nullopt;
	return static_cast<uint64_t>(st.st_ino);
}

std::optional<std::string> partial_view(const mount &m, const std::string &proc)
{
	struct stat self{}, init{};
	bool own_ns = stat((proc + "/self/ns/cgroup").c_str(), &self) == 0 &&
		      stat((proc + "/1/ns/cgroup").c_str(), &init) == 0 && self.st_ino != init.st_ino;
	auto top = cgroup_id(m.path);
	bool part = top && *top != 1;
	if (!own_ns && !part)
		return std::nullopt;
	return std::string("procimage sees only part of the cgroup v2 hierarchy (") +
	       (own_ns ? "it runs in a cgroup namespace of its own" : "the mount at " + m.path + " shows a cgroup below the root") +
	       "): cgroups outside it can be neither targeted nor named in records; run it in the host's cgroup "
	       "namespace, e.g. nsenter --target 1 --cgroup --mount procimage ...";
}

result<dir> resolve_path(const mount &m, const std::string &path)
{
	if (path.empty())
		return usage_error("--cgroup: give a cgroup v2 directory (absolute, or relative to " + m.path + ")");
	fs::path given = path[0] == '/' ? fs::path(path) : fs::path(m.path) / path;
	std::error_code ec;
	fs::path canon = fs::canonical(given, ec);
	if (ec)
		return usage_error("--cgroup " + path + ": no such cgroup (" + given.string() + ": " + ec.message() + ")");
	if (!fs::is_directory(canon, ec))
		return usage_error("--cgroup " + path + ": " + canon.string() + " is not a directory");
	struct statfs sf{};
	if (statfs(canon.c_str(), &sf) != 0)
		return usage_error("--cgroup " + path + ": " + canon.string() + ": " + std::strerror(errno));
	if (static_cast<long>(sf.f_type) != CGROUP2_MAGIC)
		return usage_error("--cgroup " + path + ": " + canon.string() +
				   " is not a cgroup v2 directory (the v2 hierarchy is mounted at " + m.path + ")");
	dir d;
	d.path = canon.string();
	fs::path mcanon = fs::canonical(m.path, ec);
	std::string below = ec ? std::string() : canon.lexically_relative(mcanon).string();
	if (!ec && !below.empty() && below.rfind("..", 0) != 0) {
		// under the mount: its depth there, plus the mount's own below the root
		uint32_t under = below == "." ? 0 : depth("/" + below);
		d.min_level = under + depth(m.root);
		d.rel = (m.root == "/" ? std::string() : m.root) + (below == "." ? std::string() : "/" + below);
		if (d.rel.empty())
			d.rel = "/";
	} else {
		d.min_level = 0; // another mount of the hierarchy: nothing known of the depth, 0 is safe
		d.rel = d.path;
	}
	auto id = cgroup_id(d.path);
	if (!id)
		return runtime_error("--cgroup " + path + ": cannot read the cgroup id of " + d.path + ": " + std::strerror(errno));
	d.id = *id;
	return d;
}

result<std::string> find_unit(const std::string &root, const std::string &name)
{
	if (name.empty() || name.find('/') != std::string::npos)
		return usage_error("--unit: expected a systemd unit name such as cron or cron.service, got \"" + name + "\"");
	static const char *const SUFFIXES[] = {".service", ".scope", ".slice"};
	std::vector<std::string> wanted;
	bool suffixed = std::any_of(std::begin(SUFFIXES), std::end(SUFFIXES), [&](const char *s) { return has_suffix(name, s); });
	if (suffixed)
		wanted.push_back(name);
	else
		for (const char *s : SUFFIXES)
			wanted.push_back(name + s);
	std::vector<std::string> hits;
	for_each_dir(root, [&](const fs::path &p) {
		if (std::find(wanted.begin(), wanted.end(), p.filename().string()) != wanted.end())
			hits.push_back(p.string());
	});
	std::sort(hits.begin(), hits.end());
	if (hits.empty())
		return usage_error("--unit " + name + ": no cgroup of a unit named " +
				   (suffixed ? name : name + ".service, .scope or .slice") + " under " + root +
				   " (is the unit running, and is systemd managing this machine?)");
	if (hits.size() > 1) {
		std::vector<std::string> rels;
		for (const auto &h : hits)
			rels.push_back(rel_to(root, h));
		return usage_error("--unit " + name + ": " + std::to_string(hits.size()) + " units match (" + list_some(rels) +
				   "): give the whole name, or the cgroup with --cgroup");
	}
	return hits.front();
}

result<std::string> find_container(const std::string &root, const std::string &prefix)
{
	std::string want = prefix;
	std::transform(want.begin(), want.end(), want.begin(), [](unsigned char c) { return std::tolower(c); });
	if (!is_hex(want) || want.size() > 64)
		return usage_error("--container: expected a container id or a prefix of it (hex digits), got \"" + prefix + "\"");
	static const char *const PREFIXES[] = {"docker-", "cri-containerd-", "crio-", "libpod-"};
	std::map<std::string, std::vector<std::string>> by_id; // full id -> directories
	for_each_dir(root, [&](const fs::path &p) {
		std::string b = p.filename().string();
		if (has_suffix(b, ".scope"))
			b.resize(b.size() - 6);
		for (const char *pre : PREFIXES)
			if (b.rfind(pre, 0) == 0) {
				b = b.substr(std::strlen(pre));
				break;
			}
		// docker's and containerd's cgroupfs drivers name the directory by the bare id
		if (b.size() != 64 || !is_hex(b) || b.compare(0, want.size(), want) != 0)
			return;
		by_id[b].push_back(p.string());
	});
	if (by_id.empty())
		return usage_error("--container " + prefix + ": no container cgroup whose id starts with " + want + " under " + root +
				   " (looked for docker-ID.scope, docker/ID, cri-containerd-ID.scope, crio-ID.scope, libpod-ID.scope)");
	if (by_id.size() > 1) {
		std::vector<std::string> ids;
		for (const auto &[id, _] : by_id)
			ids.push_back(id.substr(0, 12));
		return usage_error("--container " + prefix + ": " + std::to_string(by_id.size()) + " containers match (" +
				   list_some(ids) + "): give more of the id");
	}
	// One container: its top-most directory (a runtime may nest one for the same id)
	auto dirs = by_id.begin()->second;
	std::sort(dirs.begin(), dirs.end(), [](const std::string &a, const std::string &b) {
		return a.size() != b.size() ? a.size() < b.size() : a < b;
	});
	return dirs.front();
}

std::optional<std::string> pid_cgroup(uint32_t pid, const std::string &proc)
{
	std::ifstream in(proc + "/" + std::to_string(pid) + "/cgroup");
	std::string line;
	while (std::getline(in, line))
		if (line.rfind("0::", 0) == 0)
			return line.substr(3);
	return std::nullopt;
}

std::optional<std::string> pid_cgroup_dir(uint32_t pid, const mount &m, const std::string &proc)
{
	auto rel = pid_cgroup(pid, proc);
	if (!rel)
		return std::nullopt;
	std::string r = *rel;
	if (m.root != "/") {
		if (r != m.root && r.rfind(m.root + "/", 0) != 0)
			return std::nullopt;
		r = r.substr(m.root.size());
	}
	if (r.empty() || r == "/")
		return m.path;
	return m.path + r;
}

} // namespace procimage::core::cgroup
