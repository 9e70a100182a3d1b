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

// ---------------------------------------------------------------- JSON
//
// The JSON text is written through a raw pointer into room measured beforehand (an upper
// bound per value: a string byte takes at most 6 bytes, as \u00XX; a number at most 32):
// no capacity check, no call per character.

template <size_t N> static char *put_lit(char *p, const char (&s)[N])
{
	std::memcpy(p, s, N - 1);
	return p + N - 1;
}

template <typename T> static char *put_int(char *p, T v)
{
	return std::to_chars(p, p + 24, v).ptr;
}

static size_t json_string_bound(const char *s)
{
	return 2 + 6 * std::strlen(s ? s : "");
}

// Bytes a JSON string takes as they are: printable ASCII but '"' and '\\' (UTF-8 sequences
// are checked one by one).
static bool json_plain(unsigned char c)
{
	return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

// JSON string: UTF-8 passed through, invalid bytes replaced by U+FFFD, controls escaped.
// Runs of bytes that need nothing are copied at once.
static char *put_json_string(char *out, const char *s)
{
	*out++ = '"';
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
		std::memcpy(out, run, static_cast<size_t>(p - run));
		out += p - run;
		if (p == end)
			break;
		unsigned char c = *p++;
		switch (c) {
		case '"': out = put_lit(out, "\\\""); break;
		case '\\': out = put_lit(out, "\\\\"); break;
		case '\n': out = put_lit(out, "\\n"); break;
		case '\r': out = put_lit(out, "\\r"); break;
		case '\t': out = put_lit(out, "\\t"); break;
		default:
			if (c < 0x20) {
				static const char hexdig[] = "0123456789abcdef";
				out = put_lit(out, "\\u00");
				*out++ = hexdig[c >> 4];
				*out++ = hexdig[c & 0xf];
			} else {
				out = put_lit(out, "\xef\xbf\xbd"); // U+FFFD: a byte that starts no valid sequence
			}
		}
	}
	*out++ = '"';
	return out;
}

constexpr size_t NUMBER_BOUND = 32; // an integer, a double's shortest form, null, true, false

static size_t json_value_bound(const pi_field &f)
{
	switch (f.type) {
	case PI_FT_STR: return json_string_bound(f.v.s);
	case PI_FT_STRV: {
		size_t n = 2;
		for (uint32_t i = 0; i < f.count; i++)
			n += 1 + json_string_bound(f.v.sv[i]);
		return n;
	}
	case PI_FT_U64V: return 2 + static_cast<size_t>(f.count) * (NUMBER_BOUND + 1);
	default: return NUMBER_BOUND;
	}
}

static char *put_json_value(char *out, const pi_field &f)
{
	switch (f.type) {
	case PI_FT_I64: return put_int(out, f.v.i);
	case PI_FT_U64: return put_int(out, f.v.u);
	case PI_FT_F64:
		if (!std::isfinite(f.v.d))
			return put_lit(out, "null");
		return std::to_chars(out, out + NUMBER_BOUND, f.v.d).ptr;
	case PI_FT_BOOL: return f.v.u ? put_lit(out, "true") : put_lit(out, "false");
	case PI_FT_STR: return put_json_string(out, f.v.s);
	case PI_FT_STRV:
		*out++ = '[';
		for (uint32_t i = 0; i < f.count; i++) {
			if (i)
				*out++ = ',';
			out = put_json_string(out, f.v.sv[i]);
		}
		*out++ = ']';
		return out;
	case PI_FT_U64V:
		*out++ = '[';
		for (uint32_t i = 0; i < f.count; i++) {
			if (i)
				*out++ = ',';
			out = put_int(out, f.v.uv[i]);
		}
		*out++ = ']';
		return out;
	default: return put_lit(out, "null");
	}
}

size_t record_json_bound(const pi_record &r)
{
	size_t n = 128 + 5 * NUMBER_BOUND; // the common keys and their numbers
	n += json_string_bound(r.probe) + json_string_bound(r.event) + json_string_bound(r.comm);
	if (const char *cg = pi_record_cgroup(&r))
		n += 12 + json_string_bound(cg);
	for (uint32_t i = 0; i < r.nfields; i++)
		n += 2 + json_string_bound(r.fields[i].key) + json_value_bound(r.fields[i]);
	return n;
}

char *write_record_json(char *out, const pi_record &r)
{
	out = put_lit(out, "{\"ts_ns\":");
	out = put_int(out, r.ts_ns);
	out = put_lit(out, ",\"probe\":");
	out = put_json_string(out, r.probe);
	out = put_lit(out, ",\"event\":");
	out = put_json_string(out, r.event);
	out = put_lit(out, ",\"pid\":");
	out = put_int(out, r.pid);
	out = put_lit(out, ",\"tid\":");
	out = put_int(out, r.tid);
	out = put_lit(out, ",\"comm\":");
	out = put_json_string(out, r.comm);
	if (r.cpu >= 0) {
		out = put_lit(out, ",\"cpu\":");
		out = put_int(out, r.cpu);
	}
	if (r.pid_start_ns) {
		out = put_lit(out, ",\"pid_start_ns\":");
		out = put_int(out, r.pid_start_ns);
	}
	if (const char *cg = pi_record_cgroup(&r)) {
		out = put_lit(out, ",\"cgroup\":");
		out = put_json_string(out, cg);
	}
	for (uint32_t i = 0; i < r.nfields; i++) {
		*out++ = ',';
		out = put_json_string(out, r.fields[i].key);
		*out++ = ':';
		out = put_json_value(out, r.fields[i]);
	}
	*out++ = '}';
	return out;
}

void append_json_value(std::string &out, const pi_field &f)
{
	size_t at = out.size();
	out.resize(at + json_value_bound(f));
	out.resize(static_cast<size_t>(put_json_value(out.data() + at, f) - out.data()));
}

void append_record_json(std::string &out, const pi_record &r)
{
	size_t at = out.size();
	out.resize(at + record_json_bound(r));
	out.resize(static_cast<size_t>(write_record_json(out.data() + at, r) - out.data()));
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
