// SPDX-License-Identifier: Apache-2.0
#include "format.hpp"
#include "utf8.hpp"

#include <charconv>
#include <cinttypes>
#include <cmath>
#include <csignal>
#include <algorithm>
#include <cstring>
#include <ctime>

namespace procimage::sinks {

// Integers as decimal text, straight into the output.
template <typename T> static void append_int(std::string &out, T v)
{
	char buf[24];
	auto r = std::to_chars(buf, buf + sizeof buf, v);
	out.append(buf, r.ptr);
}

template <size_t N> static void append_lit(std::string &out, const char (&s)[N])
{
	out.append(s, N - 1);
}

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
	std::string out;
	append_plain_value(out, f);
	return out;
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

// Bytes a JSON string takes as they are: printable ASCII but '"' and '\\' (UTF-8 sequences
// are checked one by one).
static bool json_plain(unsigned char c)
{
	return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

// JSON string body: UTF-8 passed through, invalid bytes replaced by U+FFFD, controls escaped.
// Runs of bytes that need nothing are copied at once.
static void json_string(std::string &out, const char *s)
{
	out += '"';
	const auto *p = reinterpret_cast<const unsigned char *>(s ? s : "");
	const auto *end = p + std::strlen(reinterpret_cast<const char *>(p));
	while (p < end) {
		const auto *run = p;
		while (p < end) {
			if (json_plain(*p)) {
				p++;
				continue;
			}
			if (*p < 0x80)
				break;
			int len = utf8_sequence_length(p, end);
			if (len == 0)
				break;
			p += len;
		}
		out.append(reinterpret_cast<const char *>(run), static_cast<size_t>(p - run));
		if (p == end)
			break;
		unsigned char c = *p++;
		switch (c) {
		case '"': append_lit(out, "\\\""); break;
		case '\\': append_lit(out, "\\\\"); break;
		case '\n': append_lit(out, "\\n"); break;
		case '\r': append_lit(out, "\\r"); break;
		case '\t': append_lit(out, "\\t"); break;
		default:
			if (c < 0x20) {
				static const char hexdig[] = "0123456789abcdef";
				char buf[6] = {'\\', 'u', '0', '0', hexdig[c >> 4], hexdig[c & 0xf]};
				out.append(buf, sizeof buf);
			} else {
				out += UTF8_REPLACEMENT; // a byte that starts no valid sequence
			}
		}
	}
	out += '"';
}

static void json_number(std::string &out, double d)
{
	if (!std::isfinite(d)) {
		append_lit(out, "null");
		return;
	}
	char buf[64];
	auto r = std::to_chars(buf, buf + sizeof buf, d);
	out.append(buf, r.ptr);
}

void append_json_value(std::string &out, const pi_field &f)
{
	switch (f.type) {
	case PI_FT_I64: append_int(out, f.v.i); break;
	case PI_FT_U64: append_int(out, f.v.u); break;
	case PI_FT_F64: json_number(out, f.v.d); break;
	case PI_FT_BOOL:
		if (f.v.u)
			append_lit(out, "true");
		else
			append_lit(out, "false");
		break;
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
			append_int(out, f.v.uv[i]);
		}
		out += ']';
		break;
	default: append_lit(out, "null");
	}
}

void append_record_json(std::string &out, const pi_record &r)
{
	append_lit(out, "{\"ts_ns\":");
	append_int(out, r.ts_ns);
	append_lit(out, ",\"probe\":");
	json_string(out, r.probe);
	append_lit(out, ",\"event\":");
	json_string(out, r.event);
	append_lit(out, ",\"pid\":");
	append_int(out, r.pid);
	append_lit(out, ",\"tid\":");
	append_int(out, r.tid);
	append_lit(out, ",\"comm\":");
	json_string(out, r.comm);
	if (r.cpu >= 0) {
		append_lit(out, ",\"cpu\":");
		append_int(out, r.cpu);
	}
	if (r.pid_start_ns) {
		append_lit(out, ",\"pid_start_ns\":");
		append_int(out, r.pid_start_ns);
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
	std::string out;
	append_csv_cell(out, s);
	return out;
}

void append_csv_cell(std::string &out, std::string_view s)
{
	if (s.find_first_of(",\"\r\n") == std::string_view::npos) {
		out.append(s);
		return;
	}
	out += '"';
	for (size_t at = 0;;) {
		size_t q = s.find('"', at);
		if (q == std::string_view::npos) {
			out.append(s.substr(at));
			break;
		}
		out.append(s.substr(at, q + 1 - at));
		out += '"'; // a quote is written twice
		at = q + 1;
	}
	out += '"';
}

void append_plain_value(std::string &out, const pi_field &f)
{
	switch (f.type) {
	case PI_FT_STR:
		if (f.v.s)
			out += f.v.s;
		break;
	case PI_FT_BOOL: out += f.v.u ? "true" : "false"; break;
	case PI_FT_STRV:
		for (uint32_t i = 0; i < f.count; i++) {
			if (i)
				out += ' ';
			if (f.v.sv[i])
				out += f.v.sv[i];
		}
		break;
	case PI_FT_U64V:
		for (uint32_t i = 0; i < f.count; i++) {
			if (i)
				out += ' ';
			append_int(out, f.v.uv[i]);
		}
		break;
	case PI_FT_I64: append_int(out, f.v.i); break;
	case PI_FT_U64: append_int(out, f.v.u); break;
	case PI_FT_F64: {
		char buf[48];
		int n = std::snprintf(buf, sizeof buf, "%.6g", f.v.d);
		out.append(buf, static_cast<size_t>(n > 0 ? std::min<int>(n, sizeof buf - 1) : 0));
		break;
	}
	default: break;
	}
}

} // namespace procimage::sinks
