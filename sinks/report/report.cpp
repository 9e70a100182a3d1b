// SPDX-License-Identifier: Apache-2.0
//
// report sink: builds the report model from every record of the run and, when the run ends,
// writes its portrait (text, json, chrome-trace or html) to a file or standard error.
#include "../common/format.hpp"
#include "report/model.hpp"

#include <procimage/config.hpp>
#include <procimage/sdk.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace procimage::sinks {

class report_sink final : public sdk::sink {
public:
	static void validate(const std::string &text) { read(text); }

	report_sink(const pi_host &host, const std::string &text) : sdk::sink(host), cfg_(read(text))
	{
		if (!cfg_.path.empty() && cfg_.path != "-") {
			// open now: a path that cannot be written is refused before the run, not after it
			out_ = std::fopen(cfg_.path.c_str(), "w");
			if (!out_)
				throw std::runtime_error("path: cannot open " + cfg_.path + ": " + std::strerror(errno));
		}
	}

	~report_sink() override
	{
		try {
			auto m = builder_.finish();
			auto text = cfg_.format == "text" ? report::render_text(m, cfg_.brief) : report::render(m, cfg_.format);
			FILE *f = out_ ? out_ : stderr;
			if (std::fwrite(text.data(), 1, text.size(), f) != text.size())
				sdk::log(host(), PI_LOG_ERROR, "report: cannot write " + cfg_.path + ": " + std::strerror(errno));
			if (out_) {
				std::fclose(out_);
				sdk::log(host(), PI_LOG_INFO, "report (" + cfg_.format + ") written to " + cfg_.path);
			}
		} catch (const std::exception &e) {
			sdk::log(host(), PI_LOG_ERROR, std::string("report: ") + e.what());
		}
	}

	void write(const pi_record &r) override
	{
		line_.clear();
		append_record_json(line_, r);
		builder_.add_line(line_);
	}

private:
	struct cfg {
		std::string path, format;
		bool brief;
	};
	static cfg read(const std::string &text)
	{
		sdk::config_reader r(text);
		cfg c;
		c.path = r.get_string("path", "-");
		c.format = r.get_string("format", "");
		c.brief = r.get_bool("brief", false);
		r.finish();
		if (c.format.empty())
			c.format = c.path == "-" ? "text" : report::format_from_path(c.path);
		if (!report::known_format(c.format))
			throw std::runtime_error("format: '" + c.format + "' is none of text, json, chrome-trace, html");
		return c;
	}

	cfg cfg_;
	FILE *out_ = nullptr;
	report::builder builder_;
	std::string line_;
};

} // namespace procimage::sinks

PROCIMAGE_DEFINE_SINK(procimage::sinks::report_sink, "report", "1.0.0",
		      "the run's portrait at its end: text, json, chrome-trace or html (file or standard error)");
