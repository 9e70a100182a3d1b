// SPDX-License-Identifier: Apache-2.0
//
// prometheus sink: the metric store and its exposition. Families of counters, gauges,
// histograms and summaries; series keyed by their label values; a cap on the number of series
// (every refused series counted); series owned by a process removed together; rendering in the
// Prometheus text format 0.0.4 and in OpenMetrics 1.0.0.
//
// No locking and no HTTP here: exporter.hpp guards a registry with a mutex and takes snapshots;
// the unit tests drive it directly. Header-only so that the unit tests compile it too.
#pragma once

#include "../common/utf8.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace procimage::sinks::prom {

enum class metric_type { counter, gauge, histogram, summary };

// Histogram buckets. The probes count durations in log2 slots of nanoseconds (slot i: values in
// [2^i, 2^(i+1)) ns, slot 0 also 0 ns). They become Prometheus buckets with upper bounds
// le = 2^k ns for k = le_min_log2..le_max_log2 (256 ns .. 17.2 s), plus +Inf. A slot falls
// under the first bound at or above its exclusive end; the bound is therefore exclusive by one
// nanosecond (a value of exactly 2^k ns counts under le = 2^(k+1)).
constexpr int le_min_log2 = 8;
constexpr int le_max_log2 = 34;
constexpr size_t n_le = le_max_log2 - le_min_log2 + 1;

// Bucket index (0..n_le, n_le = above the last bound) of log2 slot i.
constexpr size_t bucket_of_slot(size_t i)
{
	if (i + 1 <= static_cast<size_t>(le_min_log2))
		return 0;
	size_t j = i + 1 - le_min_log2;
	return j < n_le ? j : n_le;
}

// Log2 slot of a value (slot 0 for 0 and 1).
inline size_t slot_of_value(uint64_t v)
{
	return v < 2 ? 0 : static_cast<size_t>(63 - __builtin_clzll(v));
}

// Shortest text that reads back as the same double; "+Inf", "-Inf", "NaN" as Prometheus writes.
inline void append_number(std::string &out, double v)
{
	if (std::isnan(v)) {
		out += "NaN";
		return;
	}
	if (std::isinf(v)) {
		out += v > 0 ? "+Inf" : "-Inf";
		return;
	}
	char buf[64];
	auto r = std::to_chars(buf, buf + sizeof buf, v);
	out.append(buf, r.ptr);
}

inline void append_number(std::string &out, uint64_t v)
{
	char buf[24];
	auto r = std::to_chars(buf, buf + sizeof buf, v);
	out.append(buf, r.ptr);
}

// A label value in the exposition formats: UTF-8 (an invalid byte becomes U+FFFD), with
// backslash, double quote and line feed escaped.
inline void append_label_value(std::string &out, std::string_view s)
{
	const auto *p = reinterpret_cast<const unsigned char *>(s.data());
	const auto *end = p + s.size();
	while (p < end) {
		unsigned char c = *p;
		if (c < 0x80) {
			if (c == '\\')
				out += "\\\\";
			else if (c == '"')
				out += "\\\"";
			else if (c == '\n')
				out += "\\n";
			else
				out += static_cast<char>(c);
			p++;
			continue;
		}
		int len = utf8_sequence_length(p, end);
		if (len == 0) {
			out += UTF8_REPLACEMENT;
			p++;
		} else {
			out.append(reinterpret_cast<const char *>(p), static_cast<size_t>(len));
			p += len;
		}
	}
}

// HELP text: the text format escapes backslash and line feed, OpenMetrics also double quotes.
inline void append_help(std::string &out, std::string_view s, bool openmetrics)
{
	for (char c : s) {
		if (c == '\\')
			out += "\\\\";
		else if (c == '\n')
			out += "\\n";
		else if (c == '"' && openmetrics)
			out += "\\\"";
		else
			out += c;
	}
}

// Upper bounds of the buckets in base units, as label text ("2.56e-07" for 256 ns in seconds).
inline std::vector<std::string> le_texts(double divisor)
{
	std::vector<std::string> v;
	for (int k = le_min_log2; k <= le_max_log2; k++) {
		std::string s;
		append_number(s, static_cast<double>(1ULL << k) / divisor);
		v.push_back(std::move(s));
	}
	return v;
}

struct family_meta {
	std::string name; // as in the text format: counters end in _total
	metric_type type;
	std::string help;
	std::string unit;    // "seconds", "bytes", "ratio" or "": the name ends with it
	double divisor;      // raw value / divisor = value in base units (1e9 for ns -> s)
	bool self;           // the exporter's own figures: outside the series cap
	// A new child is exposed at 0 first, with its value from the next scrape on (see
	// registry::snap). For counts that begin when procimage starts counting; not for mirrors
	// of a count the kernel kept before (a process's lifetime CPU time).
	bool zero_first;
	std::vector<std::string> labels;
	std::vector<std::string> le; // histogram bucket bounds as label text

	// Name of the family in OpenMetrics: a counter's without "_total".
	std::string om_name() const
	{
		if (type == metric_type::counter && name.size() > 6 && name.compare(name.size() - 6, 6, "_total") == 0)
			return name.substr(0, name.size() - 6);
		return name;
	}
	// Exposed series per child: a histogram is its buckets, +Inf, _sum and _count.
	size_t weight() const
	{
		switch (type) {
		case metric_type::histogram: return n_le + 3;
		case metric_type::summary: return 2;
		default: return 1;
		}
	}
};

using buckets_t = std::array<uint64_t, n_le + 1>; // not cumulative; [n_le] = above the last bound

struct series {
	std::shared_ptr<const std::string> labels; // rendered label pairs, without braces
	double value = 0;                          // counter, gauge; summary and histogram: sum (raw)
	uint64_t count = 0;                        // summary: observations
	std::unique_ptr<buckets_t> buckets;        // histogram
	uint32_t owner = 0;                        // pid whose end removes the series; 0: none
	bool exposed = false;                      // in a snapshot already
	double mirrored = -1;                      // a counter fed running totals: the last one (raw)
};

struct family {
	std::shared_ptr<const family_meta> meta;
	// by rendered labels; hashed, for the lookup of every record: the exposition sorts them
	// (render(), outside the exporter's lock) for a stable output
	std::unordered_map<std::string, series> children;
	uint64_t dropped = 0;                   // label sets refused at the series cap
};

// What a scrape renders: copied under the exporter's lock, formatted outside it.
struct snapshot {
	struct child {
		std::shared_ptr<const std::string> labels;
		double value;
		uint64_t count;
		buckets_t buckets;
	};
	struct fam {
		std::shared_ptr<const family_meta> meta;
		std::vector<child> children;
	};
	std::vector<fam> families;
};

class registry {
public:
	explicit registry(size_t max_series) : max_series_(max_series) {}

	family &define(std::string name, metric_type type, std::string help, std::string unit,
		       std::vector<std::string> labels, double divisor = 1, bool self = false, bool zero_first = false)
	{
		auto m = std::make_shared<family_meta>();
		m->name = name;
		m->type = type;
		m->help = std::move(help);
		m->unit = std::move(unit);
		m->divisor = divisor;
		m->self = self;
		m->zero_first = zero_first && type != metric_type::gauge;
		m->labels = std::move(labels);
		if (type == metric_type::histogram)
			m->le = le_texts(divisor);
		auto &f = families_[name];
		f.meta = std::move(m);
		return f;
	}

	// The child with these label values (in the family's label order; an empty value leaves
	// the label out), created if needed. nullptr when the cap refuses a new series.
	series *at(family &f, std::initializer_list<std::string_view> values, uint32_t owner = 0)
	{
		return at(f, std::span<const std::string_view>(values.begin(), values.size()), owner);
	}
	series *at(family &f, std::span<const std::string_view> values, uint32_t owner = 0)
	{
		key_.clear();
		size_t i = 0;
		for (auto v : values) {
			const auto &name = f.meta->labels.at(i++);
			if (v.empty())
				continue;
			if (!key_.empty())
				key_ += ',';
			key_ += name;
			key_ += "=\"";
			append_label_value(key_, v);
			key_ += '"';
		}
		auto it = f.children.find(key_);
		if (it != f.children.end())
			return &it->second;
		if (owner && f.meta->type == metric_type::gauge && gauges_ended_.count(owner))
			return nullptr; // a gauge describes the present: none for a process that has ended
		size_t w = f.meta->weight();
		if (!f.meta->self && series_ + w > max_series_) {
			refuse(f);
			return nullptr;
		}
		series s;
		s.labels = std::make_shared<const std::string>(key_);
		s.owner = owner;
		if (f.meta->type == metric_type::histogram)
			s.buckets = std::make_unique<buckets_t>();
		auto &child = f.children.emplace(key_, std::move(s)).first->second;
		if (!f.meta->self)
			series_ += w;
		if (owner)
			owned_[owner].emplace_back(&f, key_);
		return &child;
	}

	void add(family &f, std::initializer_list<std::string_view> values, double raw, uint32_t owner = 0)
	{
		if (auto *s = at(f, values, owner))
			s->value += raw;
	}
	void set(family &f, std::initializer_list<std::string_view> values, double raw, uint32_t owner = 0)
	{
		if (auto *s = at(f, values, owner))
			s->value = raw;
	}
	// A counter that mirrors a cumulative count kept elsewhere: never moves backwards.
	void set_max(family &f, std::initializer_list<std::string_view> values, double raw, uint32_t owner = 0)
	{
		if (auto *s = at(f, values, owner))
			s->value = std::max(s->value, raw);
	}
	// A counter fed a running total kept elsewhere: it grows by what the total grew since the
	// last one; a total smaller than the last means the count started again (a new
	// activation), and all of it is new.
	void add_total(family &f, std::span<const std::string_view> values, double raw, uint32_t owner = 0)
	{
		auto *s = at(f, values, owner);
		if (!s)
			return;
		s->value += s->mirrored >= 0 && raw >= s->mirrored ? raw - s->mirrored : raw;
		s->mirrored = raw;
	}
	// Merge log2 slots (raw units) and their sum into a histogram.
	void add_log2(family &f, std::initializer_list<std::string_view> values, const uint64_t *slots, size_t n,
		      double sum_raw, uint32_t owner = 0)
	{
		auto *s = at(f, values, owner);
		if (!s)
			return;
		for (size_t i = 0; i < n; i++)
			(*s->buckets)[bucket_of_slot(i)] += slots[i];
		s->value += sum_raw;
	}
	void observe(family &f, std::initializer_list<std::string_view> values, uint64_t raw, uint32_t owner = 0)
	{
		auto *s = at(f, values, owner);
		if (!s)
			return;
		if (f.meta->type == metric_type::histogram)
			(*s->buckets)[bucket_of_slot(slot_of_value(raw))]++;
		s->count++;
		s->value += static_cast<double>(raw);
	}
	// Replace every child of a family at once (figures read afresh at each scrape).
	void replace(family &f, const std::vector<std::pair<std::vector<std::string>, double>> &rows)
	{
		if (!f.meta->self)
			series_ -= f.children.size() * f.meta->weight();
		f.children.clear();
		for (const auto &[vals, v] : rows) {
			std::vector<std::string_view> sv(vals.begin(), vals.end());
			if (auto *s = at(f, std::span<const std::string_view>(sv)))
				s->value = v;
		}
	}

	// The process has ended: remove its gauges now, and refuse new ones (its counters stay
	// until remove_owner, so that increase() sees their last samples). Returns how many series.
	size_t end_owner_gauges(uint32_t pid)
	{
		gauges_ended_.insert(pid);
		auto it = owned_.find(pid);
		if (it == owned_.end())
			return 0;
		size_t n = 0;
		auto &keys = it->second;
		for (auto k = keys.begin(); k != keys.end();) {
			family *f = k->first;
			if (f->meta->type != metric_type::gauge) {
				++k;
				continue;
			}
			if (f->children.erase(k->second)) {
				n += f->meta->weight();
				if (!f->meta->self)
					series_ -= f->meta->weight();
			}
			k = keys.erase(k);
		}
		return n;
	}

	// Remove every series owned by this process; returns how many series (exposed lines).
	size_t remove_owner(uint32_t pid)
	{
		gauges_ended_.erase(pid);
		auto it = owned_.find(pid);
		if (it == owned_.end())
			return 0;
		size_t n = 0;
		for (const auto &[f, key] : it->second) {
			if (f->children.erase(key)) {
				n += f->meta->weight();
				if (!f->meta->self)
					series_ -= f->meta->weight();
			}
		}
		owned_.erase(it);
		return n;
	}
	bool owns(uint32_t pid) const { return owned_.count(pid) > 0; }

	size_t series_count() const { return series_; }
	size_t max_series() const { return max_series_; }
	const std::map<std::string, family> &families() const { return families_; }
	std::map<std::string, family> &families() { return families_; }

	// The figures to expose. Prometheus ignores the first value of a series in rate() and
	// increase(): a count that appeared with its first 5 events would never show them. So a
	// new child of a zero_first family is exposed once at 0 and with its value from the next
	// snapshot on; increase() then sees every event since the child appeared.
	snapshot snap()
	{
		snapshot s;
		s.families.reserve(families_.size());
		for (auto &[name, f] : families_) {
			if (f.children.empty())
				continue;
			auto &sf = s.families.emplace_back();
			sf.meta = f.meta;
			sf.children.reserve(f.children.size());
			for (auto &[k, c] : f.children) {
				auto &sc = sf.children.emplace_back();
				sc.labels = c.labels;
				if (f.meta->zero_first && !c.exposed) {
					sc.value = 0;
					sc.count = 0;
					sc.buckets = {};
				} else {
					sc.value = c.value;
					sc.count = c.count;
					if (c.buckets)
						sc.buckets = *c.buckets;
				}
				c.exposed = true;
			}
		}
		return s;
	}

private:
	void refuse(family &f)
	{
		// Count each refused label set once (remembering at most 1M of them; beyond that,
		// every refusal counts).
		uint64_t h = std::hash<std::string>{}(f.meta->name) * 31 + std::hash<std::string>{}(key_);
		if (refused_.size() >= (1u << 20)) {
			f.dropped++;
			return;
		}
		if (refused_.insert(h).second)
			f.dropped++;
	}

	size_t max_series_;
	size_t series_ = 0;
	std::map<std::string, family> families_;
	std::unordered_map<uint32_t, std::vector<std::pair<family *, std::string>>> owned_;
	std::unordered_set<uint32_t> gauges_ended_; // processes whose gauges are gone (end_owner_gauges)
	std::unordered_set<uint64_t> refused_;
	std::string key_;
};

// ---------------------------------------------------------------------------- exposition

inline constexpr const char *text_type = "text/plain; version=0.0.4; charset=utf-8";
inline constexpr const char *openmetrics_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";

// Whether an Accept header asks for OpenMetrics (any application/openmetrics-text entry whose
// q is not 0). Prometheus sends it first, with the text format as a fallback.
inline bool wants_openmetrics(std::string_view accept)
{
	auto trim = [](std::string_view s) {
		while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
			s.remove_prefix(1);
		while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
			s.remove_suffix(1);
		return s;
	};
	auto lower_eq = [](std::string_view a, std::string_view b) {
		if (a.size() != b.size())
			return false;
		for (size_t i = 0; i < a.size(); i++)
			if (std::tolower(static_cast<unsigned char>(a[i])) != b[i])
				return false;
		return true;
	};
	while (!accept.empty()) {
		auto comma = accept.find(',');
		std::string_view entry = accept.substr(0, comma);
		accept = comma == std::string_view::npos ? std::string_view() : accept.substr(comma + 1);
		auto semi = entry.find(';');
		if (!lower_eq(trim(entry.substr(0, semi)), "application/openmetrics-text"))
			continue;
		bool refused = false;
		while (semi != std::string_view::npos) {
			entry = entry.substr(semi + 1);
			semi = entry.find(';');
			std::string_view param = trim(entry.substr(0, semi));
			if (param.size() >= 2 && (param[0] == 'q' || param[0] == 'Q') && param[1] == '=') {
				std::string_view q = trim(param.substr(2));
				refused = !q.empty() && q.find_first_not_of("0.") == std::string_view::npos;
			}
		}
		if (!refused)
			return true;
	}
	return false;
}

inline void append_sample(std::string &out, const std::string &name, const char *suffix, const std::string &labels,
			  const char *extra_label, const std::string *extra_value, const std::string &value)
{
	out += name;
	out += suffix;
	if (!labels.empty() || extra_label) {
		out += '{';
		out += labels;
		if (extra_label) {
			if (!labels.empty())
				out += ',';
			out += extra_label;
			out += "=\"";
			out += *extra_value;
			out += '"';
		}
		out += '}';
	}
	out += ' ';
	out += value;
	out += '\n';
}

// The text format 0.0.4 (openmetrics false) or OpenMetrics 1.0.0 (true, ends with "# EOF").
inline std::string render(snapshot &s, bool openmetrics)
{
	for (auto &f : s.families)
		std::sort(f.children.begin(), f.children.end(),
			  [](const snapshot::child &a, const snapshot::child &b) { return *a.labels < *b.labels; });
	std::string out;
	out.reserve(4096);
	std::string v;
	static const std::string inf = "+Inf";
	for (const auto &f : s.families) {
		const family_meta &m = *f.meta;
		const std::string fam = openmetrics ? m.om_name() : m.name;
		const char *type = m.type == metric_type::counter     ? "counter"
				   : m.type == metric_type::gauge     ? "gauge"
				   : m.type == metric_type::histogram ? "histogram"
								      : "summary";
		if (openmetrics) {
			out += "# TYPE " + fam + " " + type + "\n";
			if (!m.unit.empty())
				out += "# UNIT " + fam + " " + m.unit + "\n";
			out += "# HELP " + fam + " ";
			append_help(out, m.help, true);
			out += '\n';
		} else {
			out += "# HELP " + fam + " ";
			append_help(out, m.help, false);
			out += "\n# TYPE " + fam + " " + type + "\n";
		}
		for (const auto &c : f.children) {
			const std::string &labels = *c.labels;
			switch (m.type) {
			case metric_type::counter:
			case metric_type::gauge:
				v.clear();
				append_number(v, c.value / m.divisor);
				append_sample(out, m.name, "", labels, nullptr, nullptr, v);
				break;
			case metric_type::summary:
				v.clear();
				append_number(v, c.value / m.divisor);
				append_sample(out, m.name, "_sum", labels, nullptr, nullptr, v);
				v.clear();
				append_number(v, c.count);
				append_sample(out, m.name, "_count", labels, nullptr, nullptr, v);
				break;
			case metric_type::histogram: {
				const auto &les = m.le;
				uint64_t cum = 0;
				for (size_t j = 0; j < n_le; j++) {
					cum += c.buckets[j];
					v.clear();
					append_number(v, cum);
					append_sample(out, m.name, "_bucket", labels, "le", &les[j], v);
				}
				cum += c.buckets[n_le];
				v.clear();
				append_number(v, cum);
				append_sample(out, m.name, "_bucket", labels, "le", &inf, v);
				std::string count = v;
				v.clear();
				append_number(v, c.value / m.divisor);
				append_sample(out, m.name, "_sum", labels, nullptr, nullptr, v);
				append_sample(out, m.name, "_count", labels, nullptr, nullptr, count);
				break;
			}
			}
		}
	}
	if (openmetrics)
		out += "# EOF\n";
	return out;
}

} // namespace procimage::sinks::prom
