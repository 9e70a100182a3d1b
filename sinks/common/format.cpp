// SPDX-License-Identifier: Apache-2.0
#include "format.hpp"
#include "utf8.hpp"

#include <charconv>
#include <cinttypes>
#include <cmath>
#include <csignal>
#include <cstring>
#include <ctime>

namespace procimage::sinks {

std::string clock_time(uint64_t epoch_ns, bool utc)
{
	time_t secs = static_cast<time_t>(epoch_ns / 1000000000ULL);
	struct tm tm {};
	if (utc)
		gmtime_r(&secs, &tm);
	else
		localtime_r(&secs, &tm);
	char buf[32];
	std::snprintf(buf, sizeof buf, "%02d:%02d:%02d.%06llu", tm.tm_hour, tm.tm_min, tm.tm_sec,
		      static_cast<unsigned long long>((epoch_ns % 1000000000ULL) / 1000));
	return buf;
}

static std::string fixed(double v, const char *unit)
{
	char buf[48];
	int prec = v < 10 ? 3 : v < 100 ? 2 : 1;
	std::snprintf(buf, sizeof buf, "%.*f%s", prec, v, unit);
	return buf;
}

std::string human_duration(uint64_t ns)
{
	if (ns < 1000)
		return std::to_string(ns) + "ns";
	if (ns < 1000000)
		return fixed(ns / 1e3, "µs");
	if (ns < 1000000000ULL)
		return fixed(ns / 1e6, "ms");
	return fixed(ns / 1e9, "s");
}

std::string human_bytes(uint64_t b)
{
	if (b < 1024)
		return std::to_string(b) + "B";
	if (b < (1ULL << 20))
		return fixed(b / 1024.0, "KiB");
	if (b < (1ULL << 30))
		return fixed(b / 1048576.0, "MiB");
	return fixed(b / 1073741824.0, "GiB");
}

std::string errno_name(int64_t v)
{
	if (v >= 0)
		return std::to_string(v);
	const char *n = strerrorname_np(static_cast<int>(-v));
	return n ? std::string("-") + n : std::to_string(v);
}

std::string signal_name(uint64_t sig)
{
	if (sig == 0)
		return "none";
	const char *n = sigabbrev_np(static_cast<int>(sig));
	return n ? std::string("SIG") + n : "SIG" + std::to_string(sig);
}

static std::string hex(uint64_t v)
{
	char buf[24];
	std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
	return buf;
}

static std::string number(const pi_field &f)
{
	switch (f.type) {
	case PI_FT_I64: return std::to_string(f.v.i);
	case PI_FT_U64: return std::to_string(f.v.u);
	case PI_FT_F64: {
		char buf[48];
		std::snprintf(buf, sizeof buf, "%.6g", f.v.d);
		return buf;
	}
	default: return "";
	}
}

std::string plain_value(const pi_field &f)
{
	switch (f.type) {
	case PI_FT_STR: return f.v.s ? f.v.s : "";
	case PI_FT_BOOL: return f.v.u ? "true" : "false";
	case PI_FT_STRV: {
		std::string out;
		for (uint32_t i = 0; i < f.count; i++)
			out += (i ? " " : "") + std::string(f.v.sv[i] ? f.v.sv[i] : "");
		return out;
	}
	case PI_FT_U64V: {
		std::string out;
		for (uint32_t i = 0; i < f.count; i++)
			out += (i ? " " : "") + std::to_string(f.v.uv[i]);
		return out;
	}
	default: return number(f);
	}
}

static bool needs_quotes(const std::string &s)
{
	if (s.empty())
		return true;
	for (char c : s)
		if (c == ' ' || c == '"' || c == '\\' || c == '=' || static_cast<unsigned char>(c) < 0x20)
			return true;
	return false;
}

static std::string quote_text(const std::string &s)
{
	std::string out = "\"";
	for (char c : s) {
		if (c == '"' || c == '\\')
			out += '\\';
		if (c == '\n')
			out += "\\n";
		else
			out += c;
	}
	return out + "\"";
}

std::string human_value(const pi_field &f)
{
	if (f.type == PI_FT_STR) {
		std::string s = f.v.s ? f.v.s : "";
		return needs_quotes(s) ? quote_text(s) : s;
	}
	if (f.type == PI_FT_STRV) {
		std::string out = "[";
		for (uint32_t i = 0; i < f.count; i++) {
			std::string s = f.v.sv[i] ? f.v.sv[i] : "";
			out += (i ? " " : "") + (needs_quotes(s) ? quote_text(s) : s);
		}
		return out + "]";
	}
	if (f.type == PI_FT_U64V) {
		if (f.fmt == PI_FMT_LOG2_HIST) {
			// only the non-empty buckets: "[1µs,2µs):5"
			std::string out = "{";
			bool first = true;
			for (uint32_t i = 0; i < f.count; i++) {
				if (!f.v.uv[i])
					continue;
				out += (first ? "" : " ") + std::string("2^") + std::to_string(i) + ":" +
				       std::to_string(f.v.uv[i]);
				first = false;
			}
			return out + "}";
		}
		return "[" + plain_value(f) + "]";
	}
	if (f.type == PI_FT_BOOL)
		return f.v.u ? "yes" : "no";
	uint64_t u = f.type == PI_FT_I64 ? static_cast<uint64_t>(f.v.i) : f.v.u;
	switch (f.fmt) {
	case PI_FMT_DURATION_NS:
		return f.type == PI_FT_F64 ? human_duration(static_cast<uint64_t>(f.v.d)) : human_duration(u);
	case PI_FMT_BYTES:
		return f.type == PI_FT_F64 ? human_bytes(static_cast<uint64_t>(f.v.d)) : human_bytes(u);
	case PI_FMT_ERRNO: return errno_name(f.type == PI_FT_I64 ? f.v.i : static_cast<int64_t>(f.v.u));
	case PI_FMT_SIGNAL: return signal_name(u);
	case PI_FMT_HEX: return hex(u);
	case PI_FMT_PERCENT: {
		char buf[32];
		std::snprintf(buf, sizeof buf, "%.1f%%", f.type == PI_FT_F64 ? f.v.d : static_cast<double>(u));
		return buf;
	}
	default: return number(f);
	}
}

std::string human_syscall_sequence(const pi_record &r)
{
	if (!r.probe || !r.event || std::strcmp(r.probe, "syscall") != 0 || std::strcmp(r.event, "sequence") != 0)
		return "";
	const pi_field *names = nullptr, *rets = nullptr, *errs = nullptr, *lats = nullptr, *args = nullptr;
	std::string head;
	for (uint32_t i = 0; i < r.nfields; i++) {
		const pi_field &f = r.fields[i];
		std::string key = f.key ? f.key : "";
		if (key == "syscalls" && f.type == PI_FT_STRV)
			names = &f;
		else if (key == "ret" && f.type == PI_FT_U64V)
			rets = &f;
		else if (key == "errno" && f.type == PI_FT_U64V)
			errs = &f;
		else if (key == "lat_ns" && f.type == PI_FT_U64V)
			lats = &f;
		else if (key == "arg0" && f.type == PI_FT_U64V)
			args = &f;
		else if (key == "nr" && f.type == PI_FT_U64V)
			continue; // the names say it
		else
			head += (head.empty() ? "" : " ") + key + "=" + human_value(f);
	}
	if (!names || !rets)
		return "";
	uint32_t n = names->count;
	for (const pi_field *a : {rets, errs, lats, args})
		if (a && a->count != n)
			return "";
	std::string out = head;
	for (uint32_t i = 0; i < n; i++) {
		out += i == 0 ? (out.empty() ? "" : "  ") : " → ";
		out += names->v.sv[i] ? names->v.sv[i] : "?";
		if (args)
			out += "(" + std::to_string(args->v.uv[i]) + ")";
		out += " = ";
		if (errs && errs->v.uv[i]) {
			const char *e = strerrorname_np(static_cast<int>(errs->v.uv[i]));
			out += "-1 " + (e ? std::string(e) : "errno " + std::to_string(errs->v.uv[i]));
		} else {
			uint64_t v = rets->v.uv[i];
			out += v >> 32 ? hex(v) : std::to_string(v); // an address (mmap, brk) reads better in hex
		}
		if (lats)
			out += " <" + human_duration(lats->v.uv[i]) + ">";
	}
	return out;
}

// JSON string body: UTF-8 passed through, invalid bytes replaced by U+FFFD, controls escaped.
static void json_string(std::string &out, const char *s)
{
	out += '"';
	const auto *p = reinterpret_cast<const unsigned char *>(s ? s : "");
	const auto *end = p + std::strlen(reinterpret_cast<const char *>(p));
	while (p < end) {
		unsigned char c = *p;
		if (c < 0x80) {
			switch (c) {
			case '"': out += "\\\""; break;
			case '\\': out += "\\\\"; break;
			case '\n': out += "\\n"; break;
			case '\r': out += "\\r"; break;
			case '\t': out += "\\t"; break;
			default:
				if (c < 0x20) {
					char buf[8];
					std::snprintf(buf, sizeof buf, "\\u%04x", c);
					out += buf;
				} else {
					out += static_cast<char>(c);
				}
			}
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
	out += '"';
}

static void json_number(std::string &out, double d)
{
	if (!std::isfinite(d)) {
		out += "null";
		return;
	}
	char buf[64];
	auto r = std::to_chars(buf, buf + sizeof buf, d);
	out.append(buf, r.ptr);
}

void append_json_value(std::string &out, const pi_field &f)
{
	switch (f.type) {
	case PI_FT_I64: out += std::to_string(f.v.i); break;
	case PI_FT_U64: out += std::to_string(f.v.u); break;
	case PI_FT_F64: json_number(out, f.v.d); break;
	case PI_FT_BOOL: out += f.v.u ? "true" : "false"; break;
	case PI_FT_STR: json_string(out, f.v.s); break;
	case PI_FT_STRV:
		out += '[';
		for (uint32_t i = 0; i < f.count; i++) {
			if (i)
				out += ',';
			json_string(out, f.v.sv[i]);
		}
		out += ']';
		break;
	case PI_FT_U64V:
		out += '[';
		for (uint32_t i = 0; i < f.count; i++) {
			if (i)
				out += ',';
			out += std::to_string(f.v.uv[i]);
		}
		out += ']';
		break;
	default: out += "null";
	}
}

void append_record_json(std::string &out, const pi_record &r)
{
	out += "{\"ts_ns\":";
	out += std::to_string(r.ts_ns);
	out += ",\"probe\":";
	json_string(out, r.probe);
	out += ",\"event\":";
	json_string(out, r.event);
	out += ",\"pid\":";
	out += std::to_string(r.pid);
	out += ",\"tid\":";
	out += std::to_string(r.tid);
	out += ",\"comm\":";
	json_string(out, r.comm);
	if (r.cpu >= 0) {
		out += ",\"cpu\":";
		out += std::to_string(r.cpu);
	}
	if (r.pid_start_ns) {
		out += ",\"pid_start_ns\":";
		out += std::to_string(r.pid_start_ns);
	}
	for (uint32_t i = 0; i < r.nfields; i++) {
		out += ',';
		json_string(out, r.fields[i].key);
		out += ':';
		append_json_value(out, r.fields[i]);
	}
	out += '}';
}

std::string record_json(const pi_record &r)
{
	std::string out;
	append_record_json(out, r);
	return out;
}

std::string csv_cell(const std::string &s)
{
	bool quote = s.find_first_of(",\"\r\n") != std::string::npos;
	if (!quote)
		return s;
	std::string out = "\"";
	for (char c : s) {
		if (c == '"')
			out += '"';
		out += c;
	}
	return out + "\"";
}

} // namespace procimage::sinks
