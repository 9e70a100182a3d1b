// SPDX-License-Identifier: Apache-2.0
//
// jsonl sink: one JSON object per line, to a file or standard output, flushed per batch.
#include "../common/format.hpp"

#include <procimage/config.hpp>
#include <procimage/sdk.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace procimage::sinks {

class jsonl_sink final : public sdk::sink {
public:
	static void validate(const std::string &text) { read(text); }

	jsonl_sink(const pi_host &host, const std::string &text) : sdk::sink(host)
	{
		auto c = read(text);
		if (c.path.empty() || c.path == "-") {
			out_ = stdout;
		} else {
			out_ = std::fopen(c.path.c_str(), c.append ? "a" : "w");
			if (!out_)
				throw std::runtime_error("path: cannot open " + c.path + ": " + std::strerror(errno));
			own_ = true;
		}
	}

	~jsonl_sink() override
	{
		if (own_)
			std::fclose(out_);
		else
			std::fflush(out_);
	}

	void write(const pi_record &r) override
	{
		line_.clear();
		append_record_json(line_, r);
		line_ += '\n';
		if (std::fwrite(line_.data(), 1, line_.size(), out_) != line_.size())
			throw std::runtime_error(std::string("write failed: ") + std::strerror(errno));
	}

	void flush() override
	{
		if (std::fflush(out_) != 0)
			throw std::runtime_error(std::string("flush failed: ") + std::strerror(errno));
	}

private:
	struct cfg {
		std::string path;
		bool append;
	};
	static cfg read(const std::string &text)
	{
		sdk::config_reader r(text);
		cfg c;
		c.path = r.get_string("path", "-");
		c.append = r.get_bool("append", false);
		r.finish();
		return c;
	}

	FILE *out_ = nullptr;
	bool own_ = false;
	std::string line_; // reused: no allocation per record
};

} // namespace procimage::sinks

PROCIMAGE_DEFINE_SINK(procimage::sinks::jsonl_sink, "jsonl", PROCIMAGE_VERSION,
		      "one JSON object per line (file or standard output)");
