// SPDX-License-Identifier: Apache-2.0
#include "pipeline.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace procimage::core {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

error at(const std::string &path, const std::string &msg)
{
	return usage_error(path.empty() ? msg : path + ": " + msg);
}

std::string join(const std::string &base, const std::string &key)
{
	return base.empty() ? key : base + "." + key;
}

const char *type_name(const json &j)
{
	switch (j.type()) {
	case json::value_t::null: return "null";
	case json::value_t::object: return "an object";
	case json::value_t::array: return "an array";
	case json::value_t::string: return "a string";
	case json::value_t::boolean: return "a boolean";
	case json::value_t::number_integer:
	case json::value_t::number_unsigned: return "an integer";
	case json::value_t::number_float: return "a number";
	default: return "something else";
	}
}

result<uint32_t> get_id(const json &j, const std::string &path, bool allow_zero)
{
	if (!j.is_number_unsigned() && !(j.is_number_integer() && j.get<int64_t>() >= 0))
		return at(path, std::string("expected a non-negative integer, got ") + type_name(j));
	uint64_t v = j.get<uint64_t>();
	if (v > 0x3fffffff)
		return at(path, "expected a thread or process id, got " + std::to_string(v));
	if (v == 0 && !allow_zero)
		return at(path, "0 is not a valid id here");
	return static_cast<uint32_t>(v);
}

result<std::vector<std::string>> get_names(const json &j, const std::string &path)
{
	if (!j.is_array())
		return at(path, std::string("expected an array of names, got ") + type_name(j));
	std::vector<std::string> out;
	for (size_t i = 0; i < j.size(); i++) {
		if (!j[i].is_string())
			return at(path + "[" + std::to_string(i) + "]", "expected a string");
		out.push_back(j[i].get<std::string>());
	}
	return out;
}

bool is_path(const std::string &plugin)
{
	return plugin.find('/') != std::string::npos ||
	       (plugin.size() > 3 && plugin.compare(plugin.size() - 3, 3, ".so") == 0);
}

result<std::vector<component>> parse_components(const json &doc, const char *section,
						 bool probes, const std::string &base_dir)
{
	std::vector<component> out;
	const json &obj = doc.at(section);
	if (!obj.is_object())
		return at(section, std::string("expected an object, got ") + type_name(obj));
	for (const auto &[id, body] : obj.items()) {
		std::string path = join(section, id);
		if (id.empty())
			return at(section, "empty component name");
		if (!body.is_object())
			return at(path, std::string("expected an object, got ") + type_name(body));
		component c;
		c.id = id;
		c.json_path = path;
		c.plugin = id.substr(0, id.find('/'));
		for (const auto &[k, v] : body.items()) {
			if (k == "plugin") {
				if (!v.is_string() || v.get<std::string>().empty())
					return at(join(path, k), "expected a plugin name or a path to a .so");
				c.plugin = v.get<std::string>();
				if (is_path(c.plugin) && fs::path(c.plugin).is_relative())
					c.plugin = (fs::path(base_dir) / c.plugin).lexically_normal().string();
			} else if (k == "target" && probes) {
				auto t = parse_target(v, join(path, k));
				if (!t)
					return t.err();
				c.target = *t;
			} else {
				c.config[k] = v;
			}
		}
		out.push_back(std::move(c));
	}
	return out;
}

} // namespace

std::string target_spec::describe() const
{
	std::ostringstream o;
	switch (kind) {
	case kind_t::all: o << "all threads"; break;
	case kind_t::cgroup:
		if (!cgroup_dir.empty()) {
			o << "cgroup " << cgroup_dir << " (id " << cgroup_id << ") and the cgroups below it";
		} else {
			o << (cgroup_by == cgroup_by_t::unit ? "unit " : cgroup_by == cgroup_by_t::container ? "container " : "cgroup ")
			  << cgroup_query;
		}
		break;
	case kind_t::tid:
	case kind_t::tgid:
		o << (kind == kind_t::tid ? "thread" : "process") << (ids.size() > 1 ? "es " : " ");
		for (size_t i = 0; i < ids.size(); i++)
			o << (i ? "," : "") << ids[i];
		break;
	}
	if (idle_cpu >= 0)
		o << " (idle task of CPU " << idle_cpu << ")";
	if (follow)
		o << " and its descendants";
	if (include_self)
		o << " (procimage included)";
	return o.str();
}

json target_spec::to_json() const
{
	json j = json::object();
	switch (kind) {
	case kind_t::all: j["all"] = true; break;
	case kind_t::tid: j["tid"] = ids.size() == 1 ? json(ids[0]) : json(ids); break;
	case kind_t::tgid: j["tgid"] = ids.size() == 1 ? json(ids[0]) : json(ids); break;
	case kind_t::cgroup:
		j[cgroup_by == cgroup_by_t::unit ? "unit" : cgroup_by == cgroup_by_t::container ? "container" : "cgroup"] =
			cgroup_query;
		break;
	}
	if (idle_cpu >= 0)
		j["cpu"] = idle_cpu;
	if (include_self)
		j["include_self"] = true;
	if (follow)
		j["follow"] = true;
	return j;
}

result<target_spec> parse_target(const json &j, const std::string &path)
{
	if (!j.is_object())
		return at(path, std::string("expected an object such as {\"tgid\": 1234}, got ") + type_name(j));
	target_spec t;
	int kinds = 0;
	for (const auto &[k, v] : j.items()) {
		std::string p = join(path, k);
		if (k == "all") {
			if (!v.is_boolean() || !v.get<bool>())
				return at(p, "expected true");
			kinds++;
		} else if (k == "tid" || k == "tgid") {
			t.kind = k == "tid" ? target_spec::kind_t::tid : target_spec::kind_t::tgid;
			kinds++;
			if (v.is_array()) {
				if (v.empty())
					return at(p, "expected at least one id");
				for (size_t i = 0; i < v.size(); i++) {
					auto id = get_id(v[i], p + "[" + std::to_string(i) + "]", k == "tid");
					if (!id)
						return id.err();
					t.ids.push_back(*id);
				}
			} else {
				auto id = get_id(v, p, k == "tid");
				if (!id)
					return id.err();
				t.ids.push_back(*id);
			}
		} else if (k == "cgroup" || k == "unit" || k == "container") {
			if (!v.is_string() || v.get<std::string>().empty())
				return at(p, k == "cgroup" ? "expected a cgroup v2 directory, absolute or relative to the v2 mount"
					     : k == "unit" ? "expected a systemd unit name, e.g. \"cron.service\""
							   : "expected a container id or a prefix of it");
			t.kind = target_spec::kind_t::cgroup;
			t.cgroup_by = k == "cgroup" ? target_spec::cgroup_by_t::path
				      : k == "unit" ? target_spec::cgroup_by_t::unit
						    : target_spec::cgroup_by_t::container;
			t.cgroup_query = v.get<std::string>();
			kinds++;
		} else if (k == "cpu") {
			if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 4095)
				return at(p, "expected a CPU number");
			t.idle_cpu = v.get<int32_t>();
		} else if (k == "include_self" || k == "follow") {
			if (!v.is_boolean())
				return at(p, "expected true or false");
			(k == "follow" ? t.follow : t.include_self) = v.get<bool>();
		} else {
			return at(p, "unknown key (expected all, tid, tgid, cgroup, unit, container, cpu, include_self or follow)");
		}
	}
	if (kinds != 1)
		return at(path, "give exactly one of \"all\", \"tid\", \"tgid\", \"cgroup\", \"unit\", \"container\"");
	bool idle = t.kind == target_spec::kind_t::tid && t.ids.size() == 1 && t.ids[0] == 0;
	if (t.kind == target_spec::kind_t::tid)
		for (uint32_t id : t.ids)
			if (id == 0 && !idle)
				return at(join(path, "tid"), "0 (an idle task) must be alone and needs \"cpu\"");
	if (idle && t.idle_cpu < 0)
		return at(join(path, "cpu"), "required with \"tid\": 0 (which CPU's idle task)");
	if (!idle && t.idle_cpu >= 0)
		return at(join(path, "cpu"), "only meaningful with \"tid\": 0");
	if (t.follow && t.kind != target_spec::kind_t::tgid)
		return at(join(path, "follow"), "only meaningful with \"tgid\"");
	return t;
}

result<pipeline> parse_pipeline(const json &doc, const std::string &base_dir)
{
	if (!doc.is_object())
		return at("", std::string("a pipeline must be a JSON object, got ") + type_name(doc));
	static const std::set<std::string> known = {"version", "plugin_dirs", "target", "start",
						    "interval_ms", "flush_ms", "wakeup_bytes", "probes", "sinks",
						    "pipelines", "command", "duration_s", "filters"};
	for (const auto &[k, _] : doc.items())
		if (!known.count(k))
			return at(k, "unknown key");
	pipeline p;
	if (!doc.contains("version"))
		return at("version", "required (this procimage reads version " +
					     std::to_string(PIPELINE_VERSION) + ")");
	const json &ver = doc["version"];
	if (!ver.is_number_integer())
		return at("version", std::string("expected an integer, got ") + type_name(ver));
	if (ver.get<int64_t>() != PIPELINE_VERSION)
		return at("version", "unsupported version " + std::to_string(ver.get<int64_t>()) +
					     " (this procimage reads version " + std::to_string(PIPELINE_VERSION) + ")");
	if (doc.contains("plugin_dirs")) {
		auto dirs = get_names(doc["plugin_dirs"], "plugin_dirs");
		if (!dirs)
			return dirs.err();
		for (auto &d : *dirs)
			p.plugin_dirs.push_back(fs::path(d).is_relative() ? (fs::path(base_dir) / d).string() : d);
	}
	if (doc.contains("target")) {
		auto t = parse_target(doc["target"], "target");
		if (!t)
			return t.err();
		p.target = *t;
		p.target_given = true;
	}
	if (doc.contains("start")) {
		const json &s = doc["start"];
		if (!s.is_string() || (s != "active" && s != "inactive"))
			return at("start", "expected \"active\" or \"inactive\"");
		p.start = s == "active";
	}
	if (doc.contains("interval_ms")) {
		const json &v = doc["interval_ms"];
		if (!v.is_number_integer() || v.get<int64_t>() < 10 || v.get<int64_t>() > 3600000)
			return at("interval_ms", "expected an integer in 10..3600000");
		p.interval_ms = v.get<uint32_t>();
	}
	if (doc.contains("flush_ms")) {
		const json &v = doc["flush_ms"];
		if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > 60000)
			return at("flush_ms", "expected an integer in 1..60000");
		p.flush_ms = v.get<uint32_t>();
	}
	if (doc.contains("wakeup_bytes")) {
		const json &v = doc["wakeup_bytes"];
		if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > (1 << 30))
			return at("wakeup_bytes", "expected an integer in 0..1073741824 (0: wake for every record)");
		p.wakeup_bytes = v.get<uint32_t>();
	}
	if (doc.contains("duration_s")) {
		const json &v = doc["duration_s"];
		if (!v.is_number() || !(v.get<double>() > 0) || v.get<double>() > MAX_DURATION_S)
			return at("duration_s", "expected a number of seconds, more than 0 and at most 604800");
		p.duration_s = v.get<double>();
	}
	if (doc.contains("filters")) {
		auto f = parse_filters(doc["filters"], "filters");
		if (!f)
			return f.err();
		p.filters = std::move(*f);
	}
	if (!doc.contains("probes"))
		return at("probes", "required (at least one probe)");
	auto probes = parse_components(doc, "probes", true, base_dir);
	if (!probes)
		return probes.err();
	p.probes = std::move(*probes);
	if (p.probes.empty())
		return at("probes", "expected at least one probe");
	if (doc.contains("sinks")) {
		auto sinks = parse_components(doc, "sinks", false, base_dir);
		if (!sinks)
			return sinks.err();
		p.sinks = std::move(*sinks);
	}
	if (p.sinks.empty()) {
		component c;
		c.id = c.plugin = "stdout";
		c.json_path = "sinks.stdout";
		p.sinks.push_back(c);
	}
	if (doc.contains("command")) {
		auto cmd = get_names(doc["command"], "command");
		if (!cmd)
			return cmd.err();
		if (cmd->empty())
			return at("command", "expected a program and its arguments");
		p.command = *cmd;
	}
	if (auto r = check_filters_fit(p); !r)
		return r.err();
	if (!p.command.empty() && p.duration_s > 0)
		return at("duration_s", "cannot go with a command: a command's run ends when the command does "
					"(bound the command itself, e.g. timeout SEC CMD)");
	if (!p.command.empty() && p.start && !*p.start)
		return at("start", "\"inactive\" cannot go with a command: a command's host traces it from "
				   "the start and ends with it (use -P or no target to pre-attach)");
	auto has = [](const std::vector<component> &cs, const std::string &id) {
		for (const auto &c : cs)
			if (c.id == id)
				return true;
		return false;
	};
	if (doc.contains("pipelines")) {
		const json &ws = doc["pipelines"];
		if (!ws.is_array() || ws.empty())
			return at("pipelines", "expected a non-empty array of {\"probes\": [...], \"sinks\": [...]}");
		for (size_t i = 0; i < ws.size(); i++) {
			std::string path = "pipelines[" + std::to_string(i) + "]";
			if (!ws[i].is_object())
				return at(path, std::string("expected an object, got ") + type_name(ws[i]));
			wire w;
			for (const auto &[k, v] : ws[i].items()) {
				if (k != "probes" && k != "sinks")
					return at(join(path, k), "unknown key (expected probes or sinks)");
				auto names = get_names(v, join(path, k));
				if (!names)
					return names.err();
				(k == "probes" ? w.probes : w.sinks) = *names;
			}
			if (w.probes.empty() || w.sinks.empty())
				return at(path, "needs at least one probe and one sink");
			for (size_t j = 0; j < w.probes.size(); j++)
				if (!has(p.probes, w.probes[j]))
					return at(path + ".probes[" + std::to_string(j) + "]",
						  "no probe named \"" + w.probes[j] + "\" in \"probes\"");
			for (size_t j = 0; j < w.sinks.size(); j++)
				if (!has(p.sinks, w.sinks[j]))
					return at(path + ".sinks[" + std::to_string(j) + "]",
						  "no sink named \"" + w.sinks[j] + "\" in \"sinks\"");
			p.wires.push_back(std::move(w));
		}
		for (const auto &c : p.probes) {
			bool used = false;
			for (const auto &w : p.wires)
				for (const auto &n : w.probes)
					used |= n == c.id;
			if (!used)
				return at(c.json_path, "not wired to any sink in \"pipelines\"");
		}
	} else {
		wire w;
		for (const auto &c : p.probes)
			w.probes.push_back(c.id);
		for (const auto &c : p.sinks)
			w.sinks.push_back(c.id);
		p.wires.push_back(std::move(w));
	}
	return p;
}

namespace {

// The JSON path of the container being opened, for the depth refusal: "probes[0].config.a[3]".
struct scan_frame {
	bool array = false;
	bool expect_key = true;
	size_t index = 0;
	std::string key;
};

std::string frames_path(const std::vector<scan_frame> &frames)
{
	std::string path;
	for (size_t i = 0; i + 1 < frames.size(); i++) {
		const auto &f = frames[i];
		if (f.array)
			path += "[" + std::to_string(f.index) + "]";
		else
			path += (path.empty() ? "" : ".") + f.key;
	}
	return path.empty() ? "(top level)" : path;
}

// Walk the text once, tracking only strings and containers, so a document nested deeper than
// MAX_JSON_DEPTH is refused before the recursive parser meets it.
result<void> check_depth(const std::string &text)
{
	std::vector<scan_frame> frames;
	for (size_t i = 0; i < text.size(); i++) {
		char c = text[i];
		if (c == '"') {
			size_t start = ++i;
			while (i < text.size() && text[i] != '"')
				i += text[i] == '\\' ? 2 : 1;
			if (!frames.empty() && !frames.back().array && frames.back().expect_key) {
				frames.back().key = text.substr(start, std::min(i, text.size()) - start);
				frames.back().expect_key = false;
			}
		} else if (c == '[' || c == '{') {
			frames.push_back({c == '[', true, 0, {}});
			if (frames.size() > MAX_JSON_DEPTH)
				return usage_error("JSON nested deeper than " + std::to_string(MAX_JSON_DEPTH) +
						   " levels at " + frames_path(frames));
		} else if (c == ']' || c == '}') {
			if (!frames.empty())
				frames.pop_back();
		} else if (c == ',' && !frames.empty()) {
			frames.back().index++;
			frames.back().expect_key = true;
		}
	}
	return {};
}

} // namespace

result<json> parse_json_text(const std::string &text)
{
	if (auto nul = text.find('\0'); nul != std::string::npos)
		return usage_error("a NUL byte at offset " + std::to_string(nul) + ": a pipeline is one JSON document, "
				   "nothing after it");
	if (auto r = check_depth(text); !r)
		return r.err();
	try {
		return json::parse(text); // strict: bytes after the document are an error
	} catch (const json::exception &e) {
		return usage_error(std::string("invalid JSON: ") + e.what());
	}
}

result<json> parse_set_value(const std::string &text)
{
	if (auto r = check_depth(text); !r)
		return r.err();
	if (text.find('\0') == std::string::npos)
		try {
			return json::parse(text);
		} catch (const json::exception &) {
		}
	return json(text); // a plain word: a string
}

result<set_flag> parse_set_flag(const std::string &kv)
{
	auto dot = kv.find('.'), eq = kv.find('=');
	if (dot == std::string::npos || eq == std::string::npos || dot > eq || dot == 0 || eq == dot + 1)
		return usage_error("--set " + kv + ": expected PROBE.KEY=VALUE");
	set_flag f{kv.substr(0, dot), kv.substr(dot + 1, eq - dot - 1), {}};
	auto v = parse_set_value(kv.substr(eq + 1));
	if (!v)
		return v.err().context("--set " + kv);
	f.value = std::move(*v);
	return f;
}

result<pipeline> load_pipeline_file(const std::string &path)
{
	std::error_code ec;
	if (fs::is_directory(path, ec))
		return usage_error(path + ": a directory, not a pipeline file");
	std::ifstream in(path, std::ios::binary);
	if (!in)
		return usage_error(path + ": cannot open pipeline file: " + std::strerror(errno));
	std::ostringstream text;
	text << in.rdbuf();
	if (in.bad())
		return usage_error(path + ": cannot read pipeline file");
	auto doc = parse_json_text(text.str());
	if (!doc)
		return doc.err().context(path);
	auto base = fs::absolute(fs::path(path)).parent_path().string();
	auto p = parse_pipeline(*doc, base);
	if (!p)
		return p.err().context(path);
	return p;
}

json pipeline::to_json() const
{
	json j;
	j["version"] = version;
	if (!plugin_dirs.empty())
		j["plugin_dirs"] = plugin_dirs;
	if (target_given)
		j["target"] = target.to_json();
	if (start)
		j["start"] = *start ? "active" : "inactive";
	j["interval_ms"] = interval_ms;
	j["flush_ms"] = flush_ms;
	j["wakeup_bytes"] = wakeup_bytes;
	if (duration_s > 0)
		j["duration_s"] = duration_s;
	if (!filters.empty())
		j["filters"] = filters.to_json();
	auto comps = [](const std::vector<component> &cs, bool probes) {
		json o = json::object();
		for (const auto &c : cs) {
			json b = c.config;
			if (c.plugin != c.id.substr(0, c.id.find('/')))
				b["plugin"] = c.plugin;
			if (probes && c.target)
				b["target"] = c.target->to_json();
			o[c.id] = b;
		}
		return o;
	};
	j["probes"] = comps(probes, true);
	j["sinks"] = comps(sinks, false);
	j["pipelines"] = json::array();
	for (const auto &w : wires)
		j["pipelines"].push_back({{"probes", w.probes}, {"sinks", w.sinks}});
	if (!command.empty())
		j["command"] = command;
	return j;
}

result<void> check_filters_fit(const pipeline &p)
{
	if (p.filters.syscalls.empty())
		return {};
	for (const auto &c : p.probes) {
		const std::string &pl = c.plugin;
		std::string base = pl.substr(pl.find_last_of('/') == std::string::npos ? 0 : pl.find_last_of('/') + 1);
		if (pl == "syscall" || base == "probe_syscall.so")
			return {};
	}
	return usage_error("filters.syscall: the syscall filter needs the syscall probe (-s, or a probe with "
			   "plugin \"syscall\")");
}

void route_readable_output(pipeline &p)
{
	if (p.command.empty())
		return;
	for (auto &s : p.sinks)
		if (s.plugin == "stdout" && s.config.is_object() && !s.config.contains("stream") && !s.config.contains("path"))
			s.config["stream"] = "stderr";
}

bool pipeline::starts_active() const
{
	if (start)
		return *start;
	if (target_given || !command.empty())
		return true;
	for (const auto &c : probes)
		if (c.target)
			return true;
	return false;
}

std::vector<size_t> pipeline::sinks_of(const std::string &probe_id) const
{
	std::vector<size_t> out;
	for (const auto &w : wires) {
		bool has_probe = false;
		for (const auto &n : w.probes)
			has_probe |= n == probe_id;
		if (!has_probe)
			continue;
		for (const auto &n : w.sinks)
			for (size_t i = 0; i < sinks.size(); i++)
				if (sinks[i].id == n &&
				    std::find(out.begin(), out.end(), i) == out.end())
					out.push_back(i);
	}
	return out;
}

} // namespace procimage::core
