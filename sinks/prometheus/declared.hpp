// SPDX-License-Identifier: Apache-2.0
//
// prometheus sink: the metrics the probes declare beside their records' fields (the record
// schema's "x-metrics", docs/plugin-abi.md), read once into rules that turn a record into
// samples. The host has checked each declaration's shape (core/schema.cpp); what the rules
// cannot use is reported in problems() and left out, never a failure.
#pragma once

#include "registry.hpp"

#include "../common/format.hpp"

#include <procimage/plugin_api.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <map>
#include <sstream>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace procimage::sinks::prom {

// Read access to a record's fields by key, the header's keys included.
class fields {
public:
	explicit fields(const pi_record &r) : r_(r) {}

	const pi_field *find(std::string_view key) const
	{
		for (uint32_t i = 0; i < r_.nfields; i++)
			if (same(r_.fields[i].key, key))
				return &r_.fields[i];
		return nullptr;
	}
	// A field's name is key (without measuring the name first: most differ at once).
	static bool same(const char *name, std::string_view key)
	{
		if (!name)
			return false;
		size_t i = 0;
		for (; i < key.size(); i++)
			if (name[i] != key[i])
				return false; // also at the name's end: its NUL differs from any key byte
		return name[i] == 0;
	}
	bool has(std::string_view key) const { return find(key) != nullptr || header(key); }
	// A number as a double: 0 when absent or not a number.
	double num(std::string_view key) const
	{
		if (const pi_field *f = find(key)) {
			switch (f->type) {
			case PI_FT_U64:
			case PI_FT_BOOL: return static_cast<double>(f->v.u);
			case PI_FT_I64: return static_cast<double>(f->v.i);
			case PI_FT_F64: return f->v.d;
			default: return 0;
			}
		}
		if (key == "pid")
			return r_.pid;
		if (key == "tid")
			return r_.tid;
		if (key == "ts_ns")
			return static_cast<double>(r_.ts_ns);
		if (key == "pid_start_ns")
			return static_cast<double>(r_.pid_start_ns);
		if (key == "cpu")
			return r_.cpu < 0 ? 0 : r_.cpu;
		return 0;
	}
	uint64_t u64(std::string_view key) const
	{
		double v = num(key);
		return v < 0 ? 0 : static_cast<uint64_t>(v);
	}
	std::string_view str(std::string_view key) const
	{
		const pi_field *f = find(key);
		if (f)
			return f->type == PI_FT_STR && f->v.s ? std::string_view(f->v.s) : std::string_view();
		if (key == "comm")
			return r_.comm ? r_.comm : "";
		if (key == "cgroup") {
			const char *cg = pi_record_cgroup(&r_);
			return cg ? cg : "";
		}
		if (key == "probe")
			return r_.probe ? r_.probe : "";
		if (key == "event")
			return r_.event ? r_.event : "";
		if (key == "plugin")
			return pi_record_plugin(&r_);
		return {};
	}
	std::span<const uint64_t> u64v(std::string_view key) const
	{
		const pi_field *f = find(key);
		if (!f || f->type != PI_FT_U64V || !f->v.uv)
			return {};
		return {f->v.uv, f->count};
	}
	// A field as label text: strings as they are, numbers in decimal, booleans true/false; a
	// header id of 0 (a system row's pid) and an absent field give "" (the label is left out).
	std::string text(std::string_view key) const
	{
		const pi_field *f = find(key);
		if (!f) {
			if (key == "pid" || key == "tid" || key == "cpu" || key == "pid_start_ns" || key == "ts_ns") {
				double v = num(key);
				return v == 0 && key != "cpu" ? "" : std::to_string(static_cast<uint64_t>(v));
			}
			return std::string(str(key));
		}
		switch (f->type) {
		case PI_FT_STR: return f->v.s ? f->v.s : "";
		case PI_FT_U64: return std::to_string(f->v.u);
		case PI_FT_I64: return std::to_string(f->v.i);
		case PI_FT_BOOL: return f->v.u ? "true" : "false";
		case PI_FT_F64: {
			std::ostringstream o;
			o << f->v.d;
			return o.str();
		}
		default: return "";
		}
	}
	// Whether the field has this value (a JSON string, number or boolean).
	bool is(std::string_view key, const nlohmann::json &want) const
	{
		if (want.is_string())
			return text(key) == want.get<std::string>();
		if (want.is_boolean())
			return (num(key) != 0) == want.get<bool>();
		if (want.is_number())
			return has(key) && num(key) == want.get<double>();
		return false;
	}

private:
	static bool header(std::string_view key)
	{
		for (std::string_view h : {"ts_ns", "probe", "plugin", "event", "pid", "tid", "comm", "cpu", "pid_start_ns", "cgroup"})
			if (key == h)
				return true;
		return false;
	}
	const pi_record &r_;
};

enum class metric_op { add, total, count, set };

// Where a label's value comes from.
struct label_source {
	std::string field;    // a field or header key; "" for a constant
	std::string constant; // the value when field is ""
	std::map<std::string, std::string> map;
	bool has_else = false;
	std::string otherwise;
	bool signal = false; // a signal number shown by its name (0: "none")
	// The label "cgroup" every family with a pid label gets: the probe's target cgroup, which
	// the exporter knows (from the probe's activated record), not a field of the record.
	bool target_cgroup = false;

	std::string of(const fields &f) const
	{
		if (field.empty())
			return constant;
		std::string v = f.text(field);
		if (signal)
			return signal_name(f.u64(field));
		if (auto it = map.find(v); it != map.end())
			return it->second;
		return has_else && !map.empty() ? otherwise : v;
	}
};

// A value: operands (a field, a number, or the CPUs online) multiplied or divided left to right.
struct value_expr {
	struct operand {
		std::string field; // "" for a number
		double number = 0;
		bool ncpus = false;
	};
	std::vector<operand> operands;
	std::vector<char> ops; // between operands: '*' or '/'

	bool parse(const std::string &text)
	{
		std::istringstream in(text);
		std::string tok;
		bool want_operand = true;
		while (in >> tok) {
			if (!want_operand) {
				if (tok != "*" && tok != "/")
					return false;
				ops.push_back(tok[0]);
			} else if (tok == "$ncpus") {
				operands.push_back({"", 0, true});
			} else {
				char *end = nullptr;
				double d = std::strtod(tok.c_str(), &end);
				if (end && *end == '\0' && (std::isdigit(static_cast<unsigned char>(tok[0])) != 0))
					operands.push_back({"", d, false});
				else
					operands.push_back({tok, 0, false});
			}
			want_operand = !want_operand;
		}
		return !operands.empty() && !want_operand;
	}
	// The one field a histogram of log2 slots reads.
	const std::string *single_field() const
	{
		return operands.size() == 1 && !operands[0].field.empty() ? &operands[0].field : nullptr;
	}
	double eval(const fields &f, unsigned ncpus) const
	{
		auto at = [&](const operand &o) {
			return o.ncpus ? static_cast<double>(ncpus) : o.field.empty() ? o.number : f.num(o.field);
		};
		double v = at(operands[0]);
		for (size_t i = 1; i < operands.size(); i++) {
			double x = at(operands[i]);
			if (ops[i - 1] == '*')
				v *= x;
			else
				v = x == 0 ? 0 : v / x;
		}
		return v;
	}
};

// One declared metric of one record type.
struct metric_rule {
	family *fam = nullptr;
	metric_op op = metric_op::add;
	value_expr value;
	bool log2 = false; // a histogram whose value is a field of log2 slots
	std::string sum;   // its sum's field
	std::vector<label_source> labels;
	std::vector<std::pair<std::string, std::vector<nlohmann::json>>> when;
	bool per_process = false; // a label is the record's pid: the process owns the series

	bool applies(const fields &f) const
	{
		for (const auto &[key, values] : when) {
			bool any = false;
			for (const auto &v : values)
				any = any || f.is(key, v);
			if (!any)
				return false;
		}
		return true;
	}
};

// The rules of every record type ("plugin.event"), and the records that mark a process's end.
class declared_metrics {
public:
	// Reads the joined record schema and defines a family in `reg` for each metric name.
	void load(const std::string &schema_text, registry &reg)
	{
		auto doc = nlohmann::ordered_json::parse(schema_text, nullptr, false);
		if (!doc.is_object() || !doc.contains("$defs") || !doc["$defs"].is_object()) {
			if (!schema_text.empty())
				problems_.push_back("the record schema could not be read: no declared metrics");
			return;
		}
		for (const auto &[type, def] : doc["$defs"].items()) {
			if (!def.is_object())
				continue;
			if (def.contains("x-ends-process") && def["x-ends-process"].is_object())
				for (const auto &[k, v] : def["x-ends-process"].items())
					ends_[type].emplace_back(k, std::vector<nlohmann::json>{v});
			if (!def.contains("x-metrics") || !def["x-metrics"].is_array())
				continue;
			for (const auto &m : def["x-metrics"])
				if (auto rule = make_rule(type, def, m, reg))
					rules_[type].push_back(std::move(*rule));
		}
	}

	const std::vector<metric_rule> *rules(const std::string &type) const
	{
		auto it = rules_.find(type);
		return it == rules_.end() ? nullptr : &it->second;
	}
	// Whether a record of this type with these fields marks the end of its process.
	bool ends_process(const std::string &type, const fields &f) const
	{
		auto it = ends_.find(type);
		if (it == ends_.end())
			return false;
		for (const auto &[k, values] : it->second)
			if (!f.is(k, values.front()))
				return false;
		return true;
	}
	const std::vector<std::string> &problems() const { return problems_; }
	size_t families() const { return defined_.size(); }

private:
	static std::string unit_of(const std::string &name)
	{
		auto ends = [&](std::string_view s) {
			return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
		};
		if (ends("_seconds") || ends("_seconds_total"))
			return "seconds";
		if (ends("_bytes") || ends("_bytes_total"))
			return "bytes";
		if (ends("_ratio"))
			return "ratio";
		return "";
	}

	std::optional<metric_rule> make_rule(const std::string &type, const nlohmann::ordered_json &def,
					     const nlohmann::ordered_json &m, registry &reg)
	{
		auto refuse = [&](const std::string &why) -> std::optional<metric_rule> {
			problems_.push_back(type + ": metric " + m.value("name", std::string("?")) + ": " + why);
			return std::nullopt;
		};
		if (!m.is_object() || !m.contains("name") || !m.contains("type") || !m.contains("help"))
			return refuse("name, type and help are required");
		const std::string name = m["name"], kind = m["type"];
		metric_rule r;
		const std::string op = m.value("op", kind == "gauge" ? "set" : "add");
		r.op = op == "total" ? metric_op::total : op == "count" ? metric_op::count
						       : op == "set"  ? metric_op::set
								      : metric_op::add;
		if (r.op != metric_op::count && (!m.contains("value") || !r.value.parse(m["value"].get<std::string>())))
			return refuse("value cannot be read");
		metric_type t = kind == "counter" ? metric_type::counter
				: kind == "gauge" ? metric_type::gauge
						  : metric_type::histogram;
		if (t == metric_type::histogram && r.op != metric_op::count) {
			const std::string *field = r.value.single_field();
			const auto &props = def.value("properties", nlohmann::ordered_json::object());
			r.log2 = field && props.contains(*field) && props[*field].value("type", "") == "array";
			if (r.log2)
				r.sum = m.value("sum", "");
		}
		std::vector<std::string> label_names;
		if (m.contains("labels"))
			for (const auto &[l, src] : m["labels"].items()) {
				label_names.push_back(l);
				label_source s;
				if (src.is_string()) {
					s.field = src.get<std::string>();
				} else if (src.contains("const")) {
					s.constant = src["const"].get<std::string>();
				} else {
					s.field = src.value("field", "");
					s.signal = src.value("format", "") == "signal";
					if (src.contains("map"))
						for (const auto &[k, v] : src["map"].items())
							s.map[k] = v.get<std::string>();
					if (src.contains("else")) {
						s.has_else = true;
						s.otherwise = src["else"].get<std::string>();
					}
				}
				if (s.field == "pid")
					r.per_process = true;
				r.labels.push_back(std::move(s));
			}
		// a series about the target's processes names the target's cgroup (one value per
		// cgroup target, not one per process's own cgroup)
		if (r.per_process && std::find(label_names.begin(), label_names.end(), "cgroup") == label_names.end()) {
			label_names.push_back("cgroup");
			label_source s;
			s.target_cgroup = true;
			r.labels.push_back(std::move(s));
		}
		if (m.contains("when"))
			for (const auto &[k, v] : m["when"].items())
				r.when.emplace_back(k, v.is_array() ? std::vector<nlohmann::json>(v.begin(), v.end())
								    : std::vector<nlohmann::json>{v});
		double scale = m.value("scale", 1.0);
		bool since_task = m.value("since", "collection") == "task";
		auto known = defined_.find(name);
		if (known != defined_.end()) {
			// one family, declared on several record types: the same kind and labels
			if (known->second.second != t || known->second.first->meta->labels != label_names)
				return refuse("declared elsewhere with another type or other labels");
			r.fam = known->second.first;
			return r;
		}
		if (reg.families().count(name))
			return refuse("the name of one of the exporter's own metrics");
		// (1e-9 gives a divisor of exactly 1e9, as the figures in ns need)
		double divisor = 1.0 / scale;
		if (divisor >= 1 && std::fabs(divisor - std::round(divisor)) < 1e-6 * divisor)
			divisor = std::round(divisor);
		r.fam = &reg.define(name, t, m["help"].get<std::string>(), unit_of(name), label_names, divisor, false,
				    !since_task);
		defined_.emplace(name, std::make_pair(r.fam, t));
		return r;
	}

	std::unordered_map<std::string, std::vector<metric_rule>> rules_;
	std::unordered_map<std::string, std::vector<std::pair<std::string, std::vector<nlohmann::json>>>> ends_;
	std::map<std::string, std::pair<family *, metric_type>> defined_;
	std::vector<std::string> problems_;
};

} // namespace procimage::sinks::prom
