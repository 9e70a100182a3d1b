// SPDX-License-Identifier: Apache-2.0
#include "plugin_loader.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <unistd.h>

namespace procimage::core {

namespace fs = std::filesystem;

std::string plugin_file_name(pi_plugin_kind kind, const std::string &name)
{
	return std::string(kind == PI_KIND_PROBE ? "probe_" : "sink_") + name + ".so";
}

const char *kind_name(uint32_t kind)
{
	return kind == PI_KIND_PROBE ? "probe" : kind == PI_KIND_SINK ? "sink" : "unknown";
}

static std::string ver(uint32_t major, uint32_t minor)
{
	return std::to_string(major) + "." + std::to_string(minor);
}

result<void> check_plugin_dir(const std::string &dir)
{
	std::error_code ec;
	auto st = fs::status(dir, ec);
	if (ec)
		return usage_error(dir + ": " + ec.message());
	if (!fs::is_directory(st))
		return usage_error(dir + ": not a directory");
	fs::directory_iterator it(dir, ec);
	if (ec)
		return usage_error(dir + ": cannot read the plugin directory: " + ec.message());
	return {};
}

namespace {

// Whether PATH exists; an error other than "no such file" (a directory one may not search) is
// an error naming the path, never an exception.
result<bool> plugin_file_exists(const fs::path &path)
{
	std::error_code ec;
	bool there = fs::exists(path, ec);
	if (ec)
		return usage_error("cannot look for " + path.string() + ": " + ec.message());
	return there;
}

// A file that is not an ELF object is named as such, before the dynamic loader gives its own
// (sometimes stale) reason.
result<void> check_elf(const std::string &path)
{
	std::ifstream in(path, std::ios::binary);
	if (!in)
		return runtime_error("plugin " + path + ": cannot open: " + std::strerror(errno));
	char magic[4] = {};
	in.read(magic, sizeof magic);
	if (in.gcount() != 4 || std::memcmp(magic, "\x7f" "ELF", 4) != 0)
		return runtime_error("plugin " + path + ": not an ELF shared object");
	return {};
}

} // namespace

result<plugin_ptr> load_plugin(const std::string &path)
{
	auto p = std::make_shared<loaded_plugin>();
	p->path = path;
	if (auto r = check_elf(path); !r)
		return r.err();
	try {
		p->lib.load(path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
	} catch (const std::exception &e) {
		return runtime_error("plugin " + path + ": cannot load: " + e.what());
	}
	if (!p->lib.has(PI_ENTRY_SYMBOL))
		return runtime_error("plugin " + path + ": not a procimage plugin (no " PI_ENTRY_SYMBOL
				     " symbol; export it with PROCIMAGE_PLUGIN_ENTRY)");
	pi_plugin_entry_fn entry = nullptr;
	try {
		// The symbol holds a pointer to the entry function (Boost.DLL alias layout).
		entry = reinterpret_cast<pi_plugin_entry_fn>(
			const_cast<void *>(p->lib.get<const void *>(PI_ENTRY_SYMBOL)));
	} catch (const std::exception &e) {
		return runtime_error("plugin " + path + ": " + e.what());
	}
	if (!entry)
		return runtime_error("plugin " + path + ": entry point is null");
	const pi_plugin_desc *d = nullptr;
	try {
		d = entry();
	} catch (...) {
		return runtime_error("plugin " + path + ": entry point threw an exception");
	}
	if (!d)
		return runtime_error("plugin " + path + ": entry point returned no descriptor");
	if (d->size < offsetof(pi_plugin_desc, kind) + sizeof(d->kind))
		return runtime_error("plugin " + path + ": descriptor too small (" + std::to_string(d->size) +
				     " bytes)");
	std::string label = "plugin " + path;
	if (d->size >= offsetof(pi_plugin_desc, version) + sizeof(d->version) && d->name && d->version)
		label = std::string("plugin '") + d->name + "' " + d->version + " (" + path + ")";
	std::string host = ver(PI_API_MAJOR, PI_API_MINOR);
	std::string mine = ver(d->api_major, d->api_minor);
	if (d->api_major != PI_API_MAJOR)
		return runtime_error(label + " was built for plugin ABI " + mine + "; this procimage speaks ABI " +
				     host + " (major versions differ): rebuild the plugin against this procimage's plugin_api");
	if (d->api_minor > PI_API_MINOR)
		return runtime_error(label + " needs plugin ABI " + mine + ", newer than this procimage's ABI " +
				     host + ": upgrade procimage or rebuild the plugin");
	// A descriptor from an older 1.x plugin is smaller: the fields after its size are read
	// as absent (record_schema_of), never past its end.
	if (d->size < PI_PLUGIN_DESC_SIZE_1_0)
		return runtime_error(label + ": descriptor is " + std::to_string(d->size) +
				     " bytes, expected at least " + std::to_string(PI_PLUGIN_DESC_SIZE_1_0));
	if (!d->name || !*d->name || !d->version)
		return runtime_error(label + ": descriptor has no name or version");
	if (d->kind == PI_KIND_PROBE) {
		const pi_probe_ops *o = d->probe;
		if (!o || o->size < sizeof(pi_probe_ops) || !o->validate || !o->create || !o->load ||
		    !o->attach || !o->detach || !o->on_data || !o->destroy)
			return runtime_error(label + ": incomplete probe operations");
	} else if (d->kind == PI_KIND_SINK) {
		const pi_sink_ops *o = d->sink;
		if (!o || o->size < sizeof(pi_sink_ops) || !o->validate || !o->create || !o->write ||
		    !o->destroy)
			return runtime_error(label + ": incomplete sink operations");
	} else {
		return runtime_error(label + ": unknown plugin kind " + std::to_string(d->kind));
	}
	p->desc = d;
	return p;
}

result<plugin_ptr> find_plugin(pi_plugin_kind kind, const std::string &name,
			       const std::vector<std::string> &dirs)
{
	std::vector<std::string> tried;
	if (name.find('/') != std::string::npos || (name.size() > 3 && name.substr(name.size() - 3) == ".so")) {
		auto there = plugin_file_exists(name);
		if (!there)
			return there.err();
		if (!*there)
			return usage_error(std::string("no ") + kind_name(kind) + " plugin file " + name);
		tried.push_back(name);
	} else {
		for (const auto &d : dirs) {
			fs::path f = fs::path(d) / plugin_file_name(kind, name);
			auto there = plugin_file_exists(f);
			if (!there)
				return there.err();
			if (*there) {
				tried.push_back(f.string());
				break;
			}
		}
		if (tried.empty()) {
			std::string where;
			for (const auto &d : dirs)
				where += (where.empty() ? "" : ", ") + d;
			return usage_error(std::string("no ") + kind_name(kind) + " plugin named \"" + name +
					   "\" (looked for " + plugin_file_name(kind, name) + " in " +
					   (where.empty() ? "no directory" : where) + ")");
		}
	}
	auto p = load_plugin(tried.front());
	if (!p)
		return error{p.err().msg, EXIT_USAGE};
	if ((*p)->desc->kind != static_cast<uint32_t>(kind))
		return usage_error("plugin " + tried.front() + " is a " + kind_name((*p)->desc->kind) +
				   ", not a " + kind_name(kind));
	return p;
}

std::vector<std::string> default_plugin_dirs()
{
	std::vector<std::string> out;
	if (const char *env = std::getenv("PROCIMAGE_PLUGIN_PATH")) {
		std::stringstream ss(env);
		std::string d;
		while (std::getline(ss, d, ':'))
			if (!d.empty())
				out.push_back(d);
	}
	char buf[4096];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	if (n > 0) {
		buf[n] = 0;
		fs::path exe_dir = fs::path(buf).parent_path();
		out.push_back((exe_dir / "plugins").string());
		out.push_back((exe_dir.parent_path() / "lib" / "procimage" / "plugins").string());
	}
#ifdef PROCIMAGE_PLUGIN_INSTALL_DIR
	out.push_back(PROCIMAGE_PLUGIN_INSTALL_DIR);
#endif
	std::vector<std::string> uniq;
	std::set<std::string> seen;
	for (auto &d : out)
		if (seen.insert(d).second)
			uniq.push_back(d);
	return uniq;
}

std::vector<plugin_listing> list_plugins(const std::vector<std::string> &dirs)
{
	std::vector<plugin_listing> out;
	std::set<std::string> seen;
	for (const auto &d : dirs) {
		std::error_code ec;
		if (!fs::is_directory(d, ec))
			continue;
		std::vector<fs::path> files;
		for (const auto &e : fs::directory_iterator(d, ec))
			if (e.path().extension() == ".so")
				files.push_back(e.path());
		std::sort(files.begin(), files.end());
		for (const auto &f : files) {
			if (!seen.insert(f.filename().string()).second)
				continue; // shadowed by an earlier directory
			plugin_listing l;
			l.path = f.string();
			auto p = load_plugin(l.path);
			if (p)
				l.plugin = *p;
			else
				l.problem = p.err().msg;
			out.push_back(std::move(l));
		}
	}
	return out;
}

} // namespace procimage::core
