// SPDX-License-Identifier: Apache-2.0
#include "schema.hpp"

#include <procimage_core_record_schema.h>

#include <algorithm>
#include <functional>
#include <sstream>
#include <regex>
#include <set>

namespace procimage::core::schema {

namespace {

// The header: every record starts with these keys (sinks/common/format.cpp writes them).
ojson header_properties()
{
	ojson p = ojson::object();
	p["ts_ns"] = {{"type", "integer"}, {"minimum", 0}, {"x-unit", "ns"},
		      {"description", "When the event happened (or the interval ended), Unix epoch, nanoseconds."}};
	p["probe"] = {{"type", "string"}, {"minLength", 1},
		      {"description", "The probe instance that emitted the record: its component id in the pipeline "
				      "(the plugin's name unless the pipeline names it otherwise), or \"procimage\" for the "
				      "host's records."}};
	p["plugin"] = {{"type", "string"},
		       {"description", "The plugin that emitted the record, present only when it differs from probe "
				       "(an instance id such as \"keytime/cpu\")."}};
	p["event"] = {{"type", "string"}, {"description", "The record type."}};
	p["pid"] = {{"type", "integer"}, {"minimum", 0},
		    {"description", "Process id: the kernel's tgid. 0 on rows about the target or the system."}};
	p["tid"] = {{"type", "integer"}, {"minimum", 0},
		    {"description", "Thread id: the kernel's pid; equal to pid for a process's main thread. 0 on "
				    "process-level rows and on rows about the target or the system."}};
	p["comm"] = {{"type", "string"},
		     {"description", "The task's command name (at most 15 bytes) when the record was taken; \"\" on "
				     "rows about the target or the system."}};
	p["cpu"] = {{"type", "integer"}, {"minimum", 0},
		    {"description", "The CPU the event was recorded on; absent where it does not apply."}};
	p["pid_start_ns"] = {{"type", "integer"}, {"minimum", 1}, {"x-unit", "ns"},
			     {"description", "Start of the process (its group leader), nanoseconds since boot: "
					     "(pid, pid_start_ns) names a process even across pid reuse. On every "
					     "record about a process."}};
	p["cgroup"] = {{"type", "string"}, {"minLength", 1},
		       {"description", "The task's cgroup on the v2 hierarchy, as /proc/PID/cgroup writes it "
				       "(\"/system.slice/nginx.service\"): where the kernel had it when the record was "
				       "taken, else where the process was last seen. On records about a process when "
				       "known, and on rows about a cgroup target and on its activated record (the target's "
				       "cgroup); absent on rows about the system and on the host's other records."}};
	return p;
}

// The keys a periodic row adds to the header (records declared "about": "scoped").
ojson scoped_properties(const ojson &scopes, const ojson &windows)
{
	ojson p = ojson::object();
	p["scope"] = {{"enum", scopes},
		      {"description", "Whom the figures are about: \"thread\" (pid and tid), \"process\" (pid; tid "
				      "0), \"target\" (every target task together; pid 0, tid 0, comm \"\"), "
				      "\"system\" (the whole machine; pid 0, tid 0, comm \"\")."}};
	p["window"] = {{"enum", windows},
		       {"description", "\"interval\": figures of the interval that ends at ts_ns; \"total\": running "
				       "totals since collection started (the same fields)."}};
	p["interval_ns"] = {{"type", "integer"}, {"minimum", 0}, {"x-unit", "ns"},
			    {"description", "The length of time the figures cover: the interval, or on a total "
					    "row the time since collection started."}};
	return p;
}

// Who a record about a task names: a process (pid_start_ns required), or the idle task of a CPU
// (pid 0), which belongs to no process: tid 0, no pid_start_ns, and the CPU it is the idle task
// of (docs/events.md, "One convention for every probe").
ojson task_rule()
{
	return {{"if", {{"properties", {{"pid", {{"const", 0}}}}}}},
		{"then",
		 {{"properties", {{"tid", {{"const", 0}}}, {"pid_start_ns", false}}}, {"required", ojson::array({"cpu"})}}},
		{"else", {{"required", ojson::array({"pid_start_ns"})}}}};
}

const std::set<std::string> record_keys = {"description", "about", "scopes", "windows", "properties",
					   "required", "optional", "metrics", "ends_process"};
const std::set<std::string> about_values = {"task", "host", "scoped"};
const std::set<std::string> scope_values = {"thread", "process", "target", "system"};
const std::set<std::string> window_values = {"interval", "total"};
const std::set<std::string> metric_keys = {"name", "type", "op", "value", "sum", "labels", "help", "scale", "since", "when"};
const std::set<std::string> metric_types = {"counter", "gauge", "histogram"};

bool extension(const std::string &key) { return key.rfind("x-", 0) == 0; }

error bad(const std::string &plugin, const std::string &where, const std::string &what)
{
	return runtime_error("plugin '" + plugin + "': record schema: " + where + ": " + what);
}

result<void> check_names(const std::string &plugin, const std::string &where, const ojson &list,
			 const ojson &props)
{
	if (!list.is_array())
		return bad(plugin, where, "expected an array of field names");
	for (const auto &n : list)
		if (!n.is_string() || !props.contains(n.get<std::string>()))
			return bad(plugin, where, "names " + n.dump() + ", which is not one of the record's properties");
	return {};
}

// A metric's value: a field (or header key), or a product and quotient of fields, numbers and
// $ncpus (the CPUs online), left to right: "cpu_pct * interval_ns * ncpu / 100".
bool value_ok(const std::string &text, const std::function<bool(const std::string &)> &field_ok)
{
	static const std::regex number("[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?");
	std::istringstream in(text);
	std::string tok;
	bool operand = true;
	int n = 0;
	while (in >> tok) {
		if (operand) {
			if (!(field_ok(tok) || tok == "$ncpus" || std::regex_match(tok, number)))
				return false;
		} else if (tok != "*" && tok != "/") {
			return false;
		}
		operand = !operand;
		n++;
	}
	return n > 0 && !operand;
}

result<void> check_metric(const std::string &plugin, const std::string &where, const ojson &m,
			  const ojson &props)
{
	static const std::regex metric_name("[a-zA-Z_:][a-zA-Z0-9_:]*");
	static const std::regex label_name("[a-zA-Z_][a-zA-Z0-9_]*");
	if (!m.is_object())
		return bad(plugin, where, "expected an object");
	for (const auto &[k, v] : m.items())
		if (!metric_keys.count(k) && !extension(k))
			return bad(plugin, where, "unknown key '" + k + "'");
	std::function<bool(const std::string &)> field_ok = [&](const std::string &f) {
		return props.contains(f) ||
		       std::find(header_keys().begin(), header_keys().end(), f) != header_keys().end();
	};
	if (!m.contains("name") || !m["name"].is_string() ||
	    !std::regex_match(m["name"].get<std::string>(), metric_name))
		return bad(plugin, where, "name: expected a Prometheus metric name");
	if (!m.contains("type") || !m["type"].is_string() || !metric_types.count(m["type"].get<std::string>()))
		return bad(plugin, where, "type: expected counter, gauge or histogram");
	const std::string type = m["type"];
	if (m.contains("op") && !m["op"].is_string())
		return bad(plugin, where, "op: expected add, total, count or set");
	const std::string op = m.value("op", type == "gauge" ? "set" : "add");
	if (!(type == "gauge" ? op == "set" : (op == "add" || op == "count" || (op == "total" && type == "counter"))))
		return bad(plugin, where, "op: '" + op + "' does not apply to a " + type +
					  " (counter: add, total, count; histogram: add, count; gauge: set)");
	if (op == "count") {
		if (m.contains("value"))
			return bad(plugin, where, "value: op count counts records, it takes no value");
	} else if (!m.contains("value") || !m["value"].is_string() || !value_ok(m["value"].get<std::string>(), field_ok)) {
		return bad(plugin, where,
			   "value: expected a field, or fields, numbers and $ncpus joined by * and /");
	}
	if (!m.contains("help") || !m["help"].is_string())
		return bad(plugin, where, "help: expected a text");
	if (m.contains("scale") && (!m["scale"].is_number() || m["scale"].get<double>() <= 0))
		return bad(plugin, where, "scale: expected a positive number");
	if (m.contains("since") && m["since"] != "collection" && m["since"] != "task")
		return bad(plugin, where, "since: expected collection or task");
	if (m.contains("labels")) {
		if (!m["labels"].is_object())
			return bad(plugin, where, "labels: expected an object {label: field}");
		for (const auto &[l, src] : m["labels"].items()) {
			if (!std::regex_match(l, label_name))
				return bad(plugin, where, "labels: '" + l + "' is not a label name");
			bool ok = false;
			if (src.is_string()) {
				ok = field_ok(src.get<std::string>());
			} else if (src.is_object() && src.size() == 1 && src.contains("const") && src["const"].is_string()) {
				ok = true;
			} else if (src.is_object() && src.contains("field") && src["field"].is_string() &&
				   field_ok(src["field"].get<std::string>())) {
				ok = true;
				for (const auto &[k, v] : src.items())
					if (!(k == "field" || (k == "map" && v.is_object()) || (k == "else" && v.is_string()) ||
					      (k == "format" && v == "signal")))
						ok = false;
				if (src.contains("map"))
					for (const auto &[_, v] : src["map"].items())
						ok = ok && v.is_string();
			}
			if (!ok)
				return bad(plugin, where,
					   "labels: '" + l + "' must name a field, or be {\"const\": TEXT} or {\"field\": F, "
					   "\"map\": {VALUE: TEXT}, \"else\": TEXT} or {\"field\": F, \"format\": \"signal\"}");
		}
	}
	if (m.contains("when")) {
		if (!m["when"].is_object())
			return bad(plugin, where, "when: expected an object {field: value}");
		auto plain = [](const ojson &v) { return v.is_string() || v.is_number() || v.is_boolean(); };
		for (const auto &[f, v] : m["when"].items()) {
			bool ok = field_ok(f) && (plain(v) || (v.is_array() && !v.empty()));
			if (ok && v.is_array())
				for (const auto &x : v)
					ok = ok && plain(x);
			if (!ok)
				return bad(plugin, where, "when: '" + f + "' must name a field and give a value or a list of values");
		}
	}
	if (type == "histogram" && op != "count") {
		const std::string value = m["value"];
		const ojson *field = props.contains(value) ? &props[value] : nullptr;
		bool array = field && field->is_object() && field->value("type", "") == "array";
		if (array && (!m.contains("sum") || !m["sum"].is_string() || !field_ok(m["sum"].get<std::string>())))
			return bad(plugin, where, "sum: a histogram of a log2-bucket array names the field of its sum");
		if (!array && m.contains("sum"))
			return bad(plugin, where, "sum: only for a histogram of a log2-bucket array");
	} else if (m.contains("sum")) {
		return bad(plugin, where, "sum: only for a histogram");
	}
	return {};
}

} // namespace

const std::vector<std::string> &header_keys()
{
	static const std::vector<std::string> keys = {"ts_ns", "probe",        "plugin", "event",  "pid",
						      "tid",   "comm",         "cpu",    "pid_start_ns", "cgroup", "scope",
						      "window", "interval_ns"};
	return keys;
}

std::string def_name(const std::string &plugin, const std::string &event) { return plugin + "." + event; }

const char *host_declaration() { return PROCIMAGE_RECORD_SCHEMA; }

result<ojson> parse_declaration(const std::string &plugin, const char *text)
{
	ojson doc;
	try {
		doc = ojson::parse(text ? text : "");
	} catch (const std::exception &e) {
		return bad(plugin, "not JSON", e.what());
	}
	if (!doc.is_object() || !doc.contains("records") || !doc["records"].is_object() || doc["records"].empty())
		return bad(plugin, "top level", "expected an object with a non-empty \"records\" object");
	for (const auto &[k, v] : doc.items())
		if (k != "records" && k != "description" && !extension(k))
			return bad(plugin, "top level", "unknown key '" + k + "'");
	for (auto &[event, rec] : doc["records"].items()) {
		std::string where = "records." + event;
		if (!rec.is_object())
			return bad(plugin, where, "expected an object");
		for (const auto &[k, v] : rec.items())
			if (!record_keys.count(k) && !extension(k))
				return bad(plugin, where, "unknown key '" + k + "'");
		if (!rec.contains("description") || !rec["description"].is_string())
			return bad(plugin, where, "description: expected a text");
		if (!rec.contains("about") || !rec["about"].is_string() || !about_values.count(rec["about"].get<std::string>()))
			return bad(plugin, where, "about: expected \"task\", \"host\" or \"scoped\"");
		bool scoped = rec["about"] == "scoped";
		for (const char *key : {"scopes", "windows"}) {
			if (!rec.contains(key))
				continue;
			if (!scoped)
				return bad(plugin, where, std::string(key) + ": only for \"about\": \"scoped\" records");
			const auto &allowed = std::string(key) == "scopes" ? scope_values : window_values;
			if (!rec[key].is_array() || rec[key].empty())
				return bad(plugin, where, std::string(key) + ": expected a non-empty array");
			for (const auto &s : rec[key])
				if (!s.is_string() || !allowed.count(s.get<std::string>()))
					return bad(plugin, where, std::string(key) + ": unknown value " + s.dump());
		}
		if (scoped && !rec.contains("scopes"))
			return bad(plugin, where, "scopes: a scoped record lists the scopes its rows can have");
		if (!rec.contains("properties"))
			rec["properties"] = ojson::object();
		const auto &props = rec["properties"];
		if (!props.is_object())
			return bad(plugin, where, "properties: expected an object");
		for (const auto &[name, prop] : props.items()) {
			if (std::find(header_keys().begin(), header_keys().end(), name) != header_keys().end())
				return bad(plugin, where, "field '" + name + "' has the name of a header key");
			if (!prop.is_object() || !prop.contains("description") || !prop["description"].is_string())
				return bad(plugin, where, "field '" + name + "': expected an object with a description");
			if (!prop.contains("type") && !prop.contains("enum") && !prop.contains("const"))
				return bad(plugin, where, "field '" + name + "': no type");
		}
		if (rec.contains("required") && rec.contains("optional"))
			return bad(plugin, where, "give either required or optional, not both");
		for (const char *key : {"required", "optional"})
			if (rec.contains(key))
				if (auto ok = check_names(plugin, where + "." + key, rec[key], props); !ok)
					return ok.err();
		if (rec.contains("ends_process")) {
			bool ok = rec["ends_process"].is_object() && !rec["ends_process"].empty();
			if (ok)
				for (const auto &[f, v] : rec["ends_process"].items())
					ok = ok && props.contains(f) && (v.is_string() || v.is_number() || v.is_boolean());
			if (!ok)
				return bad(plugin, where,
					   "ends_process: expected {field: value}, the values by which the record marks its process's end");
		}
		if (rec.contains("metrics")) {
			if (!rec["metrics"].is_array())
				return bad(plugin, where, "metrics: expected an array");
			for (size_t i = 0; i < rec["metrics"].size(); i++)
				if (auto ok = check_metric(plugin, where + ".metrics[" + std::to_string(i) + "]",
							   rec["metrics"][i], props);
				    !ok)
					return ok.err();
		}
	}
	return doc;
}

namespace {

// Records of `plugin`: either probe is the plugin's name, or plugin says it.
ojson plugin_rule(const std::string &plugin)
{
	return {{"anyOf",
		 ojson::array({ojson{{"required", ojson::array({"plugin"})}},
			       ojson{{"properties", {{"probe", {{"const", plugin}}}}}}})}};
}

ojson definition(const std::string &plugin, const std::string &event, const ojson &rec)
{
	ojson def = ojson::object();
	def["type"] = "object";
	def["description"] = rec["description"];
	def["x-plugin"] = plugin;
	def["x-event"] = event;
	def["x-about"] = rec["about"];
	ojson props = header_properties();
	props["plugin"]["const"] = plugin;
	props["event"]["const"] = event;
	std::string about = rec["about"];
	ojson required = ojson::array({"ts_ns", "probe", "event", "pid", "tid", "comm"});
	ojson all_of = ojson::array({plugin_rule(plugin)});
	if (about == "host") {
		props.erase("cpu");
		props.erase("pid_start_ns");
	} else if (about == "task") {
		all_of.push_back(task_rule());
	} else {
		ojson windows = rec.contains("windows") ? rec["windows"] : ojson::array({"interval", "total"});
		ojson periodic = scoped_properties(rec["scopes"], windows);
		for (auto &[k, v] : periodic.items())
			props[k] = v;
		for (const char *k : {"scope", "window", "interval_ns"})
			required.push_back(k);
		// rows about the target or the system name no task
		ojson whole = ojson::array();
		ojson tasks = ojson::array();
		for (const auto &s : rec["scopes"])
			(s == "target" || s == "system" ? whole : tasks).push_back(s);
		if (!whole.empty())
			all_of.push_back({{"if", {{"properties", {{"scope", {{"enum", whole}}}}}}},
					  {"then",
					   {{"properties",
					     {{"pid", {{"const", 0}}}, {"tid", {{"const", 0}}}, {"comm", {{"const", ""}}},
					      {"pid_start_ns", false}}}}}});
		// a thread row names a thread of a process, or the idle task of a CPU
		if (std::find(tasks.begin(), tasks.end(), "thread") != tasks.end())
			all_of.push_back({{"if", {{"properties", {{"scope", {{"const", "thread"}}}}}}}, {"then", task_rule()}});
		// a process row names a process, never a thread
		if (std::find(tasks.begin(), tasks.end(), "process") != tasks.end())
			all_of.push_back({{"if", {{"properties", {{"scope", {{"const", "process"}}}}}}},
					  {"then",
					   {{"properties", {{"tid", {{"const", 0}}}}},
					    {"required", ojson::array({"pid_start_ns"})}}}});
	}
	for (const auto &[k, v] : rec["properties"].items())
		props[k] = v;
	if (rec.contains("required")) {
		for (const auto &n : rec["required"])
			required.push_back(n);
	} else {
		std::set<std::string> optional;
		if (rec.contains("optional"))
			for (const auto &n : rec["optional"])
				optional.insert(n.get<std::string>());
		for (const auto &[k, v] : rec["properties"].items())
			if (!optional.count(k))
				required.push_back(k);
	}
	def["properties"] = std::move(props);
	def["required"] = std::move(required);
	def["additionalProperties"] = false;
	def["allOf"] = std::move(all_of);
	if (rec.contains("metrics"))
		def["x-metrics"] = rec["metrics"];
	if (rec.contains("ends_process"))
		def["x-ends-process"] = rec["ends_process"];
	return def;
}

// A probe that declares nothing: its records must have the header, any field may follow.
ojson lenient_definition(const std::string &plugin)
{
	ojson def = ojson::object();
	def["type"] = "object";
	def["description"] = "Records of the probe '" + plugin + "', which declares no record schema.";
	def["x-plugin"] = plugin;
	def["x-undeclared"] = true;
	ojson props = header_properties();
	props["plugin"]["const"] = plugin;
	def["properties"] = std::move(props);
	def["required"] = ojson::array({"ts_ns", "probe", "event", "pid", "tid", "comm"});
	def["allOf"] = ojson::array({plugin_rule(plugin)});
	return def;
}

} // namespace

result<ojson> join(const std::vector<declaration> &probes)
{
	ojson doc = ojson::object();
	doc["$schema"] = "https://json-schema.org/draft/2020-12/schema";
	doc["$id"] = std::string("urn:procimage:records:") + version;
	doc["title"] = "procimage records";
	doc["description"] =
		"Every record procimage writes (one JSON object per line in the jsonl sink). One definition per "
		"plugin and event in $defs; a record is valid when it matches exactly one of them.";
	doc["x-schema-version"] = version;
	ojson defs = ojson::object();
	ojson one_of = ojson::array();
	std::vector<declaration> all = {{"procimage", host_declaration()}};
	all.insert(all.end(), probes.begin(), probes.end());
	std::set<std::string> seen;
	for (const auto &d : all) {
		if (!seen.insert(d.plugin).second)
			continue;
		if (!d.text) {
			std::string name = def_name(d.plugin, "*");
			defs[name] = lenient_definition(d.plugin);
			one_of.push_back({{"$ref", "#/$defs/" + name}});
			continue;
		}
		auto parsed = parse_declaration(d.plugin, d.text);
		if (!parsed)
			return parsed.err();
		for (const auto &[event, rec] : (*parsed)["records"].items()) {
			std::string name = def_name(d.plugin, event);
			defs[name] = definition(d.plugin, event, rec);
			one_of.push_back({{"$ref", "#/$defs/" + name}});
		}
	}
	doc["oneOf"] = std::move(one_of);
	doc["$defs"] = std::move(defs);
	return doc;
}

} // namespace procimage::core::schema
