// SPDX-License-Identifier: Apache-2.0
//
// stdout sink: one human-readable line per record, in columns:
//   TIME  PID  TID  COMM  PROBE  EVENT  key=value …
// to standard output (the default), standard error ("stream": "stderr") or a file ("path").
// A syscall sequence reads as one chain of calls: read = 4096 <1.2µs> → openat = -1 ENOENT ….
#include "../common/format.hpp"

#include <procimage/config.hpp>
#include <procimage/sdk.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace procimage::sinks {

class stdout_sink final : public sdk::sink {
public:
	static void validate(const std::string &text) { read(text); }

	stdout_sink(const pi_host &host, const std::string &text) : sdk::sink(host)
	{
		auto c = read(text);
		utc_ = c.utc;
		header_ = c.header;
		if (!c.path.empty()) {
			out_ = std::fopen(c.path.c_str(), "we");
			if (!out_)
				throw std::runtime_error("path: cannot open " + c.path + ": " + std::strerror(errno));
			own_ = true;
		} else if (c.stream == "stderr") {
			out_ = stderr;
		}
	}

	~stdout_sink() override
	{
		if (own_)
			std::fclose(out_);
		else
			std::fflush(out_);
	}

	void write(const pi_record &r) override
	{
		if (header_) {
			if (std::fprintf(out_, "%-15s %7s %7s %-16s %-8s %-11s %s\n", "TIME", "PID", "TID", "COMM",
					 "PROBE", "EVENT", "DETAILS") < 0)
				throw std::runtime_error(std::string("write failed: ") + std::strerror(errno));
			header_ = false;
		}
		std::string line = clock_time(r.ts_ns, utc_);
		char ids[64];
		std::snprintf(ids, sizeof ids, " %7u %7u ", r.pid, r.tid);
		line += ids;
		std::string comm = r.comm ? r.comm : "";
		comm.resize(std::max<size_t>(comm.size(), 16), ' ');
		line += comm + " ";
		std::string probe = r.probe ? r.probe : "";
		probe.resize(std::max<size_t>(probe.size(), 8), ' ');
		std::string event = r.event ? r.event : "";
		event.resize(std::max<size_t>(event.size(), 11), ' ');
		line += probe + " " + event;
		if (std::string seq = human_syscall_sequence(r); !seq.empty()) {
			line += ' ' + seq;
		} else {
			for (uint32_t i = 0; i < r.nfields; i++)
				line += std::string(" ") + r.fields[i].key + "=" + human_value(r.fields[i]);
		}
		line += '\n';
		if (std::fwrite(line.data(), 1, line.size(), out_) != line.size())
			throw std::runtime_error(std::string("write failed: ") + std::strerror(errno));
	}

	void flush() override
	{
		if (std::fflush(out_) != 0)
			throw std::runtime_error(std::string("flush failed: ") + std::strerror(errno));
	}

private:
	struct cfg {
		bool utc;
		bool header;
		std::string stream;
		std::string path;
	};
	static cfg read(const std::string &text)
	{
		sdk::config_reader r(text);
		cfg c{};
		c.utc = r.get_enum("time", "local", {"local", "utc"}) == "utc";
		c.header = r.get_bool("header", true);
		bool has_stream = r.json().contains("stream");
		c.stream = r.get_enum("stream", "stdout", {"stdout", "stderr"});
		c.path = r.get_string("path", "");
		r.finish();
		if (has_stream && r.json().contains("path"))
			throw sdk::config_error("give either \"stream\" or \"path\", not both");
		if (r.json().contains("path") && (c.path.empty() || c.path == "-"))
			throw sdk::config_error("path: expected a file name (standard output is \"stream\": \"stdout\")");
		return c;
	}

	FILE *out_ = stdout;
	bool own_ = false;
	bool utc_ = false;
	bool header_ = true;
};

} // namespace procimage::sinks

PROCIMAGE_DEFINE_SINK(procimage::sinks::stdout_sink, "stdout", PROCIMAGE_VERSION,
		      "human-readable lines on standard output");
